"""Inference: resolve a checkpoint (file, folder or MLflow model URI), predict metric depth for
ERP images, write it colourised (`evaluation.figures.colourise`) and as a coloured point cloud.

Checkpoints: the project's `model.safetensors` (file, folder, MLflow URI) or a DAP release
`model.pth` (recognised by its `core.pretrained.model.*` keys, `models.dap_release`).

Resolution: the input is resized (bilinear, horizontally periodic) to h × 2h, h = `eval.height`
(0 = `train.height`; for DAP's release network 0 = the image's own size) rounded to the
backbone's patch size; the prediction [B,1,h,2h] goes back to the input / ground-truth size with
`eval.upsample`:
- `bilinear_valid`: bilinear (periodic across the seam) of depth·valid and of valid, divided,
  where the interpolated validity is ≥ 0.5; elsewhere 0 (invalid). Invalid (0 = sky / beyond
  range) predictions never blend into valid ones.
- `nearest`: nearest neighbour.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dap_model.accel import autocast
from dap_model.config import DapConfig, project_dir
from dap_model.errors import InputError
from dap_model.io import atomic_path

MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")
CHECKPOINT_SUFFIX = ".safetensors"


def is_mlflow_uri(spec: str) -> bool:
    return str(spec).startswith(MLFLOW_SCHEMES)


def _find_checkpoint(folder: Path, spec: str) -> Path:
    found = sorted(folder.rglob(f"*{CHECKPOINT_SUFFIX}"))
    if not found:
        raise InputError(f"{spec}: no {CHECKPOINT_SUFFIX} checkpoint in it")
    named = [f for f in found if f.name == "model.safetensors"]
    if len(named) == 1:
        return named[0]
    if len(found) == 1:
        return found[0]
    raise InputError(f"{spec}: several checkpoints ({', '.join(f.name for f in found)}); name one file")


def load_checkpoint(spec: str, cfg: DapConfig, device: str | torch.device = "cpu"):
    """A `DapModel` from a `.safetensors` file, a folder holding one, a DAP release `model.pth`,
    or an MLflow URI (`models:/dap-depth@champion`, `models:/dap-depth/3`, `runs:/<id>/model`).

    MLflow: only the safetensors checkpoint that the trainer logs beside the model
    (`<model>/extra_files/model.safetensors`) is downloaded and loaded; the pickled/exported
    MLflow flavour is never loaded."""
    from dap_model.models import is_release_file, load_model, load_release

    spec = str(spec)
    if not is_mlflow_uri(spec):
        path = Path(spec).expanduser()
        if not path.exists():
            raise InputError(f"{path}: checkpoint not found")
        if path.is_file() and path.suffix != CHECKPOINT_SUFFIX:
            if not is_release_file(path):
                raise InputError(f"{path}: neither a {CHECKPOINT_SUFFIX} checkpoint nor a DAP release state dict")
            return load_release(path, map_location=device)
        file = path if path.is_file() else _find_checkpoint(path, str(path))
        return load_model(file, map_location=device).eval()

    import mlflow

    from dap_model.tracking import resolve_tracking_uri

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep CLI output to our lines
    uri = resolve_tracking_uri(cfg.mlflow)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise InputError(f"{spec}: no MLflow tracking store at {uri} (set MLFLOW_TRACKING_URI or mlflow.tracking_uri)")
    mlflow.set_tracking_uri(uri)
    cache = project_dir() / ".cache" / "checkpoints"
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ckpt-", dir=cache))
    try:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=spec.rstrip("/") + "/extra_files", dst_path=str(tmp)))
        except Exception:
            try:
                local = Path(mlflow.artifacts.download_artifacts(artifact_uri=spec, dst_path=str(tmp)))
            except Exception as err:
                msg = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise InputError(f"{spec}: cannot be resolved in the MLflow store {uri} ({msg})") from None
        file = _find_checkpoint(local, spec)
        return load_model(file, map_location=device).eval()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def round_to_patch(n: int, patch_size: int) -> int:
    return max(patch_size, int(round(n / patch_size)) * patch_size)


def inference_height(cfg: DapConfig, model) -> int:
    """`eval.height`, else 0 (each image at its own size) for a model with `native_resolution`
    (DAP's release network), else `train.height`; rounded to the model's patch size."""
    if not cfg.eval.height and getattr(model, "native_resolution", False):
        return 0
    return round_to_patch(cfg.eval.height or cfg.train.height, model.patch_size)


def input_size(hw: tuple[int, int], height: int, patch_size: int) -> tuple[int, int]:
    """Network input size of an image [H,W]: (height, 2·height), or with height 0 its own H, W
    rounded to the patch size."""
    if height:
        return height, 2 * height
    return round_to_patch(hw[0], patch_size), round_to_patch(hw[1], patch_size)


def periodic_resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear (align_corners=False) resize of ERP x [B,C,h,w] to size, wrapping across the seam."""
    from dap_model.models.dpt import wrap_resize

    return wrap_resize(x, size, circular=True)


def resize_depth(depth: Tensor, size: tuple[int, int], mode: str = "bilinear_valid") -> Tensor:
    """depth [B,1,h,w] metres (0 = invalid) → [B,1,H,W] (see module doc for the modes)."""
    if tuple(depth.shape[-2:]) == tuple(size):
        return depth
    if mode == "nearest":
        return torch.nn.functional.interpolate(depth, size=size, mode="nearest")
    if mode != "bilinear_valid":
        raise InputError(f"unknown upsample mode {mode!r}; use bilinear_valid or nearest")
    valid = (torch.isfinite(depth) & (depth > 0)).to(depth.dtype)  # [B,1,h,w]
    num = periodic_resize(torch.nan_to_num(depth) * valid, size)  # [B,1,H,W]
    den = periodic_resize(valid, size)
    keep = den >= 0.5
    return torch.where(keep, num / den.clamp_min(1e-6), torch.zeros_like(num))


def to_input(rgbs: Sequence[np.ndarray], size: tuple[int, int]) -> Tensor:
    """uint8 RGB images [H_i,W_i,3] → float [B,3,h,w] in [0,1] at `size` (periodic bilinear)."""
    out = []
    for rgb in rgbs:
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0  # [1,3,H,W]
        out.append(periodic_resize(x, size))
    return torch.cat(out)


@torch.no_grad()
def predict_outputs(model, rgbs: Sequence[np.ndarray], height: int, out_sizes: Sequence[tuple[int, int]],
                    upsample: str, device: torch.device) -> list[dict[str, np.ndarray]]:
    """For each RGB, at its `out_sizes` entry ([H_i,W_i] float32 unless noted):
    `depth` metres after the model's mask rule (0 = invalid; DAP's release: 100 m beyond range),
    `in_range` bool (the mask rule keeps the pixel), `pred_depth` the depth head's raw output
    (depth / `max_depth_m`), `pred_mask` P(beyond the largest range). `height` 0: each image at
    its own size (rounded to the patch size); images of one input size share a forward pass."""
    was_training = model.training
    model.eval()
    sizes = [input_size(tuple(r.shape[:2]), height, model.patch_size) for r in rgbs]
    results: list[dict[str, np.ndarray]] = [{} for _ in rgbs]
    try:
        for size in dict.fromkeys(sizes):
            idx = [i for i, s in enumerate(sizes) if s == size]
            x = to_input([rgbs[i] for i in idx], size).to(device)  # [b,3,h,w]
            out = model(x)
            maps = {
                "depth": model.apply_mask_rule(out),  # [b,1,h,w]
                "in_range": model.in_range(out).float(),
                "pred_depth": out["depth_norm"],
                "pred_mask": torch.sigmoid(-out["mask_logits"][:, -1:]),
            }
            maps = {k: v.float().cpu() for k, v in maps.items()}
            for j, i in enumerate(idx):
                osz = tuple(out_sizes[i])
                res = {"depth": resize_depth(maps["depth"][j : j + 1], osz, upsample)}
                res.update({k: periodic_resize(maps[k][j : j + 1], osz) for k in ("in_range", "pred_depth", "pred_mask")})
                res = {k: v[0, 0].numpy().astype(np.float32) for k, v in res.items()}
                res["in_range"] = res["in_range"] >= 0.5
                results[i] = res
    finally:
        model.train(was_training)
    return results


def predict_batch(model, rgbs: Sequence[np.ndarray], height: int, out_sizes: Sequence[tuple[int, int]],
                  upsample: str, device: torch.device) -> list[np.ndarray]:
    """Metric depth [H_i,W_i] float32 (the model's mask rule applied) for each RGB, at `out_sizes`."""
    return [o["depth"] for o in predict_outputs(model, rgbs, height, out_sizes, upsample, device)]


def point_cloud(depth: np.ndarray, rgb: np.ndarray, keep: np.ndarray | None = None, max_depth_m: float = 0.0,
                normals: bool = False, subsample: int = 1) -> dict[str, np.ndarray]:
    """ERP depth [H,W] metres + RGB [H,W,3] → `points` [N,3] float32 (x right, y up, z forward),
    `colours` [N,3] uint8 and with `normals` unit `normals` [N,3] float32 (facing the camera; 0
    where the neighbourhood is not valid), via `geometry.depth_to_points/depth_to_normals`.
    A pixel becomes a point when its depth is finite and > 0, `keep` [H,W] (the mask rule) is
    true, depth ≤ `max_depth_m` (0 = no cap), and its row and column are multiples of `subsample`."""
    from dap_model.geometry import depth_to_normals, depth_to_points

    if subsample < 1:
        raise InputError(f"subsample {subsample}: must be >= 1")
    d = np.where(np.isfinite(depth), depth, 0).astype(np.float32)
    m = d > 0
    if keep is not None:
        m &= keep
    if max_depth_m > 0:
        m &= d <= max_depth_m
    d = np.where(m, d, 0).astype(np.float32)
    dt = torch.from_numpy(d)[None, None]  # [1,1,H,W]
    pts = depth_to_points(dt)[0].permute(1, 2, 0).numpy()  # [H,W,3]
    grid = np.zeros_like(m)
    grid[::subsample, ::subsample] = True
    m &= grid
    out = {"points": pts[m], "colours": rgb[m]}
    if normals:
        out["normals"] = depth_to_normals(dt)[0].permute(1, 2, 0).numpy()[m]  # [N,3]
    return out


def write_ply(path: str | Path, points: np.ndarray, colours: np.ndarray, normals: np.ndarray | None = None) -> Path:
    """Binary little-endian PLY with float x, y, z, [nx, ny, nz] and uchar red, green, blue
    (plyfile), atomic."""
    from plyfile import PlyData, PlyElement

    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if normals is not None:
        fields += [("nx", "f4"), ("ny", "f4"), ("nz", "f4")]
    vertex = np.empty(len(points), dtype=fields + [("red", "u1"), ("green", "u1"), ("blue", "u1")])
    vertex["x"], vertex["y"], vertex["z"] = points[:, 0], points[:, 1], points[:, 2]
    if normals is not None:
        vertex["nx"], vertex["ny"], vertex["nz"] = normals[:, 0], normals[:, 1], normals[:, 2]
    vertex["red"], vertex["green"], vertex["blue"] = colours[:, 0], colours[:, 1], colours[:, 2]
    path = Path(path)
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(vertex, "vertex")], text=False).write(str(tmp))
    return path


