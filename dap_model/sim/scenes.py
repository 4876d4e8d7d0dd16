"""Procedural scene descriptions: lists of primitives in world coordinates (metres, y up).

A `Scene` is geometry plus material *roles* (facade, floor, foliage, ...). Colours, lights, sky
and exposure are chosen at render time from the role and the appearance style, so the same
geometry can be rendered in the labelled look and in the web look. Every scene is a pure
function of `(kind, seed)`.

Kinds: outdoor `city`, `rural`; indoor `rooms`, `corridor`; `calibration` (an infinite ground
plane under an empty sky); `room` (one empty axis-aligned room). `indoor` / `outdoor` pick one
of their kinds from the seed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from dap_model.errors import InputError

ROLES = (
    "calib", "ground_city", "ground_rural", "grass", "road", "facade", "roof", "foliage", "bark",
    "car", "glass", "metal", "hill", "rock", "wall", "floor", "ceiling", "wood", "fabric", "lamp",
    "window", "door", "plant",
)
ROLE = {name: i for i, name in enumerate(ROLES)}

OUTDOOR_KINDS = ("city", "rural")
INDOOR_KINDS = ("rooms", "corridor")
KINDS = OUTDOOR_KINDS + INDOOR_KINDS + ("calibration", "room")


def derive_seed(*parts) -> int:
    """A stable 63-bit seed from any printable parts (independent of PYTHONHASHSEED)."""
    blob = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") >> 1


@dataclass
class Scene:
    kind: str
    domain: str  # "indoor" | "outdoor"
    seed: int
    boxes: np.ndarray  # [Nb,6] float64 (xmin, ymin, zmin, xmax, ymax, zmax), solid
    box_mat: np.ndarray  # [Nb] int64 material index
    spheres: np.ndarray  # [Ns,4] (cx, cy, cz, r)
    sphere_mat: np.ndarray  # [Ns]
    cylinders: np.ndarray  # [Nc,5] (cx, cz, r, y0, y1), vertical, capped
    cyl_mat: np.ndarray  # [Nc]
    planes: np.ndarray  # [Np,4] (nx, ny, nz, c): points with n·p = c, visible from the n side
    plane_mat: np.ndarray  # [Np]
    shells: np.ndarray  # [Nr,6] room interiors, seen from inside (walls, floor, ceiling)
    shell_mat: np.ndarray  # [Nr,6] material per face: -x, -y, -z, +x, +y, +z
    mat_role: np.ndarray  # [M] int64 index into ROLES
    mat_u: np.ndarray  # [M] float64 in [0, 1): palette choice
    mat_jitter: np.ndarray  # [M,3] float64 in [-1, 1]: colour jitter
    mat_param: np.ndarray  # [M,4] float64: pattern parameters (role-specific)
    lamps: np.ndarray  # [Nl,3] point-light positions
    lamp_room: np.ndarray  # [Nl,6] box a lamp lights (its room)
    fly_bounds: np.ndarray  # [6] where the camera may be (xmin, ymin, zmin, xmax, ymax, zmax)
    cam_height: tuple[float, float]  # camera height above the floor/ground (min, max)
    info: dict = field(default_factory=dict)

    @property
    def n_primitives(self) -> int:
        return len(self.boxes) + len(self.spheres) + len(self.cylinders) + len(self.planes) + len(self.shells)

    def summary(self) -> dict:
        return {
            "kind": self.kind, "domain": self.domain, "seed": self.seed,
            "boxes": len(self.boxes), "spheres": len(self.spheres), "cylinders": len(self.cylinders),
            "planes": len(self.planes), "shells": len(self.shells), "lamps": len(self.lamps),
            **self.info,
        }

    def is_free(self, p: np.ndarray, margin: float) -> np.ndarray:
        """p [N,3] → [N] bool: inside the fly bounds and at least `margin` from every solid."""
        p = np.atleast_2d(np.asarray(p, np.float64))
        b = self.fly_bounds
        ok = np.all((p >= b[:3]) & (p <= b[3:]), axis=1)
        if len(self.shells):
            inner = np.zeros(len(p), bool)
            for s in self.shells:
                inner |= np.all((p >= s[:3] + margin) & (p <= s[3:] - margin), axis=1)
            ok &= inner
        if len(self.boxes):
            lo, hi = self.boxes[:, :3] - margin, self.boxes[:, 3:] + margin  # [Nb,3]
            inside = np.all((p[:, None] >= lo[None]) & (p[:, None] <= hi[None]), axis=2)  # [N,Nb]
            ok &= ~inside.any(1)
        if len(self.spheres):
            d = np.linalg.norm(p[:, None] - self.spheres[None, :, :3], axis=2)  # [N,Ns]
            ok &= ~(d <= self.spheres[None, :, 3] + margin).any(1)
        if len(self.cylinders):
            c = self.cylinders
            rad = np.hypot(p[:, None, 0] - c[None, :, 0], p[:, None, 2] - c[None, :, 1])  # [N,Nc]
            iny = (p[:, None, 1] >= c[None, :, 3] - margin) & (p[:, None, 1] <= c[None, :, 4] + margin)
            ok &= ~((rad <= c[None, :, 2] + margin) & iny).any(1)
        for pl in self.planes:
            ok &= p @ pl[:3] - pl[3] >= margin
        return ok


class _Builder:
    """Accumulates primitives and materials while a generator runs."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.boxes: list = []
        self.box_mat: list = []
        self.spheres: list = []
        self.sphere_mat: list = []
        self.cyls: list = []
        self.cyl_mat: list = []
        self.planes: list = []
        self.plane_mat: list = []
        self.shells: list = []
        self.shell_mat: list = []
        self.mats: list = []
        self.lamps: list = []
        self.lamp_room: list = []

    def material(self, role: str, param=(0.0, 0.0, 0.0, 0.0)) -> int:
        self.mats.append((ROLE[role], float(self.rng.random()), self.rng.uniform(-1, 1, 3), tuple(param)))
        return len(self.mats) - 1

    def box(self, lo, hi, mat: int) -> None:
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        if np.all(hi > lo):
            self.boxes.append(np.concatenate([lo, hi]))
            self.box_mat.append(mat)

    def sphere(self, c, r, mat: int) -> None:
        self.spheres.append([*c, r])
        self.sphere_mat.append(mat)

    def cylinder(self, cx, cz, r, y0, y1, mat: int) -> None:
        self.cyls.append([cx, cz, r, y0, y1])
        self.cyl_mat.append(mat)

    def plane(self, n, c, mat: int) -> None:
        self.planes.append([*n, c])
        self.plane_mat.append(mat)

    def shell(self, lo, hi, mats) -> None:
        self.shells.append([*lo, *hi])
        self.shell_mat.append(list(mats))

    def lamp(self, pos, room) -> None:
        self.lamps.append(list(pos))
        self.lamp_room.append(list(room))

    def build(self, kind, domain, seed, fly_bounds, cam_height, info=None) -> Scene:
        def arr(x, n):
            return np.asarray(x, np.float64).reshape(-1, n)

        def idx(x):
            return np.asarray(x, np.int64).reshape(-1)

        return Scene(
            kind=kind, domain=domain, seed=seed,
            boxes=arr(self.boxes, 6), box_mat=idx(self.box_mat),
            spheres=arr(self.spheres, 4), sphere_mat=idx(self.sphere_mat),
            cylinders=arr(self.cyls, 5), cyl_mat=idx(self.cyl_mat),
            planes=arr(self.planes, 4), plane_mat=idx(self.plane_mat),
            shells=arr(self.shells, 6), shell_mat=np.asarray(self.shell_mat, np.int64).reshape(-1, 6),
            mat_role=idx([m[0] for m in self.mats]),
            mat_u=np.asarray([m[1] for m in self.mats], np.float64),
            mat_jitter=np.asarray([m[2] for m in self.mats], np.float64).reshape(-1, 3),
            mat_param=np.asarray([m[3] for m in self.mats], np.float64).reshape(-1, 4),
            lamps=arr(self.lamps, 3), lamp_room=arr(self.lamp_room, 6),
            fly_bounds=np.asarray(fly_bounds, np.float64), cam_height=tuple(cam_height),
            info=info or {},
        )


