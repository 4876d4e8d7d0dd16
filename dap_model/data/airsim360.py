"""The AirSim360 / DAP-Test layout: `<root>/<sequence>/panorama_<i>.png` (RGB) +
`erp_distance_<i>.npy` (float32 Euclidean ray distance, metres, up to 1000), optionally
`<root>/<sequence>/meta.json` (`{"domain": "indoor"|"outdoor", ...}`).

Reads from any `DataStore` (a local folder or an S3 prefix); every pair is validated and a bad
one raises `InputError` naming the file and the problem."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

import cv2
import numpy as np

from dap_model.data.shards import decode_png
from dap_model.errors import InputError, StorageError
from dap_model.storage import DataStore, LocalStore, S3Store, parse_s3_uri

PANORAMA_RE = re.compile(r"^panorama_(\d+)\.png$")
DEPTH_RE = re.compile(r"^erp_distance_(\d+)\.npy$")
META_NAME = "meta.json"


def panorama_name(i: int) -> str:
    return f"panorama_{i}.png"


def depth_name(i: int) -> str:
    return f"erp_distance_{i}.npy"


@dataclass(frozen=True)
class PairRef:
    sequence: str  # folder relative to the source root (posix)
    frame: int
    rgb_key: str | None  # store keys; None = missing
    depth_key: str | None

    @property
    def name(self) -> str:
        return f"{self.sequence}/{self.frame}"


def scan(keys: Iterable[str], root: str = "") -> tuple[list[PairRef], dict[str, str], list[tuple[str, str]]]:
    """Store keys → (pairs sorted by sequence and frame, meta.json key per sequence,
    [(key, reason)] for layout problems such as files outside a sequence folder)."""
    root = root.strip("/")
    found: dict[tuple[str, int], dict[str, str]] = {}
    metas: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    for key in keys:
        rel = key[len(root) + 1:] if root and key.startswith(root + "/") else key
        p = PurePosixPath(rel)
        m_rgb, m_depth = PANORAMA_RE.match(p.name), DEPTH_RE.match(p.name)
        seq = p.parent.as_posix()
        if p.name == META_NAME and seq != ".":
            metas[seq] = key
            continue
        if not (m_rgb or m_depth):
            continue
        if seq == ".":
            problems.append((key, "not inside a sequence folder"))
            continue
        kind = "rgb" if m_rgb else "depth"
        frame = int((m_rgb or m_depth).group(1))
        slot = found.setdefault((seq, frame), {})
        if kind in slot:
            problems.append((key, f"duplicate frame {frame} in {seq} (also {slot[kind]})"))
            continue
        slot[kind] = key
    pairs = [PairRef(s, f, v.get("rgb"), v.get("depth")) for (s, f), v in sorted(found.items())]
    return pairs, metas, problems


def load_depth(data: bytes, name: str) -> np.ndarray:
    """`.npy` bytes → float32 [H,W] (a trailing singleton channel is dropped)."""
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as err:  # ValueError, EOFError, OSError, UnpicklingError
        raise InputError(f"{name}: not a readable .npy array ({type(err).__name__}: {err})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise InputError(f"{name}: depth must be a numeric array, got dtype {getattr(arr, 'dtype', type(arr))}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise InputError(f"{name}: depth must be [H,W], got shape {list(arr.shape)}")
    return arr.astype(np.float32)


def validate_pair(rgb: np.ndarray, depth: np.ndarray, name: str, max_depth_m: float = 1000.0,
                  blank_std: float = 1.0, min_valid_fraction: float = 0.0) -> None:
    """Raise InputError naming `name` unless the pair is usable (DAP's AirSim360 conventions)."""
    h, w = rgb.shape[:2]
    if w != 2 * h:
        raise InputError(f"{name}: panorama is {w}x{h}, not 2:1 equirectangular")
    if depth.shape != (h, w):
        raise InputError(f"{name}: depth shape {list(depth.shape)} does not match the panorama's {[h, w]}")
    bad = ~np.isfinite(depth)
    if bad.any():
        raise InputError(f"{name}: {int(bad.sum())} non-finite depth values (NaN/inf)")
    lo, hi = float(depth.min()), float(depth.max())
    if lo < 0 or hi > max_depth_m:
        raise InputError(f"{name}: depth range [{lo:.3g}, {hi:.3g}] m is outside [0, {max_depth_m:g}] m")
    std = float(rgb.reshape(-1, 3).std(0).max())
    if std < blank_std:
        raise InputError(f"{name}: blank panorama (pixel std {std:.2f} < {blank_std:g})")
    valid = float((depth > 0).mean())
    if valid < min_valid_fraction:
        raise InputError(f"{name}: only {valid:.1%} of the depth is valid (< {min_valid_fraction:.1%})")


def read_pair(store: DataStore, ref: PairRef, max_depth_m: float = 1000.0, blank_std: float = 1.0,
              min_valid_fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Load and validate one pair → (rgb uint8 [H,W,3], depth float32 [H,W] metres)."""
    if ref.rgb_key is None:
        raise InputError(f"{store.uri(ref.depth_key)}: partner {panorama_name(ref.frame)} is missing")
    if ref.depth_key is None:
        raise InputError(f"{store.uri(ref.rgb_key)}: partner {depth_name(ref.frame)} is missing")
    rgb_uri = store.uri(ref.rgb_key)
    rgb = decode_png(store.get_bytes(ref.rgb_key), rgb_uri)
    depth = load_depth(store.get_bytes(ref.depth_key), store.uri(ref.depth_key))
    validate_pair(rgb, depth, rgb_uri, max_depth_m, blank_std, min_valid_fraction)
    return rgb, depth


def read_meta(store: DataStore, key: str) -> dict:
    try:
        meta = json.loads(store.get_bytes(key))
    except (ValueError, UnicodeDecodeError) as err:
        raise InputError(f"{store.uri(key)}: not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{store.uri(key)}: expected a JSON object")
    return meta


def open_source(source: str, endpoint_url: str = "", region: str = "us-east-1") -> tuple[DataStore, str]:
    """`s3://bucket/prefix` or a local folder → (store, root prefix inside it)."""
    if source.startswith("s3://"):
        bucket, prefix = parse_s3_uri(source)
        return S3Store(bucket=bucket, prefix=prefix.strip("/"), endpoint_url=endpoint_url, region=region), ""
    path = Path(source).expanduser()
    if not path.is_dir():
        raise InputError(f"AirSim360 source {source!r}: no such folder")
    return LocalStore(path), ""


def list_keys(store: DataStore, root: str) -> list[str]:
    try:
        return store.list(root)
    except StorageError:
        raise
    except Exception as err:
        raise StorageError(f"{store.uri(root or '.')}: cannot list ({err})") from None


def iter_airsim360(source: str | Path | DataStore, root: str = "", max_depth_m: float = 1000.0,
                   ) -> Iterator[tuple[PairRef, np.ndarray, np.ndarray]]:
    """Every valid pair of a layout (a folder, an s3:// URI or a store + root), in order.

    Invalid pairs raise InputError; use `scan` + `read_pair` to skip them instead."""
    store = source if not isinstance(source, (str, Path)) else open_source(str(source))[0]
    pairs, _, _ = scan(list_keys(store, root), root)
    for ref in pairs:
        rgb, depth = read_pair(store, ref, max_depth_m)
        yield ref, rgb, depth


def resize_rgb(rgb: np.ndarray, height: int) -> np.ndarray:
    """uint8 [H,W,3] → [height, 2·height, 3]: area filter down, bilinear up."""
    h = rgb.shape[0]
    if h == height:
        return rgb
    interp = cv2.INTER_AREA if height < h else cv2.INTER_LINEAR
    return cv2.resize(rgb, (2 * height, height), interpolation=interp)


def resize_depth(depth: np.ndarray, height: int, method: str = "edge_aware") -> np.ndarray:
    """float32 [H,W] → [height, 2·height] without blending across depth edges.

    nearest: the source pixel at each output centre. edge_aware (downsampling): each output
    pixel covers an f×f block; it takes the valid source depth closest to the block's valid
    median (an actually measured value, never an average of two surfaces), or 0 when fewer
    than half of the block is valid."""
    h, w = depth.shape
    if h == height:
        return depth.astype(np.float32)
    if method == "nearest" or height > h:
        return cv2.resize(depth, (2 * height, height), interpolation=cv2.INTER_NEAREST_EXACT)
    if method != "edge_aware":
        raise InputError(f"depth resize method {method!r}: expected nearest or edge_aware")
    f = h // height
    if h != f * height or w != 2 * f * height:
        depth = cv2.resize(depth, (2 * f * height, f * height), interpolation=cv2.INTER_NEAREST_EXACT)
    blocks = depth.reshape(height, f, 2 * height, f).transpose(0, 2, 1, 3).reshape(height, 2 * height, f * f)
    valid = np.isfinite(blocks) & (blocks > 0)  # [h,w,f*f]
    masked = np.where(valid, blocks, np.nan)
    count = valid.sum(-1)
    masked[count == 0] = 0.0  # no all-NaN blocks (their output is 0 below anyway)
    med = np.nanmedian(masked, axis=-1)  # [h,w]
    dist = np.where(valid, np.abs(blocks - med[..., None]), np.inf)
    pick = np.take_along_axis(blocks, dist.argmin(-1)[..., None], -1)[..., 0]
    return np.where(2 * count >= f * f, pick, 0.0).astype(np.float32)