def save_npy(path: str | Path, arr: np.ndarray) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
    return path


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    from dap_model.data.shards import encode_png

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(encode_png(rgb))
    return path


def read_panoramas(images: Sequence[str | Path]) -> list[tuple[Path, np.ndarray]]:
    """Read and check the ERP images to predict: [(path, RGB uint8 [H,2H,3])]. Raises `InputError`
    naming the first unreadable or non-2:1 image, or a stem two inputs share (their outputs would
    overwrite each other)."""
    from dap_model.images import read_rgb

    paths = [Path(p) for p in images]
    stems = [p.stem for p in paths]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise InputError(f"several inputs share the stem {dup[0]!r}; outputs would overwrite each other")
    out = []
    for p in paths:
        rgb = read_rgb(p)
        h, w = rgb.shape[:2]
        if w != 2 * h:
            raise InputError(f"{p}: {h}x{w} is not an equirectangular panorama (width must be 2 x height)")
        out.append((p, rgb))
    return out


def predict_files(model, panoramas: Sequence[tuple[Path, np.ndarray]], out_dir: str | Path, cfg: DapConfig,
                  ply: bool = False, device: torch.device | None = None, *, raw: bool = False,
                  normals: bool = False, max_depth_m: float = 0.0, subsample: int = 1) -> list[dict[str, str]]:
    """For each (path, RGB) of `read_panoramas` write `<stem>_depth.npy` (metres after the mask
    rule, input resolution), `<stem>_depth.png` (colourised); with `raw` `<stem>_pred_depth.npy`
    (the depth head, units of `max_depth_m`) and `<stem>_pred_mask.npy` (P(beyond range)); with
    `ply` `<stem>.ply` (`point_cloud`: pixels the mask rule keeps, depth ≤ `max_depth_m` if > 0,
    every `subsample`-th row/column, normals on request). Returns the written paths per image."""
    from dap_model.accel import resolve_device

    device = device or resolve_device(cfg.eval.device)
    paths = [p for p, _ in panoramas]
    rgbs = [rgb for _, rgb in panoramas]
    if subsample < 1:
        raise InputError(f"--subsample {subsample}: must be >= 1")
    height = inference_height(cfg, model)
    out = Path(out_dir)
    written = []
    bs = cfg.eval.batch_size
    for i in range(0, len(paths), bs):
        chunk = rgbs[i : i + bs]
        preds = predict_outputs(model, chunk, height, [r.shape[:2] for r in chunk], cfg.eval.upsample, device)
        for p, rgb, pred in zip(paths[i : i + bs], chunk, preds):
            depth = pred["depth"]
            rec = {
                "image": str(p),
                "depth_npy": str(save_npy(out / f"{p.stem}_depth.npy", depth)),
                "depth_png": str(save_png(out / f"{p.stem}_depth.png",
                                          colourise(depth, cfg.eval.colormap, cfg.eval.colour_max_m))),
            }
            if raw:
                rec["pred_depth_npy"] = str(save_npy(out / f"{p.stem}_pred_depth.npy", pred["pred_depth"]))
                rec["pred_mask_npy"] = str(save_npy(out / f"{p.stem}_pred_mask.npy", pred["pred_mask"]))
            if ply:
                pc = point_cloud(depth, rgb, pred["in_range"], max_depth_m, normals, subsample)
                rec["ply"] = str(write_ply(out / f"{p.stem}.ply", pc["points"], pc["colours"], pc.get("normals")))
                rec["points"] = str(len(pc["points"]))
            written.append(rec)
    return written