# --------------------------------------------------------------------------- outdoor

def _tree(b: _Builder, x: float, z: float, bark: int, leaves: list[int], scale: float = 1.0) -> None:
    rng = b.rng
    h = rng.uniform(2.0, 4.5) * scale
    r = rng.uniform(1.4, 3.2) * scale
    b.cylinder(x, z, rng.uniform(0.12, 0.25) * scale, 0.0, h + 0.3 * r, bark)
    leaf = leaves[rng.integers(len(leaves))]
    b.sphere((x, h + 0.8 * r, z), r, leaf)
    if rng.random() < 0.5:
        dx, dz = rng.normal(0, 0.5 * r, 2)
        b.sphere((x + dx, h + 1.3 * r, z + dz), 0.7 * r, leaf)


def _hills(b: _Builder, dist: tuple[float, float], n: int, mats: list[int]) -> None:
    rng = b.rng
    for ang in rng.uniform(0, 2 * np.pi, n):
        d = rng.uniform(*dist)
        r = rng.uniform(120, 320)
        b.sphere((d * np.sin(ang), -r * rng.uniform(0.55, 0.85), d * np.cos(ang)), r, mats[rng.integers(len(mats))])


def _car(b: _Builder, x: float, z: float, along_x: bool, paint: int, glass: int) -> None:
    rng = b.rng
    length, width = rng.uniform(3.8, 5.2), rng.uniform(1.6, 1.9)
    if rng.random() < 0.15:  # van or truck
        length, width = rng.uniform(6, 9), 2.3
    hx, hz = (length / 2, width / 2) if along_x else (width / 2, length / 2)
    body = rng.uniform(0.9, 1.1) * (1.6 if length > 6 else 1.0)
    b.box((x - hx, 0.25, z - hz), (x + hx, 0.25 + body, z + hz), paint)
    if length <= 6:
        cx, cz = (0.55 * hx, 0.9 * hz) if along_x else (0.9 * hx, 0.55 * hz)
        b.box((x - cx, 0.25 + body, z - cz), (x + cx, 0.25 + body + 0.6, z + cz), glass)


