"""Appearance: palettes per style, procedural textures, sky, sun/lamp/ambient lighting, fog,
tone mapping and (web style) camera artefacts.

Two styles share the geometry but not the look:
- `labeled`: AirSim-like clean renders — daylight sun, clear skies, neutral exposure, no noise;
  with weather `varied`, time of day, overcast and haze per scene (still clean: no camera artefacts).
- `web`: consumer 360-camera look — other palettes (shifted hues, stronger saturation), low sun
  or overcast, haze, random exposure and white balance, contrast curve, sensor noise, JPEG.
Colours are linear RGB in [0, 1] until tone mapping."""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from dap_model.errors import InputError
from dap_model.sim.scenes import ROLE, ROLES, Scene, derive_seed

STYLES = ("labeled", "web")


def _srgb(*rgb: int) -> tuple[float, float, float]:
    return tuple((c / 255.0) ** 2.2 for c in rgb)


PALETTE: dict[str, list] = {
    "calib": [(150, 150, 150)],
    "ground_city": [(62, 62, 64), (72, 70, 68), (55, 57, 60)],
    "ground_rural": [(95, 125, 60), (110, 130, 70), (120, 115, 75)],
    "grass": [(80, 130, 60), (100, 140, 70), (70, 115, 50)],
    "road": [(60, 60, 62), (80, 78, 75)],
    "facade": [(220, 205, 180), (200, 200, 195), (160, 82, 62), (210, 180, 140), (235, 235, 230),
               (115, 115, 120), (170, 190, 205), (190, 112, 80), (150, 140, 130)],
    "roof": [(95, 92, 90), (120, 115, 110), (70, 72, 76), (140, 90, 70)],
    "foliage": [(60, 110, 50), (80, 130, 40), (50, 90, 45), (110, 130, 50)],
    "bark": [(90, 70, 50), (72, 62, 52)],
    "car": [(200, 30, 30), (30, 60, 160), (230, 230, 230), (28, 28, 30), (150, 150, 155), (200, 180, 40),
            (40, 110, 70)],
    "glass": [(45, 60, 75), (35, 45, 55)],
    "metal": [(160, 160, 165), (70, 70, 75)],
    "hill": [(90, 110, 70), (110, 112, 90), (120, 100, 80)],
    "rock": [(130, 125, 118), (110, 100, 92)],
    "wall": [(235, 230, 220), (210, 220, 230), (230, 215, 190), (200, 210, 190), (180, 170, 160),
             (240, 240, 240), (170, 190, 200)],
    "floor": [(150, 110, 70), (120, 85, 55), (180, 150, 110), (200, 200, 200), (120, 100, 90), (90, 90, 95)],
    "ceiling": [(245, 245, 240), (235, 235, 235)],
    "wood": [(130, 90, 60), (90, 60, 40), (200, 170, 130), (60, 45, 35)],
    "fabric": [(150, 60, 60), (60, 80, 130), (90, 120, 90), (180, 170, 150), (70, 70, 70), (200, 150, 90)],
    "lamp": [(255, 240, 210), (255, 250, 240)],
    "window": [(200, 225, 255), (225, 235, 255)],
    "door": [(140, 100, 70), (230, 230, 225), (100, 70, 50)],
    "plant": [(50, 110, 45), (70, 120, 40)],
}
SECOND: dict[str, tuple] = {  # secondary colour of a pattern (glass, markings, grout, ...)
    "ground_city": (175, 172, 165), "facade": (55, 70, 85), "ground_rural": (130, 110, 80),
    "floor": (70, 60, 55), "wall": (150, 140, 130), "window": (235, 235, 230), "calib": (90, 90, 90),
    "door": (60, 50, 40), "car": (20, 20, 22),
}
EMISSIVE = {ROLE["lamp"], ROLE["window"]}