def colourise(depth: np.ndarray, cmap: str = "Spectral", vmax: float = 0.0) -> np.ndarray:
    """[H,W] metres → [H,W,3] uint8 with a matplotlib colormap (near = the colormap's start,
    `vmax` = its end; 0 = the 99th percentile of valid depth); invalid (≤ 0, non-finite) black."""
    import matplotlib

    valid = np.isfinite(depth) & (depth > 0)
    if vmax <= 0:
        vmax = float(np.percentile(depth[valid], 99)) if valid.any() else 1.0
    norm = np.clip(np.where(valid, depth, 0) / max(vmax, 1e-6), 0, 1)
    rgb = (matplotlib.colormaps[cmap](norm)[..., :3] * 255).round().astype(np.uint8)
    rgb[~valid] = 0
    return rgb


@torch.no_grad()
def predict_equivariant(model, rgb: torch.Tensor, views: int) -> torch.Tensor:
    """Test-time averaging over the ERP's exact symmetries: views/2 yaw rolls evenly spaced over
    360°, each also mirrored (the whole dihedral group, so the result commutes with those rolls
    and with the mirror); outputs are mapped back, depth averaged in log space, the range-mask
    probability averaged before the mask rule. views = 1: one plain pass. rgb [B,3,H,W] -> [B,1,H,W]."""
    if views == 1:
        return model.predict(rgb)
    if views % 2:
        raise ValueError(f"views must be 1 or even (rolls x mirror), got {views}")
    was_training = model.training
    model.eval()
    try:
        w, rolls = rgb.shape[-1], views // 2
        log_depth, keep_p = 0.0, 0.0
        for k in range(rolls):
            shift = (k * w) // rolls
            for mirror in (False, True):
                x = torch.roll(rgb, shift, dims=-1)
                x = x.flip(-1) if mirror else x
                out = model(x)
                d, m = out["depth"].float(), torch.sigmoid(out["mask_logits"][:, -1:].float())  # [B,1,H,W] each
                if mirror:
                    d, m = d.flip(-1), m.flip(-1)
                log_depth = log_depth + torch.roll(d, -shift, dims=-1).clamp_min(1e-6).log()
                keep_p = keep_p + torch.roll(m, -shift, dims=-1)
        depth, keep = (log_depth / views).exp(), keep_p / views >= model.cfg.mask_threshold
        return torch.where(keep, depth, torch.zeros_like(depth))
    finally:
        model.train(was_training)


@torch.no_grad()
def predict_at(model, rgb: torch.Tensor, sizes: list[tuple[int, int]], device, amp_dtype: str,
               views: int = 1) -> list[np.ndarray]:
    """rgb [B,3,h,w] in [0,1] -> per image [H_i,W_i] float32 metres (mask rule applied), resized
    (nearest, keeps 0 = invalid) to each image's stored size; `views` > 1 = `predict_equivariant`."""
    with autocast(device, amp_dtype):
        x = rgb.to(device)
        pred = predict_equivariant(model, x, views).float()  # [B,1,h,w]
    out = []
    for i, (h, w) in enumerate(sizes):
        p = pred[i : i + 1]
        if p.shape[-2:] != (h, w):
            p = F.interpolate(p, size=(h, w), mode="nearest")
        out.append(p[0, 0].cpu().numpy())
    return out