def city(seed: int) -> Scene:
    """Blocks of textured buildings on a street grid, trees, parks, vehicles, street lights."""
    b = _Builder(derive_seed("city", seed))
    rng = b.rng
    block = rng.uniform(28, 60)
    street = rng.uniform(10, 16)
    sidewalk = rng.uniform(2.0, 3.5)
    pitch = block + street
    n = int(rng.integers(6, 10))
    half = n * pitch / 2
    ground = b.material("ground_city", (pitch, street, sidewalk, half))
    b.plane((0, 1, 0), 0.0, ground)
    facades = [
        b.material("facade", (rng.uniform(2.2, 4.0), rng.uniform(3.0, 3.8), rng.uniform(0.35, 0.7), rng.uniform(0.35, 0.65)))
        for _ in range(int(rng.integers(4, 8)))
    ]
    roofs = [b.material("roof") for _ in range(3)]
    leaves = [b.material("foliage") for _ in range(3)]
    bark = b.material("bark")
    grass = b.material("grass")
    paints = [b.material("car") for _ in range(6)]
    glass = b.material("glass")
    metal = b.material("metal")
    lampm = b.material("lamp")
    hillm = [b.material("hill") for _ in range(2)]
    tallness = rng.uniform(0.6, 1.6)
    n_buildings = 0
    for i in range(n):
        for j in range(n):
            x0, z0 = -half + i * pitch + street / 2, -half + j * pitch + street / 2
            x1, z1 = x0 + block, z0 + block
            centre = np.hypot((x0 + x1) / 2, (z0 + z1) / 2) / half
            if rng.random() < 0.12:  # park
                b.box((x0 + sidewalk, 0.0, z0 + sidewalk), (x1 - sidewalk, 0.12, z1 - sidewalk), grass)
                for _ in range(int(rng.integers(4, 12))):
                    _tree(b, rng.uniform(x0 + 4, x1 - 4), rng.uniform(z0 + 4, z1 - 4), bark, leaves, rng.uniform(0.9, 1.4))
                continue
            nx, nz = int(rng.integers(1, 4)), int(rng.integers(1, 4))
            xs = np.linspace(x0 + sidewalk, x1 - sidewalk, nx + 1)
            zs = np.linspace(z0 + sidewalk, z1 - sidewalk, nz + 1)
            for a in range(nx):
                for c in range(nz):
                    inset = rng.uniform(0.0, 2.0, 4)
                    lo = (xs[a] + inset[0], 0.0, zs[c] + inset[1])
                    h = float(np.clip(rng.lognormal(np.log(14 * tallness * (1.8 - centre)), 0.55), 4.0, 90.0))
                    hi = (xs[a + 1] - inset[2], h, zs[c + 1] - inset[3])
                    fac = facades[rng.integers(len(facades))]
                    b.box(lo, hi, fac)
                    n_buildings += 1
                    if rng.random() < 0.3 and h > 10:  # roof structure
                        w = np.array(hi) - np.array(lo)
                        cx, cz = lo[0] + w[0] * rng.uniform(0.3, 0.7), lo[2] + w[2] * rng.uniform(0.3, 0.7)
                        sx, sz = w[0] * rng.uniform(0.15, 0.35), w[2] * rng.uniform(0.15, 0.35)
                        b.box((cx - sx, h, cz - sz), (cx + sx, h + rng.uniform(2, 6), cz + sz), roofs[rng.integers(3)])
                    elif rng.random() < 0.15 and h > 8:
                        cx, cz = (lo[0] + hi[0]) / 2, (lo[2] + hi[2]) / 2
                        b.cylinder(cx, cz, rng.uniform(1.5, 3), h, h + rng.uniform(3, 5), metal)
    # street furniture along the streets (x-aligned and z-aligned)
    lines = -half + np.arange(n + 1) * pitch  # street centre lines
    for s in lines:
        for t in np.arange(-half, half, rng.uniform(9, 15)):
            for side in (-1, 1):
                off = side * (street / 2 + sidewalk * 0.5)
                u = rng.random()
                px, pz = (s + off, t) if rng.random() < 0.5 else (t, s + off)
                if u < 0.35:
                    _tree(b, px, pz, bark, leaves)
                elif u < 0.45:
                    b.cylinder(px, pz, 0.09, 0.0, 6.5, metal)
                    b.box((px - 0.3, 6.5, pz - 0.3), (px + 0.3, 6.75, pz + 0.3), lampm)
            if rng.random() < 0.45:
                lane = rng.choice([-1, 1]) * street / 4
                along_x = rng.random() < 0.5
                x, z = (t, s + lane) if along_x else (s + lane, t)
                _car(b, x, z, along_x, paints[rng.integers(len(paints))], glass)
    _hills(b, (half + 250, half + 550), int(rng.integers(4, 10)), hillm)
    return b.build(
        "city", "outdoor", seed,
        fly_bounds=(-half, 0.0, -half, half, 120.0, half), cam_height=(1.5, 100.0),
        info={"buildings": n_buildings, "block_m": round(block, 2), "street_m": round(street, 2)},
    )


