"""Checkpoints: `<dir>/step-NNNNNNNN/{model.safetensors, trainer.pt, config.resolved.yaml}`.

A checkpoint is written into a temporary folder `.step-NNNNNNNN.*.tmp` (every file fsynced), then
renamed onto its final name, so a folder named `step-*` is always complete. Old checkpoints are
renamed to a temporary name before they are deleted. `trainer.pt` holds only tensors and
primitive containers and is read with `torch.load(weights_only=True)`."""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from dap_model.config import DapConfig, write_resolved_config
from dap_model.errors import InputError

STEP_RE = re.compile(r"^step-(\d{8})$")
MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer.pt"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for f in path.iterdir():
        if f.is_file():
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(path)


def rng_state() -> dict[str, Any]:
    """Python, NumPy (legacy global) and torch RNG states as tensors / primitives."""
    py = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": (py[0], list(py[1]), py[2]),
        "numpy": (np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    name, keys, pos, has_gauss, g = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, g))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(ckpt_dir: str | Path) -> list[tuple[int, Path]]:
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = STEP_RE.match(p.name)
        if m and p.is_dir() and (p / MODEL_FILE).is_file() and (p / STATE_FILE).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(ckpt_dir: str | Path) -> Path | None:
    found = list_checkpoints(ckpt_dir)
    return found[-1][1] if found else None


def clean_temporaries(ckpt_dir: str | Path) -> list[Path]:
    """Remove `.*.tmp` leftovers of a killed writer; return what was removed."""
    d = Path(ckpt_dir)
    removed = []
    if d.is_dir():
        for p in d.iterdir():
            if p.name.startswith(".") and p.name.endswith(".tmp"):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
                removed.append(p)
    return removed


def save_checkpoint(
    ckpt_dir: str | Path,
    step: int,
    save_weights: Callable[[Path], None],
    trainer_state: dict[str, Any],
    cfg: DapConfig,
    keep: int,
) -> Path:
    """Write checkpoint `step` atomically; keep the newest `keep`. `save_weights(path)` writes
    the model's safetensors file."""
    d = Path(ckpt_dir)
    d.mkdir(parents=True, exist_ok=True)
    final = d / f"step-{step:08d}"
    if final.is_dir():
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=d))
    try:
        save_weights(tmp / MODEL_FILE)
        torch.save(trainer_state, tmp / STATE_FILE)
        write_resolved_config(cfg, tmp)
        _fsync_tree(tmp)
        os.rename(tmp, final)
        _fsync_dir(d)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for _, old in list_checkpoints(d)[:-keep]:
        trash = Path(tempfile.mkdtemp(prefix=f".{old.name}.", suffix=".tmp", dir=d))
        os.rename(old, trash / old.name)
        shutil.rmtree(trash)
    return final


def load_trainer_state(ckpt: str | Path) -> dict[str, Any]:
    path = Path(ckpt) / STATE_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InputError(f"{path}: unreadable trainer state ({type(err).__name__}: {err})") from None


def file_sha256(path: str | Path, n: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


def safetensors_digest(path: str | Path, n: int = 16) -> str:
    """Content hash of a safetensors file: its header with keys sorted (safetensors writes the
    metadata map in a per-process random order) followed by the tensor bytes."""
    import json
    import struct

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise InputError(f"{path}: not a safetensors file")
        (size,) = struct.unpack("<Q", raw)
        try:
            header = json.loads(fh.read(size))
        except ValueError:
            raise InputError(f"{path}: not a safetensors file") from None
        h.update(json.dumps(header, sort_keys=True).encode())
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


def initial_model(cfg: DapConfig, init_from: str | Path | None = None):
    """`(model, cfg)` a training starts from: `init_from` (the previous stage's model.safetensors),
    else `cfg.train.init_from`, else `build_model(cfg.model)`.

    A file holding DAP's released network (a release `model.pth`, or a model.safetensors of
    architecture dap_release) brings its network: its model section replaces `cfg.model` (keeping
    `grad_checkpointing`), so the returned config describes what is trained. Any other
    model.safetensors loads (strictly) into `cfg.model`'s network."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from dap_model.config import ModelConfig
    from dap_model.models import build_model
    from dap_model.models.dap_release import (
        build_release_model,
        is_release_file,
        read_release,
        release_model_config,
        release_to_state_dict,
    )

    src = init_from or cfg.train.init_from
    if not src:
        return build_model(cfg.model), cfg
    path = Path(src).expanduser()
    if not path.is_file():
        raise InputError(f"init_from {str(path)!r}: no such checkpoint")
    keep = {"grad_checkpointing": cfg.model.grad_checkpointing}
    if is_release_file(path):
        sd = read_release(path)
        mcfg = release_model_config(sd, str(path)).model_copy(update=keep)
        model = build_release_model(mcfg)
        model.load_state_dict(release_to_state_dict(sd, model, str(path)), strict=True)
        return model, cfg.model_copy(update={"model": mcfg})
    if path.suffix != ".safetensors":
        raise InputError(f"init_from {str(path)!r}: neither a model.safetensors nor a DAP release state dict")
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    mcfg = cfg.model
    if "dap.model_config" in meta:
        saved = ModelConfig.model_validate_json(meta["dap.model_config"])
        if saved.architecture == "dap_release":
            mcfg = saved.model_copy(update=keep)
    model = build_model(mcfg)
    model.load_state_dict(load_file(str(path)), strict=True)
    return model, cfg.model_copy(update={"model": mcfg})


def init_digest(path: str | Path) -> str:
    """Content hash of a training's starting checkpoint (safetensors or release file)."""
    return safetensors_digest(path) if Path(path).suffix == ".safetensors" else file_sha256(path)
