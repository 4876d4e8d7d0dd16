"""Sky / watermark masks for the teacher's faces (registry + factory). True = exclude.

    masker = build_masker(cfg.distill, device)        # "builtin" | "grounded-sam" | "none"
    masker.observe(group, rgb)                        # builtin: per-video statistics (first pass)
    erp = masker.erp_masks(rgbs [B,H,W,3] uint8, groups)       # [B,H,W] bool or None
    faces = masker.face_masks(faces [N,3,w,w] in [0,1])        # [N,1,w,w] bool or None

- `builtin` (offline, no weights), on the panorama:
  * sky: pixels that are bright (max RGB ≥ sky_min_brightness), smooth (5×5 mean of |Sobel| of
    grey ≤ sky_max_gradient) and not warm (blue ≥ red − 0.02), grouped into connected regions;
    a region is sky when it touches the top row (the zenith) and its mean latitude is above
    sky_min_lat_deg. Misses dark/night skies and textured cloud; can take a white ceiling that is
    bright, cold and smooth for sky.
  * watermark: a static overlay on web video frames — pixels whose colour std over ≥
    watermark_min_frames frames of the same video stays ≤ watermark_max_std while the rest of
    the picture changes. If more than watermark_max_fraction of the frame is static the camera
    itself is static and nothing is masked. Single images (synthesis) get no watermark mask.
- `grounded-sam`: transformers' GroundingDINO (text prompts `prompts`, box_threshold /
  text_threshold) finds boxes on every face; SAM turns each box into a mask; union per face.
- `none`: nothing masked (ablation)."""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
import torch
from torch import Tensor

from dap_model.config import DistillConfig
from dap_model.errors import ConfigError, InputError

_REGISTRY: dict[str, Callable[..., "Masker"]] = {}


def register_masker(name: str):
    def deco(factory):
        _REGISTRY[name] = factory
        return factory
    return deco


def available_maskers() -> list[str]:
    return sorted(_REGISTRY)


class Masker:
    name = "none"
    observes = False  # needs a first pass over the pool (observe)

    def observe(self, group: str | None, rgb: np.ndarray) -> None:
        pass

    def erp_masks(self, rgbs: np.ndarray, groups: list[str | None]) -> np.ndarray | None:
        return None

    def face_masks(self, faces: Tensor) -> Tensor | None:
        return None