def rural(seed: int) -> Scene:
    """Open ground with hills, a road, houses, fences, rocks and clusters of trees."""
    b = _Builder(derive_seed("rural", seed))
    rng = b.rng
    ground = b.material("ground_rural", (rng.uniform(8, 25), 0, 0, 0))
    b.plane((0, 1, 0), 0.0, ground)
    extent = rng.uniform(150, 260)
    road = b.material("road")
    w = rng.uniform(4, 7)
    b.box((-extent, 0.0, -w / 2), (extent, 0.05, w / 2), road)
    leaves = [b.material("foliage") for _ in range(3)]
    bark = b.material("bark")
    walls = [b.material("facade", (rng.uniform(2.5, 4), 3.0, rng.uniform(0.3, 0.5), 0.45)) for _ in range(3)]
    roofm = [b.material("roof") for _ in range(2)]
    woodm = b.material("wood")
    rockm = b.material("rock")
    paints = [b.material("car") for _ in range(3)]
    glass = b.material("glass")
    hillm = [b.material("hill") for _ in range(3)]
    houses = int(rng.integers(3, 10))
    for _ in range(houses):
        side = rng.choice([-1, 1])
        cx, cz = rng.uniform(-extent * 0.8, extent * 0.8), side * rng.uniform(w + 8, 60)
        sx, sz, h = rng.uniform(4, 9), rng.uniform(4, 8), rng.uniform(3, 8)
        b.box((cx - sx, 0, cz - sz), (cx + sx, h, cz + sz), walls[rng.integers(3)])
        b.box((cx - sx - 0.4, h, cz - sz - 0.4), (cx + sx + 0.4, h + 0.4, cz + sz + 0.4), roofm[rng.integers(2)])
        if rng.random() < 0.5:
            b.box((cx + sx * 0.4, h, cz - 0.5), (cx + sx * 0.4 + 0.8, h + 2.0, cz + 0.5), roofm[0])
        if rng.random() < 0.6:  # fence along the road side
            fz = cz - side * (sz + 3)
            b.box((cx - sx - 5, 0, fz - 0.05), (cx + sx + 5, 1.1, fz + 0.05), woodm)
    for _ in range(int(rng.integers(2, 7))):  # tree clusters
        cx, cz = rng.uniform(-extent, extent, 2)
        if abs(cz) < w + 4:
            cz += np.sign(cz + 1e-9) * (w + 6)
        for _ in range(int(rng.integers(5, 25))):
            x, z = cx + rng.normal(0, 15), cz + rng.normal(0, 15)
            if abs(z) > w / 2 + 2:
                _tree(b, x, z, bark, leaves, rng.uniform(0.8, 1.8))
    for _ in range(int(rng.integers(5, 20))):
        x, z = rng.uniform(-extent, extent, 2)
        if abs(z) > w / 2 + 2:
            r = rng.uniform(0.4, 2.0)
            b.sphere((x, -0.3 * r, z), r, rockm)
    for _ in range(int(rng.integers(0, 4))):
        _car(b, rng.uniform(-extent * 0.7, extent * 0.7), rng.choice([-1, 1]) * w / 4, True,
             paints[rng.integers(3)], glass)
    _hills(b, (extent + 150, extent + 650), int(rng.integers(5, 12)), hillm)
    return b.build(
        "rural", "outdoor", seed,
        fly_bounds=(-extent, 0.0, -extent, extent, 120.0, extent), cam_height=(1.5, 100.0),
        info={"houses": houses},
    )


# --------------------------------------------------------------------------- indoor

