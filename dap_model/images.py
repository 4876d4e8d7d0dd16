"""Reading image files: one decoder for every place that takes a user's PNG/JPEG (benchmarks,
`dap predict`, `dap tag`, the real pool). EXIF orientation is ignored: an equirectangular
panorama's rows are latitudes, and a rotation tag on one is a camera app's guess."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dap_model.errors import InputError


def decode_rgb(data: bytes, name: str) -> np.ndarray:
    """PNG/JPEG bytes → uint8 RGB [H,W,3] (16-bit images are scaled to 8 bits, grey and BGRA → RGB);
    `name` is what an error calls the input."""
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    except cv2.error:  # some truncated files make the codec raise instead of returning None
        img = None
    if img is None:
        raise InputError(f"{name}: not a decodable image" + ("" if data else " (empty file)"))
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    if img.dtype != np.uint8:
        raise InputError(f"{name}: expected an 8-bit colour image, got {img.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file → uint8 RGB [H,W,3]; InputError naming the file when it is missing,
    unreadable or not an image."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    try:
        data = p.read_bytes()
    except OSError as err:
        raise InputError(f"{p}: unreadable ({err.strerror or err})") from None
    return decode_rgb(data, str(p))


def try_read_rgb(path: str | Path) -> tuple[np.ndarray | None, str]:
    """(RGB uint8 [H,W,3], "") or (None, the problem without the file name) — for readers that
    record a bad file and go on (`dap tag`, the real pool)."""
    try:
        return read_rgb(path), ""
    except InputError as err:
        return None, str(err).removeprefix(f"{Path(path)}: ")
