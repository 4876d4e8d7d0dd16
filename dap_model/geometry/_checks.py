"""Input validation shared by the geometry functions; every message names the function and argument."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dap_model.errors import InputError

MODES = ("bilinear", "nearest")


class GeometryInputError(InputError):
    """A tensor or argument that a geometry function cannot use (a ValueError)."""


def check_tensor(fn: str, name: str, t: Any, rank: int | None = None, shape_hint: str = "") -> Tensor:
    if not isinstance(t, Tensor):
        raise GeometryInputError(f"{fn}: `{name}` must be a torch.Tensor, got {type(t).__name__}")
    if rank is not None and t.dim() != rank:
        hint = f" {shape_hint}" if shape_hint else ""
        raise GeometryInputError(
            f"{fn}: `{name}` must have rank {rank}{hint}, got rank {t.dim()} with shape {tuple(t.shape)}"
        )
    if not t.is_floating_point():
        raise GeometryInputError(f"{fn}: `{name}` must be a floating-point tensor, got {t.dtype}")
    return t


def check_erp_size(fn: str, name: str, h: int, w: int) -> None:
    if h < 2 or w != 2 * h:
        raise GeometryInputError(f"{fn}: `{name}` must be ERP with W = 2H, got {h}×{w}")


def dense_flat(t: Tensor) -> Tensor | None:
    """The elements of `t` as a 1-D view in memory order when `t` covers its memory densely in any
    dimension order (contiguous, channels-last, an HWC array seen as [1,C,H,W]); else None."""
    p = t.permute(sorted(range(t.dim()), key=lambda d: (-t.stride(d), d)))
    return p.view(-1) if p.is_contiguous() else None


def check_finite(fn: str, name: str, t: Tensor) -> None:
    # one reduction first (cheap, no bool buffer; in memory order, as reductions over a permuted
    # layout are several times slower); the exact test only when it looks bad
    flat = dense_flat(t)
    if not bool(torch.isfinite((t if flat is None else flat).sum())) and not bool(torch.isfinite(t).all()):
        raise GeometryInputError(f"{fn}: `{name}` contains NaN or Inf values (not allowed here)")


def check_erp(fn: str, name: str, t: Any, *, allow_nan: bool = False, channels: int | None = None) -> Tensor:
    """`t` must be a float [B,C,H,W] ERP tensor with W = 2H (and finite unless `allow_nan`)."""
    check_tensor(fn, name, t, rank=4, shape_hint="[B,C,H,W]")
    if channels is not None and t.shape[1] != channels:
        raise GeometryInputError(
            f"{fn}: `{name}` must have {channels} channel(s) ([B,{channels},H,W]), got shape {tuple(t.shape)}"
        )
    check_erp_size(fn, name, t.shape[-2], t.shape[-1])
    if not allow_nan:
        check_finite(fn, name, t)
    return t


def check_mode(fn: str, mode: Any) -> str:
    if mode not in MODES:
        raise GeometryInputError(f"{fn}: `mode` must be one of {MODES}, got {mode!r}")
    return mode


def check_positive_int(fn: str, name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise GeometryInputError(f"{fn}: `{name}` must be a positive int, got {v!r}")
    return v