def _floorplan(b: _Builder, cols: list[float], rows: list[float], height: float,
               corridor_col: int | None) -> tuple[list, list[tuple]]:
    """Shell, partition walls with door gaps, windows and doors on the outer walls.

    Returns (room boxes, door centres)."""
    rng = b.rng
    xs = np.concatenate([[0.0], np.cumsum(cols)])
    zs = np.concatenate([[0.0], np.cumsum(rows)])
    wall = b.material("wall", (rng.random(), rng.random(), 0, 0))
    wall2 = b.material("wall", (rng.random(), rng.random(), 0, 0))
    floor = b.material("floor", (rng.uniform(0.1, 0.25), rng.random(), rng.random(), 0))
    ceil = b.material("ceiling")
    window = b.material("window", (rng.uniform(0.5, 0.9), 0, 0, 0))
    door = b.material("door")
    b.shell((0, 0, 0), (xs[-1], height, zs[-1]), (wall, floor, wall2, wall2, ceil, wall))
    t = 0.06  # half wall thickness
    dw, dh = 0.9, 2.1
    doors: list[tuple] = []

    def wall_x(x: float, z0: float, z1: float, with_door: bool) -> None:  # wall in the plane x = const
        if with_door and z1 - z0 > dw + 0.6:
            dz = rng.uniform(z0 + 0.3 + dw / 2, z1 - 0.3 - dw / 2)
            b.box((x - t, 0, z0), (x + t, height, dz - dw / 2), wall)
            b.box((x - t, 0, dz + dw / 2), (x + t, height, z1), wall)
            b.box((x - t, dh, dz - dw / 2), (x + t, height, dz + dw / 2), wall)
            doors.append((x, dz))
        else:
            b.box((x - t, 0, z0), (x + t, height, z1), wall)

    def wall_z(z: float, x0: float, x1: float, with_door: bool) -> None:
        if with_door and x1 - x0 > dw + 0.6:
            dx = rng.uniform(x0 + 0.3 + dw / 2, x1 - 0.3 - dw / 2)
            b.box((x0, 0, z - t), (dx - dw / 2, height, z + t), wall)
            b.box((dx + dw / 2, 0, z - t), (x1, height, z + t), wall)
            b.box((dx - dw / 2, dh, z - t), (dx + dw / 2, height, z + t), wall)
            doors.append((dx, z))
        else:
            b.box((x0, 0, z - t), (x1, height, z + t), wall)

    for i in range(1, len(cols)):
        for j in range(len(rows)):
            wall_x(xs[i], zs[j], zs[j + 1], True)
    for j in range(1, len(rows)):
        for i in range(len(cols)):
            if i == corridor_col:
                continue
            wall_z(zs[j], xs[i], xs[i + 1], corridor_col is None or rng.random() < 0.35)
    # windows and an entrance door, slightly proud of the outer walls
    e = 0.03
    for i in range(len(cols)):
        for z, sgn in ((0.0, 1), (zs[-1], -1)):
            if rng.random() < 0.7 and cols[i] > 1.6:
                ww = rng.uniform(0.8, min(2.4, cols[i] - 0.6))
                cx = rng.uniform(xs[i] + 0.3 + ww / 2, xs[i + 1] - 0.3 - ww / 2)
                sill = rng.uniform(0.7, 1.0)
                top = min(height - 0.25, sill + rng.uniform(1.0, 1.6))
                zz = (z, z + sgn * e) if sgn > 0 else (z - e, z)
                b.box((cx - ww / 2, sill, zz[0]), (cx + ww / 2, top, zz[1]), window)
    for j in range(len(rows)):
        for x, sgn in ((0.0, 1), (xs[-1], -1)):
            if rng.random() < 0.5 and rows[j] > 1.6:
                ww = rng.uniform(0.8, min(2.4, rows[j] - 0.6))
                cz = rng.uniform(zs[j] + 0.3 + ww / 2, zs[j + 1] - 0.3 - ww / 2)
                sill = rng.uniform(0.7, 1.0)
                top = min(height - 0.25, sill + rng.uniform(1.0, 1.6))
                xx = (x, x + e) if sgn > 0 else (x - e, x)
                b.box((xx[0], sill, cz - ww / 2), (xx[1], top, cz + ww / 2), window)
    dz = rng.uniform(0.2, rows[0] - 1.1) if rows[0] > 1.4 else 0.2
    b.box((0.0, 0.0, dz), (e, dh, dz + dw), door)
    rooms = [
        (xs[i], 0.0, zs[j], xs[i + 1], height, zs[j + 1])
        for i in range(len(cols)) for j in range(len(rows))
    ]
    return rooms, doors


