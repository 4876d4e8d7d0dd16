"""`dap frames SOURCE... --out DIR [--fps F]`: the web-video path for given videos."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from dap_model.cli import add_config_arguments, config_from_args

NAME = "frames"
HELP = "extract validated ERP frames from panoramic videos (paths or URLs) into DIR + DIR/frames.parquet"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="video file, file://, http(s):// or s3:// URL")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--fps", type=float, default=None, help="frames sampled per second (default: 1 / video.sample_every_s)")
    add_config_arguments(p)


def run(args: argparse.Namespace) -> int:
    import cv2
    import pandas as pd

    from dap_model.config import write_resolved_config
    from dap_model.errors import ConfigError, DapError
    from dap_model.io import atomic_path
    from dap_model.video.download import download_video
    from dap_model.video.frames import check_complete, extract_frames
    from dap_model.video.manifest import video_id

    cfg = config_from_args(args)
    if args.fps is not None:
        if not args.fps > 0:
            raise ConfigError(f"--fps must be > 0, got {args.fps}")
        cfg.video.sample_every_s = 1.0 / args.fps
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    v = cfg.video
    rows, readable = [], 0
    for source in args.sources:
        url = source if re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://", source) else Path(source).resolve().as_uri()
        vid = video_id(url)
        try:
            if url.startswith("file://"):
                local = Path(source) if "://" not in source else None
                path = local if local is not None else None
            else:
                path = None
            if path is None:
                res = download_video(
                    url, vid, out / ".downloads", max_bytes=int(v.max_download_mb * 2**20),
                    timeout_s=v.download_timeout_s, retries=v.download_retries, backoff_s=v.retry_backoff_s,
                    s3_endpoint_url=v.s3_endpoint_url or cfg.storage.endpoint_url,
                )
                path = res.path
            frames, info = extract_frames(path, v, source)
            n = 0
            for rec, rgb in frames:
                n += 1
                rel = None
                if rgb is not None:
                    rel = f"{vid}/{vid}_{rec.frame_index:06d}.png"
                    with atomic_path(out / rel) as tmp:
                        ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                        tmp.write_bytes(buf.tobytes())
                rows.append({"source": source, "video_id": vid, "frame_index": rec.frame_index, "time_s": rec.time_s,
                             "layout": rec.layout, "accepted": rec.accepted, "reason": rec.reason,
                             "detail": rec.detail, "tilt_deg": rec.tilt_deg, "path": rel})
            check_complete(info[0], source)
            readable += 1
            print(f"{source}: {n} sampled, {sum(r['accepted'] for r in rows if r['source'] == source)} accepted")
        except DapError as err:
            print(f"dap frames: {source}: {err}", file=sys.stderr)
            rows.append({"source": source, "video_id": vid, "frame_index": -1, "time_s": float("nan"),
                         "layout": "", "accepted": False, "reason": "unreadable", "detail": str(err),
                         "tilt_deg": float("nan"), "path": None})
    df = pd.DataFrame(rows, columns=["source", "video_id", "frame_index", "time_s", "layout", "accepted", "reason",
                                     "detail", "tilt_deg", "path"])
    with atomic_path(out / "frames.parquet") as tmp:
        df.to_parquet(tmp, index=False)
    write_resolved_config(cfg, out)
    print(f"{out / 'frames.parquet'}: {len(df)} rows, {int(df['accepted'].sum())} accepted")
    if readable == 0:
        print("dap frames: error: no source could be read", file=sys.stderr)
        return 1
    return 0