def _web_colour(rgb: tuple, rng: np.random.Generator) -> tuple[float, float, float]:
    h, s, v = colorsys.rgb_to_hsv(*(c / 255.0 for c in rgb))
    h = (h + rng.uniform(0.04, 0.12) * rng.choice([-1, 1])) % 1.0
    s = min(1.0, s * rng.uniform(1.2, 1.6) + 0.05)
    v = min(1.0, v * rng.uniform(0.75, 1.1))
    return tuple(c ** 2.2 for c in colorsys.hsv_to_rgb(h, s, v))


@dataclass
class Look:
    """Render-time appearance of one scene in one style (fixed across its frames)."""

    style: str
    c1: Tensor  # [M,3] linear base colour per material
    c2: Tensor  # [M,3] linear secondary colour
    sun_dir: Tensor  # [3] unit, towards the sun
    sun_rgb: Tensor  # [3]
    amb_sky: Tensor  # [3] ambient from above
    amb_ground: Tensor  # [3] ambient from below
    zenith: Tensor  # [3]
    horizon: Tensor  # [3]
    fog_rgb: Tensor  # [3]
    fog_m: float  # distance fog scale (metres)
    clouds: float  # cloud cover in [0, 1]
    lamp_rgb: Tensor  # [3]
    lamp_range_m: float
    exposure: float
    shadows: bool
    tex_seed: int


WEATHERS = ("clear", "varied")


def make_look(scene: Scene, style: str, shadows: bool = True, weather: str = "clear") -> Look:
    """weather (labelled style only): `clear` = one clear midday sky for every scene; `varied` =
    time of day, overcast and haze drawn per scene from their own stream (palette draws unchanged)."""
    if style not in STYLES:
        raise InputError(f"style {style!r}: expected one of {', '.join(STYLES)}")
    if weather not in WEATHERS:
        raise InputError(f"weather {weather!r}: expected one of {', '.join(WEATHERS)}")
    if weather != "clear" and style == "web":
        raise InputError(f"weather {weather!r} applies to the labelled style; the web style draws its own")
    rng = np.random.default_rng(derive_seed("look", scene.kind, scene.seed, style))
    web = style == "web"
    c1, c2 = [], []
    for role, u, jit in zip(scene.mat_role, scene.mat_u, scene.mat_jitter):
        name = ROLES[role]
        pal = PALETTE[name]
        base = pal[int(u * len(pal)) % len(pal)]
        col = _web_colour(base, rng) if web else _srgb(*base)
        c1.append(np.clip(np.asarray(col) * (1 + 0.12 * jit), 0, 1))
        sec = SECOND.get(name, base)
        c2.append(_web_colour(sec, rng) if web else _srgb(*sec))
    outdoor = scene.domain == "outdoor"
    if web:
        overcast = rng.random() < 0.35
        elev = math.radians(rng.uniform(4, 30))
        sun_rgb = (np.array([1.0, 0.75, 0.5]) * rng.uniform(1.6, 2.6)) if not overcast else np.array([0.5, 0.5, 0.52])
        zenith = np.array(_srgb(120, 130, 150)) if overcast else np.array(_srgb(*rng.integers(60, 140, 3)))
        horizon = np.array(_srgb(190, 190, 195)) if overcast else np.array(_srgb(245, 180, 130)) * rng.uniform(0.8, 1.1)
        amb = np.array([0.55, 0.5, 0.5]) * (1.4 if overcast else 0.6)
        fog_m = rng.uniform(150, 700)
        exposure = rng.uniform(0.6, 1.9)
        lamp_rgb = np.array([1.0, 0.62, 0.3]) * rng.uniform(1.5, 3.5)
        clouds = rng.uniform(0.4, 1.0) if overcast else rng.uniform(0.0, 0.6)
    else:
        elev = math.radians(rng.uniform(25, 65))
        sun_rgb = np.array([1.0, 0.96, 0.9]) * rng.uniform(2.4, 3.0)
        zenith = np.array(_srgb(70, 120, 200))
        horizon = np.array(_srgb(185, 208, 232))
        amb = np.array([0.42, 0.48, 0.6])
        fog_m = rng.uniform(700, 2500)
        exposure = 1.0
        lamp_rgb = np.array([1.0, 0.92, 0.8]) * 2.2
        clouds = rng.uniform(0.0, 0.5)
        if weather == "varied":
            elev, sun_rgb, zenith, horizon, amb, fog_m, exposure, clouds = _weather(
                np.random.default_rng(derive_seed("weather", scene.kind, scene.seed)))
    az = rng.uniform(0, 2 * math.pi)
    sun = np.array([math.cos(elev) * math.sin(az), math.sin(elev), math.cos(elev) * math.cos(az)])
    if not outdoor:
        sun_rgb = sun_rgb * 0.18  # daylight through the windows: a weak key light, no shadows
        amb = amb * (0.9 if not web else 0.5)
        fog_m = rng.uniform(60, 150)
        if not web:  # interiors vary in brightness and lamp colour: a dim warm evening to a bright day
            irng = np.random.default_rng(derive_seed("interior_light", scene.kind, scene.seed))
            amb = amb * irng.uniform(0.35, 1.1)
            kelvin = irng.uniform(0.0, 1.0)  # 0 = warm tungsten, 1 = neutral white
            lamp_rgb = np.array([1.0, 0.72 + 0.22 * kelvin, 0.45 + 0.45 * kelvin]) * irng.uniform(1.4, 3.4)
            exposure = float(np.exp(irng.uniform(np.log(0.6), np.log(1.6))))
    f = lambda a: torch.tensor(np.asarray(a, np.float32))  # noqa: E731
    return Look(
        style=style, c1=f(np.array(c1).reshape(-1, 3)), c2=f(np.array(c2).reshape(-1, 3)),
        sun_dir=f(sun), sun_rgb=f(sun_rgb), amb_sky=f(amb), amb_ground=f(amb * np.array([0.55, 0.5, 0.45])),
        zenith=f(zenith), horizon=f(horizon), fog_rgb=f(horizon if outdoor else horizon * 0.5),
        fog_m=float(fog_m), clouds=float(clouds), lamp_rgb=f(lamp_rgb), lamp_range_m=6.0,
        exposure=float(exposure), shadows=bool(shadows and outdoor),
        tex_seed=derive_seed("tex", scene.seed) % 100003,
    )


