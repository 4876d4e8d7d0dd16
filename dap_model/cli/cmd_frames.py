"""`dap frames SOURCE... --out DIR [--fps F]`: the web-video path for given videos.

Same code and rows as the `web_frames` asset (`collect_frames`): DIR/frames.parquet has the
`web_frames` columns, `shard` being the accepted frame's PNG path relative to DIR; sources that
cannot be read are listed in DIR/failures.json."""

from __future__ import annotations

import argparse
import json
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
    from dap_model.video.frames import collect_frames, records_frame
    from dap_model.video.manifest import video_id

    cfg = config_from_args(args)
    if args.fps is not None:
        if not args.fps > 0:
            raise ConfigError(f"--fps must be > 0, got {args.fps}")
        cfg.video.sample_every_s = 1.0 / args.fps
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    v = cfg.video
    tables, failures = [], []
    for source in args.sources:
        url = source if re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://", source) else Path(source).resolve().as_uri()
        vid = video_id(url)
        try:
            if "://" not in source:
                path = Path(source)
            else:
                res = download_video(
                    url, vid, out / ".downloads", max_bytes=int(v.max_download_mb * 2**20),
                    timeout_s=v.download_timeout_s, retries=v.download_retries, backoff_s=v.retry_backoff_s,
                    s3_endpoint_url=v.s3_endpoint_url or cfg.storage.endpoint_url,
                )
                path = res.path

            def sink(key, rgb, rec, vid=vid) -> str:
                rel = f"{vid}/{key}.png"
                with atomic_path(out / rel) as tmp:
                    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                    tmp.write_bytes(buf.tobytes())
                return rel

            df, _ = collect_frames(path, v, vid, source, sink)
            tables.append(df)
            print(f"{source}: {len(df)} sampled, {int(df['accepted'].sum())} accepted")
        except DapError as err:
            print(f"dap frames: {source}: {err}", file=sys.stderr)
            failures.append({"source": source, "video_id": vid, "error": str(err)})
    df = pd.concat(tables, ignore_index=True) if tables else records_frame([])
    with atomic_path(out / "frames.parquet") as tmp:
        df.to_parquet(tmp, index=False)
    with atomic_path(out / "failures.json") as tmp:
        tmp.write_text(json.dumps(failures, indent=1) + "\n")
    write_resolved_config(cfg, out)
    print(f"{out / 'frames.parquet'}: {len(df)} rows, {int(df['accepted'].sum())} accepted")
    if not tables:
        print("dap frames: error: no source could be read", file=sys.stderr)
        return 1
    return 0
