"""Depth as pictures: RGB | ground truth | prediction panels (colourised depth:
`dap_model.inference.colourise`) and the report's four-panel sample figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dap_model.inference import colourise
from dap_model.io import atomic_path


def _gt_vmax(gt: np.ndarray, cap_m: float, vmax: float) -> float:
    """`vmax` when set, else the 99th percentile of valid ground truth (0 < gt ≤ cap_m), else 1 m."""
    if vmax > 0:
        return vmax
    valid = np.isfinite(gt) & (gt > 0) & (gt <= cap_m)
    return float(np.percentile(gt[valid], 99)) if valid.any() else 1.0


def panel(rgb: np.ndarray, gt: np.ndarray | None, pred: np.ndarray, cap_m: float,
          cmap: str = "Spectral", vmax: float = 0.0) -> np.ndarray:
    """RGB | GT | pred stacked vertically at the prediction's size, [3H,W,3] uint8 (one colour
    scale for both depths: `vmax`, else the ground truth's 99th percentile)."""
    import cv2

    h, w = pred.shape
    rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA) if rgb.shape[:2] != (h, w) else rgb
    top = _gt_vmax(gt, cap_m, vmax) if gt is not None else vmax
    rows = [rgb]
    if gt is not None:
        if gt.shape != (h, w):
            gt = cv2.resize(gt, (w, h), interpolation=cv2.INTER_NEAREST)
        rows.append(colourise(gt, cmap, top))
    rows.append(colourise(pred, cmap, top))
    return np.concatenate(rows, axis=0)


def sample_figure(rgb: np.ndarray, gt: np.ndarray, pred: np.ndarray, path: Path, title: str, *,
                  cap_m: float, cmap: str = "Spectral", error_cmap: str = "magma", vmax: float = 0.0) -> Path:
    """RGB | ground truth | prediction | absolute relative error, one row (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    valid = np.isfinite(gt) & (gt > 0) & (gt <= cap_m)
    vmax = _gt_vmax(gt, cap_m, vmax)
    err = np.zeros_like(gt, dtype=np.float32)
    err[valid] = np.abs(pred[valid] - gt[valid]) / gt[valid]
    fig, axes = plt.subplots(1, 4, figsize=(16, 2.6))
    panels = [
        (rgb, "RGB"),
        (colourise(np.where(valid, gt, 0), cmap, vmax), f"ground truth (0–{vmax:.1f} m)"),
        (colourise(pred, cmap, vmax), "prediction"),
    ]
    for ax, (img, t) in zip(axes[:3], panels):
        ax.imshow(img)
        ax.set_title(t, fontsize=9)
    im = axes[3].imshow(np.ma.masked_where(~valid, err), cmap=error_cmap, vmin=0, vmax=0.5)
    axes[3].set_title("|pred − gt| / gt (masked: invalid gt)", fontsize=9)
    fig.colorbar(im, ax=axes[3], fraction=0.025)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return save_png(fig, path, dpi=90)


def save_png(fig, path: str | Path, dpi: int) -> Path:
    """Lay out, write atomically as PNG and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return path