def _furnish(b: _Builder, room: tuple, doors: list[tuple], mats: dict) -> None:
    """Furniture against the walls and in the middle, a ceiling lamp, maybe a floor lamp."""
    rng = b.rng
    x0, _, z0, x1, h, z1 = room
    placed: list[tuple] = [(dx - 0.8, dz - 0.8, dx + 0.8, dz + 0.8) for dx, dz in doors]

    def free(r) -> bool:
        return r[0] >= x0 + 0.07 and r[1] >= z0 + 0.07 and r[2] <= x1 - 0.07 and r[3] <= z1 - 0.07 and all(
            r[2] <= q[0] or r[0] >= q[2] or r[3] <= q[1] or r[1] >= q[3] for q in placed
        )

    def spot(sx: float, sz: float, against_wall: bool):
        for _ in range(20):
            if against_wall:
                side = rng.integers(4)
                if side < 2:
                    sx2, sz2 = (sx, sz) if rng.random() < 0.5 else (sz, sx)
                    x = rng.uniform(x0 + 0.08, max(x0 + 0.09, x1 - 0.08 - sx2))
                    z = z0 + 0.08 if side == 0 else z1 - 0.08 - sz2
                else:
                    sx2, sz2 = (sz, sx)
                    z = rng.uniform(z0 + 0.08, max(z0 + 0.09, z1 - 0.08 - sz2))
                    x = x0 + 0.08 if side == 2 else x1 - 0.08 - sx2
            else:
                sx2, sz2 = (sx, sz) if rng.random() < 0.5 else (sz, sx)
                x = rng.uniform(x0 + 0.5, max(x0 + 0.51, x1 - 0.5 - sx2))
                z = rng.uniform(z0 + 0.5, max(z0 + 0.51, z1 - 0.5 - sz2))
            r = (x, z, x + sx2, z + sz2)
            if free(r):
                placed.append(r)
                return r
        return None

    wood, fabric, metal = mats["wood"][rng.integers(len(mats["wood"]))], mats["fabric"][rng.integers(len(mats["fabric"]))], mats["metal"]
    area = (x1 - x0) * (z1 - z0)
    for _ in range(int(rng.integers(3, 5 + min(8, int(area / 3))))):  # real rooms: about one item per 2-3 m²
        item = rng.choice(["table", "sofa", "bed", "shelf", "cabinet", "rug", "plant", "tv", "chair", "chair",
                           "counter", "wardrobe", "desk"])
        if item == "table":
            r = spot(rng.uniform(0.8, 1.8), rng.uniform(0.6, 1.0), False)
            if r:
                top = rng.uniform(0.7, 0.78)
                b.box((r[0], top - 0.04, r[1]), (r[2], top, r[3]), wood)
                for lx, lz in ((r[0], r[1]), (r[2] - 0.06, r[1]), (r[0], r[3] - 0.06), (r[2] - 0.06, r[3] - 0.06)):
                    b.box((lx, 0, lz), (lx + 0.06, top - 0.04, lz + 0.06), wood)
        elif item == "chair":
            r = spot(0.45, 0.45, False)
            if r:
                b.box((r[0], 0.42, r[1]), (r[2], 0.47, r[3]), wood)
                b.box((r[0], 0, r[1]), (r[0] + 0.05, 0.42, r[1] + 0.05), wood)
                b.box((r[2] - 0.05, 0, r[3] - 0.05), (r[2], 0.42, r[3]), wood)
                b.box((r[0], 0.47, r[1]), (r[0] + 0.05, 0.95, r[3]), wood)
        elif item == "sofa":
            r = spot(rng.uniform(1.6, 2.4), 0.9, True)
            if r:
                b.box((r[0], 0.0, r[1]), (r[2], 0.42, r[3]), fabric)
                wide_x = r[2] - r[0] > r[3] - r[1]
                if wide_x:
                    b.box((r[0], 0.42, r[1]), (r[2], 0.85, r[1] + 0.2), fabric)
                else:
                    b.box((r[0], 0.42, r[1]), (r[0] + 0.2, 0.85, r[3]), fabric)
        elif item == "bed":
            r = spot(rng.uniform(1.4, 2.0), 2.1, True)
            if r:
                b.box((r[0], 0.0, r[1]), (r[2], 0.5, r[3]), fabric)
                b.box((r[0], 0.0, r[1]), (r[2], 1.0, r[1] + 0.08), wood)
        elif item in ("shelf", "cabinet"):
            r = spot(rng.uniform(0.6, 1.6), rng.uniform(0.35, 0.6), True)
            if r:
                b.box((r[0], 0, r[1]), (r[2], rng.uniform(0.8, 2.2) if item == "shelf" else 0.9, r[3]), wood)
        elif item == "rug":
            x = rng.uniform(x0 + 0.3, x1 - 1.5)
            z = rng.uniform(z0 + 0.3, z1 - 1.2)
            b.box((x, 0.0, z), (min(x + rng.uniform(1.2, 3), x1 - 0.2), 0.012, min(z + rng.uniform(1, 2.5), z1 - 0.2)), fabric)
        elif item == "plant":
            r = spot(0.5, 0.5, True)
            if r:
                cx, cz = (r[0] + r[2]) / 2, (r[1] + r[3]) / 2
                b.cylinder(cx, cz, 0.2, 0, 0.45, mats["pot"])
                b.sphere((cx, 0.85, cz), rng.uniform(0.3, 0.45), mats["plant"])
        elif item == "counter":  # kitchen run: base units, worktop, wall units
            r = spot(rng.uniform(1.8, 3.2), 0.6, True)
            if r:
                b.box((r[0], 0, r[1]), (r[2], 0.88, r[3]), mats["fabric"][0] if rng.random() < 0.3 else wood)
                b.box((r[0] - 0.02, 0.88, r[1] - 0.02), (r[2] + 0.02, 0.92, r[3] + 0.02), metal)
                if rng.random() < 0.7:
                    back_x = r[2] - r[0] > r[3] - r[1]
                    near = (r[1] - z0 < z1 - r[3]) if back_x else (r[0] - x0 < x1 - r[2])
                    if back_x:
                        zz = (r[1], r[1] + 0.35) if near else (r[3] - 0.35, r[3])
                        b.box((r[0], 1.45, zz[0]), (r[2], min(h - 0.1, 2.2), zz[1]), wood)
                    else:
                        xx = (r[0], r[0] + 0.35) if near else (r[2] - 0.35, r[2])
                        b.box((xx[0], 1.45, r[1]), (xx[1], min(h - 0.1, 2.2), r[3]), wood)
        elif item == "wardrobe":
            r = spot(rng.uniform(0.9, 2.0), 0.6, True)
            if r:
                b.box((r[0], 0, r[1]), (r[2], min(h - 0.15, rng.uniform(1.9, 2.3)), r[3]), wood)
        elif item == "desk":
            r = spot(rng.uniform(1.0, 1.6), 0.65, True)
            if r:
                b.box((r[0], 0.72, r[1]), (r[2], 0.76, r[3]), wood)
                b.box((r[0], 0, r[1]), (r[0] + 0.45, 0.72, r[3]), wood)
                b.box((r[2] - 0.04, 0, r[1]), (r[2], 0.72, r[3]), wood)
                cx, cz = (r[0] + r[2]) / 2, (r[1] + r[3]) / 2
                b.box((cx - 0.25, 0.76, cz - 0.03), (cx + 0.25, 1.1, cz + 0.03), mats["screen"])
        elif item == "tv":
            r = spot(1.2, 0.45, True)
            if r:
                b.box((r[0], 0, r[1]), (r[2], 0.5, r[3]), wood)
                cx, cz = (r[0] + r[2]) / 2, (r[1] + r[3]) / 2
                b.box((cx - 0.5, 0.5, cz - 0.05), (cx + 0.5, 1.1, cz + 0.05), mats["screen"])
    for _ in range(int(rng.integers(0, 4))):  # pictures and mirrors on the walls
        w, hh, y = rng.uniform(0.3, 1.3), rng.uniform(0.3, 0.9), rng.uniform(1.1, 1.7)
        side = int(rng.integers(4))
        art = fabric if rng.random() < 0.5 else mats["fabric"][int(rng.integers(len(mats["fabric"])))]
        if side < 2:
            x = rng.uniform(x0 + 0.1, max(x0 + 0.11, x1 - 0.1 - w))
            z = z0 + 0.06 if side == 0 else z1 - 0.09  # on the partition wall's face (half thickness 0.06)
            b.box((x, y, z), (x + w, min(h - 0.1, y + hh), z + 0.03), art)
        else:
            z = rng.uniform(z0 + 0.1, max(z0 + 0.11, z1 - 0.1 - w))
            x = x0 + 0.06 if side == 2 else x1 - 0.09
            b.box((x, y, z), (x + 0.03, min(h - 0.1, y + hh), z + w), art)
    cx, cz = (x0 + x1) / 2, (z0 + z1) / 2
    b.box((cx - 0.25, h - 0.06, cz - 0.25), (cx + 0.25, h - 0.005, cz + 0.25), mats["lamp"])
    b.lamp((cx, h - 0.3, cz), room)
    if rng.random() < 0.4:
        r = spot(0.4, 0.4, True)
        if r:
            lx, lz = (r[0] + r[2]) / 2, (r[1] + r[3]) / 2
            b.cylinder(lx, lz, 0.025, 0, 1.4, metal)
            b.sphere((lx, 1.55, lz), 0.18, mats["lamp"])
            b.lamp((lx, 1.55, lz), room)