def sky_mask(rgb: np.ndarray, min_brightness: float, max_gradient: float, min_lat_deg: float) -> np.ndarray:
    """rgb [H,W,3] uint8 ERP → sky [H,W] bool (see module doc)."""
    f = rgb.astype(np.float32) / 255.0
    h, w = f.shape[:2]
    grey = f @ np.array([0.299, 0.587, 0.114], np.float32)
    pad = cv2.copyMakeBorder(grey, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    pad[:, 0], pad[:, -1] = pad[:, w], pad[:, 1]  # wrap across the ±180° seam
    gx = cv2.Sobel(pad, cv2.CV_32F, 1, 0, ksize=3)[1:-1, 1:-1] / 8.0
    gy = cv2.Sobel(pad, cv2.CV_32F, 0, 1, ksize=3)[1:-1, 1:-1] / 8.0
    grad = cv2.blur(np.abs(gx) + np.abs(gy), (5, 5), borderType=cv2.BORDER_REFLECT)
    cand = (f.max(-1) >= min_brightness) & (grad <= max_gradient) & (f[..., 2] >= f[..., 0] - 0.02)
    n, labels = cv2.connectedComponents(cand.astype(np.uint8), connectivity=8)
    labels = labels.copy()
    first, last = labels[:, 0], labels[:, -1]  # join regions across the seam
    for a, b in zip(first[(first > 0) & (last > 0)], last[(first > 0) & (last > 0)]):
        labels[labels == b] = a
    lat = 90.0 - (np.arange(h) + 0.5) / h * 180.0  # [H] degrees
    sky = np.zeros((h, w), bool)
    for lab in np.unique(labels[0][labels[0] > 0]):
        region = labels == lab
        if lat[np.nonzero(region)[0]].mean() > min_lat_deg:
            sky |= region
    return sky


class BuiltinMasker(Masker):
    name = "builtin"
    observes = True

    def __init__(self, cfg: DistillConfig):
        self.cfg = cfg
        self._stats: dict[str, list] = {}  # group → [n, sum [H,W,3], sum of squares [H,W,3]]

    def observe(self, group: str | None, rgb: np.ndarray) -> None:
        if group is None:
            return
        f = rgb.astype(np.float64) / 255.0
        st = self._stats.get(group)
        if st is None or st[1].shape != f.shape:
            st = self._stats[group] = [0, np.zeros_like(f), np.zeros_like(f)]
        st[0] += 1
        st[1] += f
        st[2] += f * f

    def static_mask(self, group: str | None, shape: tuple[int, int]) -> np.ndarray | None:
        st = self._stats.get(group) if group is not None else None
        if st is None or st[0] < self.cfg.watermark_min_frames or st[1].shape[:2] != shape:
            return None
        n, s, q = st
        std = np.sqrt(np.maximum(q / n - (s / n) ** 2, 0.0)).max(-1)  # [H,W]
        static = std <= self.cfg.watermark_max_std
        if static.mean() > self.cfg.watermark_max_fraction:
            return None
        return cv2.dilate(static.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)

    def erp_masks(self, rgbs: np.ndarray, groups: list[str | None]) -> np.ndarray:
        out = np.zeros(rgbs.shape[:3], bool)
        for i, (rgb, g) in enumerate(zip(rgbs, groups)):
            c = self.cfg
            out[i] = sky_mask(rgb, c.sky_min_brightness, c.sky_max_gradient, c.sky_min_lat_deg)
            wm = self.static_mask(g, rgb.shape[:2])
            if wm is not None:
                out[i] |= wm
        return out


class GroundedSamMasker(Masker):
    name = "grounded-sam"

    def __init__(self, cfg: DistillConfig, detector, det_processor, segmenter, seg_processor, device: torch.device):
        self.cfg = cfg
        self.detector = detector.to(device).eval()
        self.det_processor = det_processor
        self.segmenter = segmenter.to(device).eval()
        self.seg_processor = seg_processor
        self.device = device
        self.text = " ".join(p.strip().lower().rstrip(".") + "." for p in cfg.prompts)  # "sky. watermark."

    @torch.no_grad()
    def face_masks(self, faces: Tensor) -> Tensor:
        n, _, h, w = faces.shape
        imgs = [(f.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy() for f in faces]
        out = torch.zeros(n, 1, h, w, dtype=torch.bool)
        inputs = self.det_processor(images=imgs, text=[self.text] * n, return_tensors="pt").to(self.device)
        det = self.detector(**inputs)
        results = self.det_processor.post_process_grounded_object_detection(
            det, inputs["input_ids"], threshold=self.cfg.box_threshold, text_threshold=self.cfg.text_threshold,
            target_sizes=[(h, w)] * n,
        )
        for i, res in enumerate(results):
            boxes = res["boxes"]
            if boxes.numel() == 0:
                continue
            sam_in = self.seg_processor(images=imgs[i], input_boxes=[boxes.cpu().tolist()], return_tensors="pt").to(self.device)
            pred = self.segmenter(**sam_in, multimask_output=False).pred_masks  # [1,m,1,h',w']
            masks = self.seg_processor.post_process_masks(
                pred.cpu(), sam_in["original_sizes"].cpu(), sam_in["reshaped_input_sizes"].cpu()
            )[0]  # [m,1,h,w] bool
            out[i, 0] = masks.bool().any(0).reshape(h, w)
        return out


@register_masker("none")
def _none(cfg: DistillConfig, device: torch.device) -> Masker:
    return Masker()


@register_masker("builtin")
def _builtin(cfg: DistillConfig, device: torch.device) -> Masker:
    return BuiltinMasker(cfg)


@register_masker("grounded-sam")
def _grounded_sam(cfg: DistillConfig, device: torch.device) -> Masker:
    from dap_model.compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from transformers import AutoProcessor, GroundingDinoForObjectDetection, SamModel, SamProcessor

    try:
        det_proc = AutoProcessor.from_pretrained(cfg.detector_model)
        det = GroundingDinoForObjectDetection.from_pretrained(cfg.detector_model)
        seg_proc = SamProcessor.from_pretrained(cfg.segmenter_model)
        seg = SamModel.from_pretrained(cfg.segmenter_model)
    except OSError as err:
        raise InputError(f"grounded-sam ({cfg.detector_model}, {cfg.segmenter_model}): cannot load ({err})") from None
    return GroundedSamMasker(cfg, det, det_proc, seg, seg_proc, device)


def build_masker(cfg: DistillConfig, device: torch.device | str = "cpu") -> Masker:
    if cfg.mask not in _REGISTRY:
        raise ConfigError(f"distill.mask={cfg.mask!r}: unknown; available: {', '.join(available_maskers())}")
    return _REGISTRY[cfg.mask](cfg, torch.device(device))


__all__ = ["BuiltinMasker", "GroundedSamMasker", "Masker", "available_maskers", "build_masker",
           "register_masker", "sky_mask"]