def _weather(rng: np.random.Generator) -> tuple:
    """Daylight of one labelled scene: (sun elevation rad, sun rgb, zenith, horizon, ambient, fog
    metres, exposure, cloud cover). Low sun is dimmer and warmer, with a warm horizon; overcast
    skies are grey, cloudy and lit mostly by the ambient term."""
    elev_deg = rng.uniform(3, 70)
    low = math.exp(-elev_deg / 15)  # 0.01 at 70 deg, 0.8 at 3 deg
    sun_rgb = (np.array([1.0, 0.96 - 0.36 * low, 0.9 - 0.55 * low]) * rng.uniform(2.2, 3.0)
               * (0.45 + 0.55 * min(1.0, elev_deg / 35)))
    zenith = np.array(_srgb(int(rng.integers(40, 110)), int(rng.integers(90, 150)), int(rng.integers(170, 235))))
    horizon = (np.array(_srgb(185, 208, 232)) * (1 - low) + np.array(_srgb(250, 185, 135)) * low) * rng.uniform(0.85, 1.1)
    amb = np.array([0.42, 0.48, 0.6]) * rng.uniform(0.8, 1.15)
    clouds = rng.uniform(0.0, 0.8)
    if rng.random() < 0.3:  # overcast
        g = int(rng.integers(120, 200))
        sun_rgb = sun_rgb * rng.uniform(0.1, 0.3)
        zenith = np.array(_srgb(g - 10, g - 5, g + 5))
        horizon = np.array(_srgb(g + 25, g + 25, g + 30))
        amb = np.array([0.6, 0.62, 0.66]) * rng.uniform(1.1, 1.6)
        clouds = rng.uniform(0.7, 1.0)
    fog_m = math.exp(rng.uniform(math.log(300), math.log(2500)))
    exposure = rng.uniform(0.8, 1.3)
    return math.radians(elev_deg), sun_rgb, zenith, horizon, amb, fog_m, exposure, clouds


