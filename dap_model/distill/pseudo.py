"""`perspective_pseudo_labels`: the teacher's relative disparity on K randomly rotated cube-face
sets of every pool panorama, with sky/watermark masks, as shards under `distill/` + manifest.

Sample `<poolkey>-r<k>` of a shard: `rgb.png` = the unrotated panorama at train.height (what the
student sees), `depth.npy` = teacher disparity faces [6·w, w] float32 (faces F,R,B,L,U,D stacked
vertically, raw teacher values everywhere), `mask.npy` = valid [6·w, w] uint8 (1 = use), `json` =
rotation (yaw, pitch, roll in degrees; R = rotation_matrix of them) and per-face valid fractions.
A face with valid fraction < min_valid_fraction is dropped (mask zeroed); a rotation whose
panorama-wide valid fraction is below it is dropped whole (manifest row with kept = False)."""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from dap_model import layout
from dap_model.accel import resolve_device
from dap_model.config import RESOLVED_CONFIG_NAME, DapConfig, write_resolved_config
from dap_model.data.samples import resize_pair
from dap_model.data.shards import Sample, ShardWriter
from dap_model.distill.faces import face_size, random_rotations, rotated_cube
from dap_model.distill.masks import build_masker
from dap_model.distill.teachers import build_teacher
from dap_model.geometry import CUBE_FACES, rotation_matrix
from dap_model.pool import iter_pool_samples, read_pool_manifest
from dap_model.storage import replace_prefix

MANIFEST_COLUMNS = ["key", "pool_key", "pool_shard", "shard", "rotation", "yaw_deg", "pitch_deg", "roll_deg",
                    "face_w", "valid_fraction", "face_valid_fraction", "dropped_faces", "kept"]


@dataclass
class DistillLabels:
    manifest: pd.DataFrame
    shards: list[str]
    teacher: str
    teacher_source: str
    masker: str
    face_w: int


def sample_generator(seed: int, key: str) -> torch.Generator:
    """Rotations of a panorama depend only on (seed, key), not on batching or order."""
    h = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(h[:8], "little") & (2**63 - 1))


def _group(row: dict) -> str | None:
    """Frames of one web video share a group (static-overlay statistics)."""
    if row.get("source") == "web" and row.get("origin"):
        return f"web:{row['origin']}"
    return None