def _indoor_mats(b: _Builder) -> dict:
    return {
        "wood": [b.material("wood") for _ in range(2)],
        "fabric": [b.material("fabric") for _ in range(3)],
        "metal": b.material("metal"),
        "lamp": b.material("lamp"),
        "plant": b.material("plant"),
        "pot": b.material("rock"),
        "screen": b.material("glass"),
    }


def rooms(seed: int) -> Scene:
    """An apartment: a grid of furnished rooms joined by doors, windows on the outer walls."""
    b = _Builder(derive_seed("rooms", seed))
    rng = b.rng
    cols = list(rng.uniform(2.8, 6.0, int(rng.integers(1, 4))))
    rows = list(rng.uniform(2.8, 6.0, int(rng.integers(1, 3))))
    height = rng.uniform(2.5, 3.3)
    mats = _indoor_mats(b)
    rms, doors = _floorplan(b, cols, rows, height, None)
    for r in rms:
        _furnish(b, r, doors, mats)
    return b.build(
        "rooms", "indoor", seed, fly_bounds=(0, 0, 0, sum(cols), height, sum(rows)),
        cam_height=(1.2, min(1.9, height - 0.4)), info={"rooms": len(rms)},
    )


def corridor(seed: int) -> Scene:
    """A long corridor with furnished rooms on both sides, doors into each."""
    b = _Builder(derive_seed("corridor", seed))
    rng = b.rng
    cols = [rng.uniform(3.0, 5.0), rng.uniform(1.8, 2.8), rng.uniform(3.0, 5.0)]
    rows = list(rng.uniform(3.0, 5.0, int(rng.integers(3, 7))))
    height = rng.uniform(2.6, 3.4)
    mats = _indoor_mats(b)
    rms, doors = _floorplan(b, cols, rows, height, corridor_col=1)
    for r in rms:
        if not (r[0] == cols[0]):  # the corridor column itself stays empty, lamps only
            _furnish(b, r, doors, mats)
    for j, r in enumerate(rms):
        if r[0] == cols[0]:
            cx, cz = (r[0] + r[3]) / 2, (r[2] + r[5]) / 2
            b.box((cx - 0.2, height - 0.05, cz - 0.6), (cx + 0.2, height - 0.005, cz + 0.6), mats["lamp"])
            b.lamp((cx, height - 0.3, cz), (cols[0], 0, 0, cols[0] + cols[1], height, sum(rows)))
    return b.build(
        "corridor", "indoor", seed, fly_bounds=(0, 0, 0, sum(cols), height, sum(rows)),
        cam_height=(1.2, min(1.9, height - 0.4)),
        info={"rooms": len(rms), "corridor": [round(cols[0], 3), round(cols[0] + cols[1], 3)]},
    )