# ----------------------------------------------------------------------------- noise

def _hash(ix: Tensor, iy: Tensor, seed: int) -> Tensor:
    h = ix * 73856093 ^ iy * 19349663 ^ (seed * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFFFF).to(torch.float32) / float(0xFFFFFF)


def cell_hash(u: Tensor, v: Tensor, seed: int) -> Tensor:
    """Uniform [0,1] per integer cell of (u, v)."""
    return _hash(torch.floor(u).to(torch.int64), torch.floor(v).to(torch.int64), seed)


_LATTICE = torch.from_numpy(np.random.default_rng(20240607).random(256 * 256).astype(np.float32))


def value_noise(u: Tensor, v: Tensor, seed: int) -> Tensor:
    """Smooth value noise in [0, 1] at (u, v) [N] (a fixed 256×256 lattice, shifted by seed)."""
    iu, iv = torch.floor(u), torch.floor(v)
    fu, fv = u - iu, v - iv
    iu = iu.to(torch.int64) + seed * 71
    iv = iv.to(torch.int64) + seed * 113
    su, sv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
    r0, r1 = (iu & 255) * 256, ((iu + 1) & 255) * 256
    c0, c1 = iv & 255, (iv + 1) & 255
    a, b = _LATTICE[r0 + c0], _LATTICE[r1 + c0]
    c, d = _LATTICE[r0 + c1], _LATTICE[r1 + c1]
    top = a + (b - a) * su
    return top + ((c + (d - c) * su) - top) * sv


def fbm(u: Tensor, v: Tensor, seed: int, octaves: int = 3) -> Tensor:
    """Fractal noise in [0, 1]."""
    out = torch.zeros_like(u)
    amp, tot = 1.0, 0.0
    for o in range(octaves):
        out = out + amp * value_noise(u * 2**o, v * 2**o, seed + 101 * o)
        tot += amp
        amp *= 0.5
    return out / tot


# ----------------------------------------------------------------------------- textures

