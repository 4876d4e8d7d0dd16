"""Perspective depth teachers (registry + factory): relative disparity on rotated cube faces.

    teacher = build_teacher(cfg.distill, device, store)    # "depth-anything" | "dap"
    disp, valid = teacher(rgb [B,3,H,W] in [0,1], R [B,3,3], face_w)   # [B,6,1,w,w] each

- `depth-anything`: transformers' DepthAnythingForDepthEstimation (V1/V2 relative checkpoints,
  hub id or local folder). Each face is resized to `teacher_input_size`, ImageNet-normalised and
  its `predicted_depth` (relative disparity, up to scale and shift) resized back to the face.
- `dap`: the project's own metric model (`load_model`) run on the rotated panorama; its depth
  (0 where its range mask says invalid) is projected onto the faces, turned into planar depth
  and inverted (disparity = 1/z).
Valid = finite and > 0 (a ReLU-clamped zero disparity carries no ordering)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from dap_model import layout
from dap_model.config import DistillConfig
from dap_model.distill.faces import erp_depth_to_face_disparity, rotated_cube
from dap_model.errors import ConfigError, InputError
from dap_model.geometry import rotate_erp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DAP_TEACHER_DEFAULTS = tuple(layout.model_key(s) for s in ("stage3", "stage2", "stage1"))

_REGISTRY: dict[str, Callable[..., "Teacher"]] = {}


def register_teacher(name: str):
    def deco(factory):
        _REGISTRY[name] = factory
        return factory
    return deco


def available_teachers() -> list[str]:
    return sorted(_REGISTRY)


class Teacher:
    name = "teacher"
    source = ""  # what was loaded (id, path, store key)

    def __call__(self, rgb: Tensor, R: Tensor, face_w: int) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class DepthAnythingTeacher(Teacher):
    name = "depth-anything"

    def __init__(self, model, input_size: int, batch_size: int, device: torch.device, source: str = ""):
        if input_size % 14:
            raise ConfigError(f"distill.teacher_input_size={input_size}: must be a multiple of 14 (ViT patch)")
        self.model = model.to(device).eval()
        self.input_size = input_size
        self.batch_size = batch_size
        self.device = device
        self.source = source
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    @torch.no_grad()
    def faces(self, faces: Tensor) -> Tensor:
        """faces [N,3,w,w] in [0,1] → relative disparity [N,1,w,w]."""
        w = faces.shape[-1]
        outs = []
        for chunk in faces.split(self.batch_size):
            x = F.interpolate(chunk.to(self.device), size=(self.input_size,) * 2, mode="bicubic", align_corners=False)
            x = (x.clamp(0, 1) - self.mean) / self.std  # [n,3,S,S]
            pred = self.model(pixel_values=x).predicted_depth  # [n,S',S']
            outs.append(F.interpolate(pred[:, None].float(), size=(w, w), mode="bilinear", align_corners=False))
        return torch.cat(outs)  # [N,1,w,w]

    def __call__(self, rgb: Tensor, R: Tensor, face_w: int) -> tuple[Tensor, Tensor]:
        b = rgb.shape[0]
        faces = rotated_cube(rgb.float(), R, face_w).reshape(b * 6, 3, face_w, face_w)  # [B·6,3,w,w]
        disp = self.faces(faces).reshape(b, 6, 1, face_w, face_w).cpu()
        valid = torch.isfinite(disp) & (disp > 0)
        return torch.where(valid, disp, torch.zeros_like(disp)), valid


class DapTeacher(Teacher):
    name = "dap"

    def __init__(self, model, device: torch.device, source: str = ""):
        self.model = model.to(device).eval()
        self.device = device
        self.source = source

    @torch.no_grad()
    def __call__(self, rgb: Tensor, R: Tensor, face_w: int) -> tuple[Tensor, Tensor]:
        x = rotate_erp(rgb.float().to(self.device), torch.as_tensor(R, dtype=torch.float32, device=self.device))
        depth = self.model.predict(x.clamp(0, 1)).float()  # [B,1,H,W] metres, 0 = invalid
        eye = torch.eye(3, dtype=torch.float64)
        disp, valid = erp_depth_to_face_disparity(depth.cpu(), eye, face_w)  # the image is already rotated
        return disp, valid


@register_teacher("depth-anything")
def _depth_anything(cfg: DistillConfig, device: torch.device, store=None) -> Teacher:
    from dap_model.compat import ensure_torchvision_importable

    if not cfg.teacher_model:
        raise ConfigError("distill.teacher_model is empty: give a Depth Anything checkpoint (hub id or local folder), "
                          "e.g. depth-anything/Depth-Anything-V2-Large-hf, or use distill.teacher=dap")
    ensure_torchvision_importable()
    from transformers import DepthAnythingForDepthEstimation

    try:
        model = DepthAnythingForDepthEstimation.from_pretrained(cfg.teacher_model)
    except OSError as err:
        raise InputError(f"distill.teacher_model {cfg.teacher_model!r}: cannot load ({err})") from None
    return DepthAnythingTeacher(model, cfg.teacher_input_size, cfg.teacher_batch_size, device, cfg.teacher_model)


def resolve_dap_checkpoint(cfg: DistillConfig, store=None) -> tuple[Path, str]:
    """(local checkpoint, what it is): a file path, a store key, or (empty) the most advanced
    published stage model in the store (stage3, then stage2, then stage1)."""
    if cfg.teacher_model:
        p = Path(cfg.teacher_model)
        if p.exists():
            return p, str(p)
        if store is not None and store.exists(cfg.teacher_model):
            return Path(store.fetch(cfg.teacher_model)), store.uri(cfg.teacher_model)
        raise InputError(f"distill.teacher_model {cfg.teacher_model!r}: neither a file nor a key in the data store")
    for key in DAP_TEACHER_DEFAULTS if store is not None else ():
        if store.exists(key):
            return Path(store.fetch(key)), store.uri(key)
    raise InputError("distill.teacher=dap: no published model (models/stage{3,2,1}/model.safetensors) in the data "
                     "store; train a stage first or set distill.teacher_model")


@register_teacher("dap")
def _dap(cfg: DistillConfig, device: torch.device, store=None) -> Teacher:
    from dap_model.models import load_model

    path, source = resolve_dap_checkpoint(cfg, store)
    return DapTeacher(load_model(path, map_location=device), device, source)


def build_teacher(cfg: DistillConfig, device: torch.device | str = "cpu", store=None) -> Teacher:
    if cfg.teacher not in _REGISTRY:
        raise ConfigError(f"distill.teacher={cfg.teacher!r}: unknown; available: {', '.join(available_teachers())}")
    return _REGISTRY[cfg.teacher](cfg, torch.device(device), store)


__all__ = ["DapTeacher", "DepthAnythingTeacher", "Teacher", "available_teachers", "build_teacher",
           "register_teacher", "resolve_dap_checkpoint"]
