"""Fetch one video source into a local file: yt-dlp for http(s) pages and direct links, boto3
for s3:// objects, a byte copy for file:// paths.

Every route: only allowed schemes, a size limit, timeouts, retries with exponential backoff for
transient failures only (connection errors, timeouts, 5xx, 429), resumable partial downloads
(yt-dlp's `.part` + `continuedl` for HTTP; byte ranges for S3; an offset copy for files; the
partial file lives in `work_dir`, so a retried run resumes it), sha256 of the result, and an
atomic rename onto `<work_dir>/<video_id>.<ext>`. The file name comes from the video id and an
extension checked against an allowlist, never from the URL's or the page's title."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import cv2

from dap_model.errors import InputError, StorageError
from dap_model.video.manifest import check_source_url

log = logging.getLogger(__name__)

VIDEO_EXTS = ("mp4", "m4v", "mov", "mkv", "webm", "avi")
_CHUNK = 1 << 20


class TransientDownloadError(StorageError):
    """A failure worth retrying (network, timeout, server busy)."""


@dataclass
class DownloadResult:
    video_id: str
    source: str
    path: Path
    ext: str
    sha256: str
    size_bytes: int
    attempts: int
    method: str  # yt-dlp | s3 | file

    def to_json(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _ext_from(name: str, url: str) -> str:
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ext not in VIDEO_EXTS:
        raise InputError(f"video source {url}: extension {ext or '(none)'!r} is not a video container ({', '.join(VIDEO_EXTS)})")
    return ext


def _with_retries(fn, url: str, retries: int, backoff_s: float):
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn(), attempt
        except TransientDownloadError as err:
            if attempt > retries:
                raise TransientDownloadError(f"{err} (gave up after {attempt} attempts)") from None
            delay = backoff_s * 2 ** (attempt - 1)
            log.warning("%s: attempt %d failed (%s); retrying in %.1fs", url, attempt, err, delay)
            time.sleep(delay)


# --- file:// -------------------------------------------------------------------------------------


def _copy_resumable(src: Path, part: Path, size: int) -> None:
    done = part.stat().st_size if part.exists() else 0
    if done > size:
        part.unlink()
        done = 0
    with open(src, "rb") as fi, open(part, "ab") as fo:
        fi.seek(done)
        shutil.copyfileobj(fi, fo, _CHUNK)


def _fetch_file(url: str, part: Path, max_bytes: int) -> str:
    src = Path(unquote(urlsplit(url).path))
    if not src.exists():
        raise InputError(f"video source {url}: no such file")
    if not src.is_file():
        raise InputError(f"video source {url}: not a regular file")
    size = src.stat().st_size
    if size > max_bytes:
        raise InputError(f"video source {url}: {size} bytes is larger than the limit ({max_bytes} bytes)")
    try:
        _copy_resumable(src, part, size)
    except PermissionError as err:
        raise InputError(f"video source {url}: permission denied ({err})") from None
    except OSError as err:
        raise TransientDownloadError(f"video source {url}: {err}") from None
    return _ext_from(src.name, url)


# --- s3:// ---------------------------------------------------------------------------------------


def _fetch_s3(url: str, part: Path, max_bytes: int, endpoint_url: str, timeout_s: float) -> str:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    parts = urlsplit(url)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    ext = _ext_from(key.rsplit("/", 1)[-1], url)
    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url or None,
        config=Config(connect_timeout=timeout_s, read_timeout=timeout_s, retries={"max_attempts": 1}),
    )
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        size = int(head["ContentLength"])
        if size > max_bytes:
            raise InputError(f"video source {url}: {size} bytes is larger than the limit ({max_bytes} bytes)")
        done = part.stat().st_size if part.exists() else 0
        if done > size:
            part.unlink()
            done = 0
        if done < size:
            body = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={done}-")["Body"]
            with open(part, "ab") as fo:
                for block in iter(lambda: body.read(_CHUNK), b""):
                    fo.write(block)
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in ("AccessDenied", "403", "Forbidden") or status == 403:
            raise InputError(f"video source {url}: access denied (S3 {code or status})") from None
        if code in ("NoSuchKey", "NoSuchBucket", "404", "NotFound") or status == 404:
            raise InputError(f"video source {url}: no such S3 object ({code or status})") from None
        if status >= 500 or status in (408, 429) or code in ("SlowDown", "RequestTimeout", "InternalError"):
            raise TransientDownloadError(f"video source {url}: S3 {code} ({status})") from None
        raise InputError(f"video source {url}: S3 error {code} ({status})") from None
    except BotoCoreError as err:
        raise TransientDownloadError(f"video source {url}: {type(err).__name__}: {err}") from None
    return ext


# --- http(s):// via yt-dlp -------------------------------------------------------------------------


class _YdlLogger:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)
        self.errors.append(msg)

    def error(self, msg: str) -> None:
        self.errors.append(msg)


def _http_status(err: BaseException) -> int | None:
    seen = set()
    stack = [err]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        status = getattr(e, "status", None) or getattr(getattr(e, "response", None), "status", None)
        if isinstance(status, int):
            return status
        for attr in ("exc_info", "cause", "__cause__", "__context__", "orig"):
            v = getattr(e, attr, None)
            if isinstance(v, tuple):
                stack.extend(x for x in v if isinstance(x, BaseException))
            elif isinstance(v, BaseException):
                stack.append(v)
    m = re.search(r"HTTP Error (\d{3})", str(err))
    return int(m.group(1)) if m else None


def _fetch_http(url: str, work: Path, video_id: str, max_bytes: int, timeout_s: float, retries: int) -> tuple[Path, str]:
    import yt_dlp

    logger = _YdlLogger()
    opts = {
        "outtmpl": {"default": f"{video_id}.dl.%(ext)s"},
        "paths": {"home": str(work), "temp": str(work)},
        "restrictfilenames": True,
        "windowsfilenames": True,
        "socket_timeout": timeout_s,
        "retries": retries,
        "fragment_retries": retries,
        "extractor_retries": 0,
        "max_filesize": max_bytes,
        "continuedl": True,
        "nopart": False,
        "noplaylist": True,
        "playlist_items": "1",
        "format": "best/bestvideo",
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": logger,
        "overwrites": False,
        "cachedir": False,
        "noresizebuffer": True,
        "color": "no_color",
    }
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(url, download=True)
    except yt_dlp.utils.DownloadError as err:
        msg = re.sub(r"^ERROR:\s*", "", str(err)).strip()
        status = _http_status(err)
        if status is not None and (status >= 500 or status in (408, 429)):
            raise TransientDownloadError(f"video source {url}: HTTP {status}: {msg}") from None
        if status is not None:
            raise InputError(f"video source {url}: HTTP {status}: {msg}") from None
        if re.search(r"Unsupported URL|no video formats|is not a valid URL", msg, re.I):
            raise InputError(f"video source {url}: {msg}") from None
        raise TransientDownloadError(f"video source {url}: {msg}") from None
    if not info:
        raise InputError(f"video source {url}: yt-dlp returned nothing")
    if info.get("_type") == "playlist":
        entries = [e for e in (info.get("entries") or []) if e]
        if not entries:
            raise InputError(f"video source {url}: a page/playlist without videos")
        info = entries[0]
    downloads = info.get("requested_downloads") or []
    path = Path(downloads[0].get("filepath", "")) if downloads else None
    if path is None or not path.is_file():
        if any("max-filesize" in e or "larger than" in e for e in logger.errors):
            raise InputError(f"video source {url}: larger than the limit ({max_bytes} bytes)")
        raise InputError(f"video source {url}: yt-dlp produced no file ({'; '.join(logger.errors) or 'no reason given'})")
    path = path.resolve()
    if path.parent != work.resolve():
        raise InputError(f"video source {url}: yt-dlp wrote outside its folder ({path})")
    return path, _ext_from(path.name, url)


# --- entry point -----------------------------------------------------------------------------------


def download_video(
    url: str,
    video_id: str,
    work_dir: str | Path,
    *,
    max_bytes: int,
    timeout_s: float = 60.0,
    retries: int = 3,
    backoff_s: float = 2.0,
    s3_endpoint_url: str = "",
) -> DownloadResult:
    """Fetch `url` into `<work_dir>/<video_id>.<ext>`; InputError for permanent problems (bad
    scheme, 404, denied, too large, empty), TransientDownloadError once retries are spent."""
    from dap_model.storage import safe_key

    scheme = check_source_url(url)
    safe_key(video_id)
    if not re.fullmatch(r"[a-z0-9][a-z0-9\-]*", video_id):
        raise InputError(f"video id {video_id!r}: only a-z, 0-9 and '-' are allowed")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    part = work / f"{video_id}.part"

    def once() -> tuple[Path, str, str]:
        if scheme == "file":
            return part, _fetch_file(url, part, max_bytes), "file"
        if scheme == "s3":
            return part, _fetch_s3(url, part, max_bytes, s3_endpoint_url, timeout_s), "s3"
        path, ext = _fetch_http(url, work, video_id, max_bytes, timeout_s, retries)
        return path, ext, "yt-dlp"

    (got, ext, method), attempts = _with_retries(once, url, retries, backoff_s)
    size = got.stat().st_size
    if size == 0:
        got.unlink(missing_ok=True)
        raise InputError(f"video source {url}: empty file (0 bytes)")
    if size > max_bytes:
        got.unlink(missing_ok=True)
        raise InputError(f"video source {url}: {size} bytes is larger than the limit ({max_bytes} bytes)")
    final = work / f"{video_id}.{ext}"
    digest = sha256_file(got)
    os.replace(got, final)
    return DownloadResult(video_id, url, final, ext, digest, size, attempts, method)


def probe_video(path: str | Path, name: str | None = None) -> dict:
    """Open with OpenCV and decode the first frame: {width, height, fps, frames}; InputError if
    the file is not a decodable video."""
    name = name or str(path)
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise InputError(f"{name}: not a decodable video (OpenCV/FFmpeg cannot open it)")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise InputError(f"{name}: not a decodable video (no frame could be decoded)")
        return {
            "width": int(frame.shape[1]),
            "height": int(frame.shape[0]),
            "fps": float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
            "frames": int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
        }
    finally:
        cap.release()