def label_batch(teacher, masker, cfg: DapConfig, rgbs: np.ndarray, groups: list, angles: torch.Tensor,
                face_w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """rgbs [B,H,W,3] uint8, angles [B,3] degrees → (disparity, valid) [B,6,1,w,w]."""
    x = torch.from_numpy(rgbs).permute(0, 3, 1, 2).float() / 255.0  # [B,3,H,W]
    R = rotation_matrix(*angles.unbind(-1), degrees=True)  # [B,3,3]
    disp, valid = teacher(x, R, face_w)
    erp_mask = masker.erp_masks(rgbs, groups)  # [B,H,W] bool | None
    if erp_mask is not None:
        m = torch.from_numpy(erp_mask[:, None].astype(np.float32))  # [B,1,H,W]
        valid &= ~(rotated_cube(m, R, face_w, mode="nearest") > 0.5)
    faces = rotated_cube(x, R, face_w).reshape(-1, 3, face_w, face_w)  # [B·6,3,w,w]
    fm = masker.face_masks(faces)
    if fm is not None:
        valid &= ~fm.reshape(valid.shape).cpu()
    return disp, valid


def build_perspective_pseudo_labels(cfg: DapConfig, store, progress: bool = True) -> DistillLabels:
    dc = cfg.distill
    device = resolve_device(cfg.train.device)
    teacher = build_teacher(dc, device, store)
    masker = build_masker(dc, device)
    pool = read_pool_manifest(store)
    height = cfg.train.height
    face_w = face_size(height, dc.face_ratio)
    if masker.observes:
        for row, rgb in tqdm(iter_pool_samples(store, pool), total=len(pool), desc="mask statistics", disable=not progress):
            masker.observe(_group(row), resize_pair(rgb, None, height)[0])
    rows: list[dict] = []
    bs = max(1, dc.teacher_batch_size // 6)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        writer = ShardWriter(tmp_dir, "distill", cfg.ingest.shard_size)
        pending: list[tuple[dict, np.ndarray]] = []

        def flush() -> None:
            rgbs = np.stack([rgb for _, rgb in pending])  # [B,H,W,3]
            groups = [_group(r) for r, _ in pending]
            angles = torch.stack([random_rotations(dc.rotations, dc.max_rotation_deg, sample_generator(dc.seed, r["key"]))[0]
                                  for r, _ in pending])  # [B,K,3]
            for k in range(dc.rotations):
                disp, valid = label_batch(teacher, masker, cfg, rgbs, groups, angles[:, k], face_w)
                face_frac = valid.float().mean((2, 3, 4))  # [B,6]
                drop = face_frac < dc.min_valid_fraction  # [B,6]
                valid[drop] = False
                for i, (row, rgb) in enumerate(pending):
                    frac = float(valid[i].float().mean())
                    kept = frac >= dc.min_valid_fraction and bool(valid[i].any())
                    key = f"{row['key']}-r{k}"
                    yaw, pitch, roll = (float(a) for a in angles[i, k])
                    shard = ""
                    if kept:
                        meta = {"pool_key": row["key"], "pool_shard": row["shard"], "rotation_deg": [yaw, pitch, roll],
                                "face_w": face_w, "faces": list(CUBE_FACES), "teacher": teacher.name,
                                "face_valid_fraction": face_frac[i].tolist(), "kind": "relative_disparity_faces"}
                        shard = writer.write(Sample(
                            key, rgb, disp[i].reshape(6 * face_w, face_w).numpy().astype(np.float32),
                            valid[i].reshape(6 * face_w, face_w).numpy().astype(np.uint8), meta,
                        ))
                    rows.append({
                        "key": key, "pool_key": row["key"], "pool_shard": row["shard"], "shard": shard, "rotation": k,
                        "yaw_deg": yaw, "pitch_deg": pitch, "roll_deg": roll, "face_w": face_w, "valid_fraction": frac,
                        "face_valid_fraction": face_frac[i].tolist(),
                        "dropped_faces": [f for f, d in zip(CUBE_FACES, drop[i].tolist()) if d], "kept": kept,
                    })
            pending.clear()

        for row, rgb in tqdm(iter_pool_samples(store, pool), total=len(pool), desc="perspective pseudo-labels",
                             disable=not progress):
            pending.append((row, resize_pair(rgb, None, height)[0]))
            if len(pending) == bs:
                flush()
        if pending:
            flush()
        shards = writer.close()
        manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
        manifest.to_parquet(tmp_dir / layout.MANIFEST_NAME, index=False)
        write_resolved_config(cfg, tmp_dir)
        (tmp_dir / layout.TEACHER_NAME).write_text(json.dumps(
            {"teacher": teacher.name, "source": teacher.source, "mask": masker.name, "face_w": face_w}, indent=2))
        replace_prefix(store, layout.DISTILL, tmp_dir, set(shards) | {layout.MANIFEST_NAME, RESOLVED_CONFIG_NAME, layout.TEACHER_NAME})
    return DistillLabels(manifest, shards, teacher.name, teacher.source, masker.name, face_w)


def load_distill_manifest(store) -> pd.DataFrame:
    from dap_model.errors import InputError

    if not store.exists(layout.DISTILL_MANIFEST):
        raise InputError(f"{store.uri(layout.DISTILL_MANIFEST)}: no manifest (materialise perspective_pseudo_labels first)")
    return pd.read_parquet(io.BytesIO(store.get_bytes(layout.DISTILL_MANIFEST)))


def distill_shard_keys(store) -> list[str]:
    m = load_distill_manifest(store)
    return [layout.join(layout.DISTILL, s) for s in sorted(m.loc[m["kept"], "shard"].unique())]
