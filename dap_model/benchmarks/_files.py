"""Benchmark roots (a local folder or `s3://bucket/prefix`) and decoders that name the file.

Every decoder returns depth as float32 metres with invalid pixels set to 0
(docs/architecture.md#conventions)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from dap_model.errors import InputError
from dap_model.storage import DataStore, LocalStore, S3Store, parse_s3_uri


def open_root(root: str, *, endpoint_url: str = "", region: str = "us-east-1") -> DataStore:
    """A benchmark root as a read-only `DataStore`: a local folder or `s3://bucket/prefix`.

    S3 credentials come from the environment (boto3); `endpoint_url` selects MinIO/moto."""
    root = str(root)
    if root.startswith("s3://"):
        bucket, prefix = parse_s3_uri(root)
        return S3Store(bucket=bucket, prefix=prefix.strip("/"), endpoint_url=endpoint_url, region=region)
    path = Path(root).expanduser()
    if not path.exists():
        raise InputError(f"{path}: benchmark root does not exist")
    if not path.is_dir():
        raise InputError(f"{path}: benchmark root is not a folder")
    return LocalStore(path)


def root_label(store: DataStore) -> str:
    if isinstance(store, LocalStore):
        return str(store.root)
    return store.uri(".")[:-2] if isinstance(store, S3Store) else repr(store)


def name_of(store: DataStore, key: str) -> str:
    """What an error message calls `key`: a local path or an s3:// URI."""
    return str(store.path(key)) if isinstance(store, LocalStore) else store.uri(key)


def read_bytes(store: DataStore, key: str) -> bytes:
    try:
        return store.get_bytes(key)
    except OSError as err:
        raise InputError(f"{name_of(store, key)}: unreadable ({err})") from None


def decode_png_u16(data: bytes, name: str, scale: float, invalid: tuple[int, ...] = (0,)) -> np.ndarray:
    """uint16 single-channel PNG → metres = value / scale; values in `invalid` → 0."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{name}: not a decodable PNG")
    if img.dtype != np.uint16 or img.ndim != 2:
        raise InputError(f"{name}: expected a single-channel 16-bit depth PNG, got {img.dtype} {list(img.shape)}")
    bad = np.isin(img, np.asarray(invalid, dtype=np.uint16))
    depth = img.astype(np.float32) / np.float32(scale)
    depth[bad] = 0.0
    return depth


def clean_depth(arr: np.ndarray, name: str) -> np.ndarray:
    """A depth array [H,W] (or [H,W,1] / [1,H,W]) in metres → float32 with invalid (≤0, NaN, Inf) = 0."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[2]):
        arr = arr.reshape(arr.shape[:2] if arr.shape[2] == 1 else arr.shape[1:])
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(f"{name}: expected a depth map [H,W], got shape {list(arr.shape)}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"{name}: expected a numeric depth map, got {arr.dtype}")
    depth = arr.astype(np.float32)
    depth[~np.isfinite(depth) | (depth <= 0)] = 0.0
    return depth


def decode_npy(data: bytes, name: str) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"{name}: not a readable .npy array ({err})") from None
    return clean_depth(arr, name)


def decode_npz(data: bytes, name: str) -> np.ndarray:
    """`.npz` with one array, or with `arr_0` / `depth` among several."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            keys = list(z.keys())
            key = next((k for k in ("depth", "arr_0") if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise InputError(f"{name}: .npz holds {keys}; expected one array, 'arr_0' or 'depth'")
            arr = z[key]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise InputError(f"{name}: not a readable .npz archive ({err})") from None
    return clean_depth(arr, name)


def read_exr_depth(path: Path, name: str) -> np.ndarray:
    """Single-channel (Y, Z, R, depth or the only) float EXR → metres."""
    import OpenEXR

    try:
        with OpenEXR.File(str(path)) as f:
            channels = {k: np.asarray(v.pixels) for k, v in f.channels().items()}
    except Exception as err:  # OpenEXR raises RuntimeError/ValueError with the reason
        raise InputError(f"{name}: unreadable EXR ({err})") from None
    key = next((k for k in ("Y", "Z", "depth", "R", "RGB") if k in channels), None)
    if key is None:
        if len(channels) != 1:
            raise InputError(f"{name}: EXR channels {sorted(channels)}; expected one depth channel")
        key = next(iter(channels))
    arr = channels[key]
    if arr.ndim == 3:
        arr = arr[..., 0]
    return clean_depth(arr, name)


def posix_parent(key: str) -> str:
    parent = PurePosixPath(key).parent.as_posix()
    return "" if parent == "." else parent