def room(seed: int, size: tuple[float, float, float] | None = None) -> Scene:
    """One empty axis-aligned room [0,sx]×[0,sy]×[0,sz] (floor at y = 0): analytic depth."""
    b = _Builder(derive_seed("room", seed))
    rng = b.rng
    sx, sy, sz = size if size is not None else (rng.uniform(3, 8), rng.uniform(2.4, 3.5), rng.uniform(3, 8))
    if min(sx, sy, sz) <= 0:
        raise InputError(f"room size {size}: every side must be > 0")
    wall = b.material("wall", (rng.random(), rng.random(), 0, 0))
    b.shell((0, 0, 0), (sx, sy, sz), (wall, b.material("floor", (0.15, rng.random(), 0, 0)), wall, wall,
                                      b.material("ceiling"), wall))
    b.lamp((sx / 2, sy - 0.3, sz / 2), (0, 0, 0, sx, sy, sz))
    return b.build("room", "indoor", seed, fly_bounds=(0, 0, 0, sx, sy, sz),
                   cam_height=(min(1.2, sy / 2), min(1.9, sy * 0.8)))


def calibration(seed: int = 0) -> Scene:
    """An infinite ground plane y = 0 under an empty sky."""
    b = _Builder(derive_seed("calibration", seed))
    b.plane((0, 1, 0), 0.0, b.material("calib"))
    big = 1e4
    return b.build("calibration", "outdoor", seed, fly_bounds=(-big, 0, -big, big, big, big), cam_height=(1.5, 100.0))


_GENERATORS = {"city": city, "rural": rural, "rooms": rooms, "corridor": corridor, "room": room,
               "calibration": calibration}


def pick_kind(kind: str, seed: int) -> str:
    """`indoor` / `outdoor` → one of their concrete kinds, chosen by the seed; others unchanged."""
    if kind in ("indoor", "outdoor"):
        choices = INDOOR_KINDS if kind == "indoor" else OUTDOOR_KINDS
        return choices[derive_seed("pick", kind, seed) % len(choices)]
    return kind


def make_scene(kind: str, seed: int) -> Scene:
    """Scene of `kind` (one of KINDS, or `indoor` / `outdoor` to pick one from the seed)."""
    kind = pick_kind(kind, seed)
    gen = _GENERATORS.get(kind)
    if gen is None:
        raise InputError(f"scene kind {kind!r}: expected one of {', '.join(KINDS + ('indoor', 'outdoor'))}")
    return gen(int(seed))