def _uv(p: Tensor, n: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Face coordinates by the normal's dominant axis: (u, v, vertical) [N] each."""
    ax = n.abs().argmax(1)
    u = torch.where(ax == 0, p[:, 2], p[:, 0])
    v = torch.where(ax == 1, p[:, 2], p[:, 1])
    return u, v, ax != 1


def albedo(p: Tensor, n: Tensor, mat: Tensor, scene_role: Tensor, param: Tensor, look: Look) -> tuple[Tensor, Tensor]:
    """World hit points p [N,3], normals [N,3], material ids [N] → (linear albedo [N,3], emissive [N] bool)."""
    role = scene_role[mat]  # [N]
    prm = param[mat]  # [N,4]
    c1, c2 = look.c1[mat], look.c2[mat]  # [N,3]
    s = look.tex_seed
    u, v, vertical = _uv(p, n)
    out = c1.clone()
    emissive = torch.zeros(len(p), dtype=torch.bool)

    def sel(name: str) -> Tensor:
        return role == ROLE[name]

    m = sel("facade")
    if m.any():
        uu, vv, vert, q = u[m], v[m], vertical[m], prm[m]
        wall = c1[m] * (0.8 + 0.35 * fbm(uu * 0.4, vv * 0.4, s + 1))[:, None]
        fu, fv = torch.frac(uu / q[:, 0]), torch.frac(vv / q[:, 1])
        win = ((fu - 0.5).abs() < q[:, 2] / 2) & ((fv - 0.5).abs() < q[:, 3] / 2) & vert
        ground = (vv < q[:, 1]) & vert
        shop = ground & ((fu - 0.5).abs() < 0.42) & (vv > 0.3) & (vv < q[:, 1] * 0.85)
        lit = cell_hash(uu / q[:, 0], vv / q[:, 1], s + 2)
        glass = c2[m] * (0.5 + 0.9 * lit)[:, None] + 0.05 * (vv / 60).clamp(0, 1)[:, None]
        wall = torch.where((win & ~ground)[:, None] | shop[:, None], glass, wall)
        ledge = vert & (torch.frac(vv / q[:, 1]) < 0.04)
        wall = torch.where(ledge[:, None], wall * 0.75, wall)
        roof = ~vert
        wall = torch.where(roof[:, None], c1[m] * 0.45 * (0.8 + 0.4 * fbm(uu, vv, s + 3))[:, None] + 0.05, wall)
        out[m] = wall
    m = sel("ground_city")
    if m.any():
        x, z, q = p[m][:, 0], p[m][:, 2], prm[m]
        pitch, street, side, half = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
        gx = torch.remainder(x + half + street / 2, pitch)
        gz = torch.remainder(z + half + street / 2, pitch)
        rx, rz = gx < street, gz < street
        road = rx | rz
        walk = ~road & ((gx < street + side) | (gx > pitch - side) | (gz < street + side) | (gz > pitch - side))
        asphalt = c1[m] * (0.8 + 0.4 * fbm(x * 2, z * 2, s + 4))[:, None]
        tiles = c2[m] * (0.85 + 0.2 * fbm(x, z, s + 5))[:, None]
        grout = (torch.frac(x / 1.5) < 0.05) | (torch.frac(z / 1.5) < 0.05)
        tiles = torch.where(grout[:, None], tiles * 0.7, tiles)
        plaza = c2[m] * 0.8 * (0.8 + 0.4 * fbm(x * 0.3, z * 0.3, s + 6))[:, None]
        col = torch.where(road[:, None], asphalt, torch.where(walk[:, None], tiles, plaza))
        mark_x = rx & ~rz & ((gx - street / 2).abs() < 0.08) & (torch.frac(z / 6) < 0.5)
        mark_z = rz & ~rx & ((gz - street / 2).abs() < 0.08) & (torch.frac(x / 6) < 0.5)
        zebra = road & (rx & rz) & (torch.frac((x + z) / 1.2) < 0.5) & (
            ((gx < 3) | (gx > street - 3)) ^ ((gz < 3) | (gz > street - 3)))
        col = torch.where((mark_x | mark_z | zebra)[:, None], torch.full_like(col, 0.7), col)
        out[m] = col
    for name, scale, contrast in (("ground_rural", 0.08, 1.0), ("grass", 0.5, 0.6), ("hill", 0.03, 0.8)):
        m = sel(name)
        if m.any():
            uu, vv = p[m][:, 0], p[m][:, 2]
            mix = fbm(uu * scale, vv * scale, s + 7).unsqueeze(1)
            blend = c1[m] * (1 - contrast * mix * 0.8) + c2[m] * contrast * mix * 0.8
            out[m] = blend * (0.75 + 0.5 * fbm(uu * 3, vv * 3, s + 8))[:, None]
    for name, f in (("foliage", 2.5), ("plant", 6.0)):
        m = sel(name)
        if m.any():
            pp = p[m]
            out[m] = c1[m] * (0.45 + 1.0 * fbm(pp[:, 0] * f + pp[:, 1], pp[:, 2] * f - pp[:, 1], s + 9))[:, None]
    m = sel("bark") | sel("wood")
    if m.any():
        pp = p[m]
        grain = fbm(pp[:, 0] * 2 + pp[:, 2] * 2, pp[:, 1] * 14, s + 10)
        out[m] = c1[m] * (0.7 + 0.5 * grain)[:, None]
    m = sel("road") | sel("rock") | sel("roof")
    if m.any():
        out[m] = c1[m] * (0.75 + 0.5 * fbm(u[m] * 1.5, v[m] * 1.5, s + 11))[:, None]
    m = sel("wall")
    if m.any():
        uu, vv, q = u[m], v[m], prm[m]
        base = c1[m] * (0.92 + 0.12 * fbm(uu * 2, vv * 2, s + 12))[:, None]
        stripes = (q[:, 0] > 0.6) & (torch.frac(uu / 0.25) < 0.5)
        base = torch.where(stripes[:, None], base * 0.9, base)
        course = torch.floor(vv / 0.075)
        brick = (q[:, 1] > 0.8) & (
            (torch.frac(vv / 0.075) < 0.12) | (torch.frac((uu + 0.11 * torch.remainder(course, 2)) / 0.22) < 0.06))
        base = torch.where(brick[:, None], c2[m], base)
        skirt = vv < 0.1
        out[m] = torch.where(skirt[:, None], base * 0.6, base)
    m = sel("floor")
    if m.any():
        x, z, q = p[m][:, 0], p[m][:, 2], prm[m]
        plank = torch.floor(x / q[:, 0])
        board = cell_hash(plank, torch.floor(z / 1.3 + 0.37 * plank), s + 13)
        wood = c1[m] * (0.75 + 0.45 * board)[:, None] * (0.85 + 0.3 * fbm(x * 3, z * 20, s + 14))[:, None]
        gap = torch.frac(x / q[:, 0]) < 0.04
        wood = torch.where(gap[:, None], wood * 0.6, wood)
        tile = c1[m] * (0.9 + 0.15 * cell_hash(x / 0.6, z / 0.6, s + 15))[:, None]
        grout = (torch.frac(x / 0.6) < 0.04) | (torch.frac(z / 0.6) < 0.04)
        tile = torch.where(grout[:, None], c2[m], tile)
        out[m] = torch.where((q[:, 1] > 0.6)[:, None], tile, wood)
    m = sel("ceiling") | sel("metal") | sel("glass") | sel("fabric")
    if m.any():
        out[m] = c1[m] * (0.9 + 0.15 * fbm(u[m] * 8, v[m] * 8, s + 16))[:, None]
    m = sel("car")
    if m.any():
        out[m] = c1[m]
        under = p[m][:, 1] < 0.45
        out[m] = torch.where(under[:, None], c2[m], out[m])
    m = sel("door")
    if m.any():
        vv = v[m]
        panel = (torch.frac(vv / 0.7) < 0.05)
        out[m] = torch.where(panel[:, None], c1[m] * 0.7, c1[m])
    m = sel("calib")
    if m.any():
        x, z = p[m][:, 0], p[m][:, 2]
        check = (torch.floor(x) + torch.floor(z)).remainder(2) == 0
        out[m] = torch.where(check[:, None], c1[m], c2[m]) * (0.85 + 0.3 * fbm(x, z, s + 17))[:, None]
    m = sel("lamp")
    if m.any():
        out[m] = look.lamp_rgb * 1.4 * c1[m]
        emissive |= m
    m = sel("window")
    if m.any():
        uu, vv, q = u[m], v[m], prm[m]
        sky = c1[m] * (1.2 + 0.8 * ((vv - 1.0) / 1.5).clamp(0, 1))[:, None] + 0.15 * fbm(uu * 0.8, vv * 0.8, s + 18)[:, None]
        frame = (torch.frac(uu / q[:, 0]) < 0.06) | (torch.frac(vv / 0.8) < 0.06)
        out[m] = torch.where(frame[:, None], c2[m] * 0.5, sky)
        emissive[m] = ~frame
    return out.clamp(0, 4), emissive


# ----------------------------------------------------------------------------- sky, light, camera

def sky(d: Tensor, look: Look) -> Tensor:
    """World directions d [N,3] → linear sky radiance [N,3]."""
    y = d[:, 1].clamp(-1, 1)
    up = y.clamp_min(0).sqrt()[:, None]
    col = look.horizon * (1 - up) + look.zenith * up
    col = torch.where((y < 0)[:, None], look.horizon * 0.8, col)
    cos_sun = (d @ look.sun_dir).clamp(-1, 1)
    col = col + look.sun_rgb * (cos_sun.clamp_min(0) ** 64 * 0.25)[:, None]
    col = col + look.sun_rgb * 4 * (cos_sun > math.cos(math.radians(0.8)))[:, None]
    if look.clouds > 0:
        yy = y.clamp_min(0.03)
        u, v = d[:, 0] / yy * 2.0, d[:, 2] / yy * 2.0
        c = fbm(u, v, look.tex_seed + 99, octaves=4)
        cover = ((c - (1 - look.clouds)) * 3).clamp(0, 1) * (y > 0).float() * (y * 8).clamp(0, 1)
        cloud = look.horizon * 1.1 + 0.15
        col = col * (1 - cover[:, None]) + cloud * cover[:, None]
    return col


def shade(alb: Tensor, emissive: Tensor, n: Tensor, p_world: Tensor, shadow: Tensor | None,
          lamps: Tensor, lamp_room: Tensor, look: Look) -> Tensor:
    """Diffuse sun (with shadow mask) + hemispheric ambient + room lamps → radiance [N,3]."""
    ndl = (n @ look.sun_dir).clamp_min(0)  # [N]
    if shadow is not None:
        ndl = torch.where(shadow, torch.zeros_like(ndl), ndl)
    hemi = (0.5 + 0.5 * n[:, 1])[:, None]
    light = look.amb_sky * hemi + look.amb_ground * (1 - hemi) + look.sun_rgb * ndl[:, None]
    for i in range(len(lamps)):
        lv = lamps[i] - p_world  # [N,3]
        dist = lv.norm(dim=1).clamp_min(0.1)
        inside = ((p_world >= lamp_room[i, :3] - 0.05) & (p_world <= lamp_room[i, 3:] + 0.05)).all(1)
        fall = (1.0 / (1.0 + (dist / (0.5 * look.lamp_range_m)) ** 2))
        lam = ((n * lv).sum(1) / dist).clamp_min(0) * fall * inside
        light = light + look.lamp_rgb * 0.6 * lam[:, None]
    return torch.where(emissive[:, None], alb, alb * light)


def fog(col: Tensor, t: Tensor, look: Look) -> Tensor:
    a = torch.exp(-t / look.fog_m)[:, None]
    return col * a + look.fog_rgb * (1 - a)


def tonemap(col: Tensor, look: Look) -> Tensor:
    """Linear radiance [...,3] → display values in [0, 1] (exposure, filmic curve, sRGB gamma)."""
    x = 1 - torch.exp(-col * look.exposure * 1.6)
    return x.clamp(0, 1) ** (1 / 2.2)


def web_camera(rgb: np.ndarray, seed: int) -> np.ndarray:
    """Consumer-camera artefacts on uint8 [H,W,3]: white balance, contrast, noise, blur, JPEG."""
    rng = np.random.default_rng(seed)
    x = rgb.astype(np.float32) / 255.0
    x = x * rng.uniform(0.85, 1.15, 3).astype(np.float32)  # white balance
    k = rng.uniform(0.0, 0.6)
    x = np.clip(x, 0, 1)
    x = x + k * (x - 0.5) * (1 - np.abs(2 * x - 1))  # S-curve contrast
    if rng.random() < 0.5:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.4, 1.0))
    sigma = rng.uniform(1.5, 6.0) / 255.0
    x = x + rng.normal(0, sigma, x.shape).astype(np.float32)
    out = np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 85))])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy() if ok else out
