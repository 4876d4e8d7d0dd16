"""The video manifest: a CSV or Parquet table of sources (`url`, optional `licence`,
`attribution`, `title`), validated with pandera; and the safe id of each video.

A video id is derived from the URL only (a slug of its last path part plus a short hash), so it
is unique per source and never carries a title or any path syntax: it is safe as a store-key
part, a shard sample key and a Dagster partition key. Scheme checks happen per video (in the
download), so one bad row fails only its own partition."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pandas as pd
import pandera.pandas as pa

from dap_model.errors import InputError
from dap_model.schema import validate_table

ALLOWED_SCHEMES = ("http", "https", "s3", "file")
OPTIONAL_COLUMNS = ("licence", "attribution", "title")
_ALIASES = {"license": "licence", "source": "url", "uri": "url"}
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9\-]{0,60}$")

MANIFEST_SCHEMA = pa.DataFrameSchema(
    {
        "url": pa.Column(str, pa.Check.str_length(min_value=1, max_value=4096), nullable=False, unique=True),
        "video_id": pa.Column(str, pa.Check.str_matches(_ID_RE.pattern), nullable=False, unique=True),
        "licence": pa.Column(str, nullable=True),
        "attribution": pa.Column(str, nullable=True),
        "title": pa.Column(str, nullable=True),
    },
    strict=True,
    ordered=False,
    name="web video manifest",
)


def video_id(url: str) -> str:
    """`https://x.org/v/My Room (1).mp4` → `my-room-1-3fa2c4d1e0`: slug of the last path part
    (max 40 chars) + first 10 hex digits of sha256(url)."""
    parts = urlsplit(url.strip())
    tail = unquote(parts.path.rstrip("/").rsplit("/", 1)[-1]) or parts.netloc or "video"
    stem = tail.rsplit(".", 1)[0] if "." in tail[1:] else tail
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:40].strip("-") or "video"
    return f"{slug}-{hashlib.sha256(url.strip().encode()).hexdigest()[:10]}"


def check_source_url(url: str) -> str:
    """Return the scheme of an allowed source, or raise InputError naming the URL."""
    if not isinstance(url, str) or not url.strip():
        raise InputError(f"video source {url!r}: empty")
    if any(ord(c) < 32 or c.isspace() for c in url.strip()):
        raise InputError(f"video source {url!r}: contains whitespace or control characters")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise InputError(
            f"video source {url!r}: scheme {scheme or '(none)'!r} is not allowed (allowed: {', '.join(ALLOWED_SCHEMES)})"
        )
    if scheme in ("http", "https", "s3") and not parts.netloc:
        raise InputError(f"video source {url!r}: no host/bucket")
    if scheme == "s3" and not parts.path.strip("/"):
        raise InputError(f"video source {url!r}: no object key")
    if scheme == "file" and (parts.netloc not in ("", "localhost") or not parts.path):
        raise InputError(f"video source {url!r}: expected file:///absolute/path")
    return scheme


def check_title(title) -> str:
    """A title is metadata only; one that looks like a path or carries control characters marks
    a row as suspicious and is refused, naming it."""
    if title is None or (isinstance(title, float) and pd.isna(title)):
        return ""
    title = str(title)
    if any(ord(c) < 32 for c in title) or "/" in title or "\\" in title or ".." in title or len(title) > 500:
        raise InputError(f"manifest title {title!r}: path separators, '..' or control characters are not allowed")
    return title


def _read_table(data: bytes, name: str) -> pd.DataFrame:
    try:
        if name.lower().endswith(".parquet") or data[:4] == b"PAR1":
            return pd.read_parquet(io.BytesIO(data))
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_values=[""], skipinitialspace=True)
    except Exception as err:
        raise InputError(f"video manifest {name}: not a readable CSV/Parquet table ({type(err).__name__}: {err})") from None


def read_manifest_bytes(data: bytes, name: str, only_urls=None) -> pd.DataFrame:
    """Parse and validate a manifest; adds `video_id`. Raises InputError naming the manifest.
    `only_urls`: keep just the rows with these URLs before ids are derived and rows validated
    (one bucket's videos out of a manifest of 250,000)."""
    df = _read_table(data, name)
    df = df.rename(columns={c: _ALIASES.get(str(c).strip().lower(), str(c).strip().lower()) for c in df.columns})
    if "url" not in df.columns:
        raise InputError(f"video manifest {name}: no 'url' column (columns: {', '.join(map(str, df.columns))})")
    extra = [c for c in df.columns if c not in ("url", *OPTIONAL_COLUMNS)]
    if extra:
        raise InputError(f"video manifest {name}: unknown column(s) {', '.join(extra)}; allowed: url, {', '.join(OPTIONAL_COLUMNS)}")
    for col in OPTIONAL_COLUMNS:
        if col not in df.columns:
            df[col] = None
    df = df[["url", *OPTIONAL_COLUMNS]].copy()
    df = df[df["url"].notna() & (df["url"].astype(str).str.strip() != "")]
    if only_urls is not None:
        df = df[df["url"].astype(str).str.strip().isin(set(only_urls))]
    for col in df.columns:
        df[col] = df[col].map(lambda v: None if v is None or (isinstance(v, float) and pd.isna(v)) else str(v).strip())
    df["video_id"] = df["url"].map(video_id)
    return validate_table(MANIFEST_SCHEMA, df.reset_index(drop=True), f"video manifest {name}")


def read_manifest(source: str, s3_endpoint_url: str = "", only_urls=None) -> pd.DataFrame:
    """Read a manifest from a local path, `file://` URL or `s3://bucket/key` (`only_urls`: see
    `read_manifest_bytes`)."""
    if source.startswith("s3://"):
        import boto3

        from dap_model.storage import parse_s3_uri

        bucket, key = parse_s3_uri(source)
        try:
            client = boto3.client("s3", endpoint_url=s3_endpoint_url or None)
            data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as err:
            raise InputError(f"video manifest {source}: cannot be read ({type(err).__name__}: {err})") from None
        return read_manifest_bytes(data, source, only_urls)
    path = Path(unquote(urlsplit(source).path)) if source.startswith("file://") else Path(source)
    if not path.is_file():
        raise InputError(f"video manifest {source}: no such file")
    return read_manifest_bytes(path.read_bytes(), str(path), only_urls)


def manifest_fingerprint(source: str, s3_endpoint_url: str = "") -> str | None:
    """A cheap change marker for the sensor (mtime+size or ETag); None when absent."""
    if source.startswith("s3://"):
        import boto3

        from dap_model.storage import parse_s3_uri

        bucket, key = parse_s3_uri(source)
        try:
            head = boto3.client("s3", endpoint_url=s3_endpoint_url or None).head_object(Bucket=bucket, Key=key)
        except Exception:
            return None
        return f"{head.get('ETag', '')}:{head.get('ContentLength', '')}"
    path = Path(unquote(urlsplit(source).path)) if source.startswith("file://") else Path(source)
    if not path.is_file():
        return None
    st = path.stat()
    return f"{st.st_mtime_ns}:{st.st_size}"
