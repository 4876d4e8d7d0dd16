"""`dap tag IMAGE... [--backend builtin|qwen2-vl]`: indoor/outdoor tags as JSON lines."""

from __future__ import annotations

import argparse
import json
import sys

from dap_model.cli import add_config_arguments, config_from_args

NAME = "tag"
HELP = "tag panoramas as indoor or outdoor (JSON lines: path, scene, confidence)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (equirectangular panoramas)")
    p.add_argument("--backend", default=None, help="tagger backend: builtin, qwen2-vl (default: tagging.backend)")
    add_config_arguments(p)


def run(args: argparse.Namespace) -> int:
    from dap_model.errors import InputError
    from dap_model.tagging import get_tagger, read_image

    cfg = config_from_args(args)
    tagger = get_tagger(cfg.tagging, backend=args.backend)
    bs = cfg.tagging.batch_size
    n_read = 0
    for i in range(0, len(args.images), bs):
        paths = args.images[i : i + bs]
        loaded = [read_image(p) for p in paths]
        n_read += sum(img is not None for img, _ in loaded)
        results = tagger.tag([img for img, _ in loaded])
        for path, (img, why), res in zip(paths, loaded, results):
            row = {"path": path, "scene": res.scene, "confidence": round(float(res.confidence), 6)}
            if not res.ok:
                row.update(ok=False, reason=why or res.reason)
            print(json.dumps(row), flush=True)
    if n_read == 0:
        raise InputError(f"none of the {len(args.images)} image(s) could be read")
    return 0
