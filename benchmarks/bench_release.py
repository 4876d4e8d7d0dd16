"""Benchmark DAP's released network on CPU: a release-layout state dict of the ViT-L size (and
ViT-S for scale) loads through `load_release` and predicts one 512×1024 panorama.

    python benchmarks/bench_release.py [--threads 2] [--height 512] [--sizes vits,vitl]

Per size: a parent process writes a random-fill `model.pth` in DAP's layout (keys and shapes from
`release_layout` of the architecture the fixture README gives for that size: ViT-L embed 1024,
24 blocks, DPT features 256, projections 256/512/1024/1024, taps 4/11/17/23; the alias blocks
share the backbone's tensors as DAP's module saves them); a fresh subprocess then times
`load_release` (read + checks + conversion) and one `predict` (batch 1, H×2H, no grad), and
reports its peak RSS (`ru_maxrss`: what loading and predicting that size needs). GPU figures are
recorded as unmeasured when CUDA is absent.

Results: benchmarks/results/release.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {  # the README's sizes: embed dim, DPT features, projections
    "vits": (384, 64, [48, 96, 192, 384]),
    "vitb": (768, 128, [96, 192, 384, 768]),
    "vitl": (1024, 256, [256, 512, 1024, 1024]),
}


def write_release(size: str, path: Path) -> int:
    """A random-fill release state dict of `size` in DAP's layout; returns its parameter count."""
    import torch

    from dap_model.config import ModelConfig
    from dap_model.models.dap_release import ALIAS, BACKBONE, SIZES as ARCH, build_release_model, release_layout

    dim, features, channels = SIZES[size]
    name, _, _, _, taps = ARCH[dim]
    cfg = ModelConfig(architecture="dap_release", backbone=name, taps=taps, decoder_features=features,
                      decoder_channels=channels, head_hidden=32, circular_padding=False,
                      vertical_padding="zeros", latitude_encoding="none")
    layout = release_layout(build_release_model(cfg))
    g = torch.Generator().manual_seed(0)
    sd: dict[str, torch.Tensor] = {}
    for key, shape in layout.items():
        if key.startswith(ALIAS):
            sd[key] = sd[BACKBONE + "blocks." + key[len(ALIAS):]]
        elif key.endswith("bias_mask"):
            sd[key] = torch.ones(shape)
            sd[key][dim : 2 * dim] = 0
        elif key.endswith("rope_embed.periods"):
            n = shape[0]
            sd[key] = 100.0 ** (torch.arange(n, dtype=torch.float32) / n)
        elif len(shape) >= 2:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod()))
            sd[key] = torch.randn(shape, generator=g) / fan_in**0.5
        else:
            sd[key] = 1 + 0.1 * torch.randn(shape, generator=g) if key.endswith(("weight", "gamma")) else \
                0.1 * torch.randn(shape, generator=g)
    torch.save(sd, path)
    return sum(v.numel() for k, v in sd.items() if not k.startswith(ALIAS))


def child(path: str, height: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from dap_model.models.dap_release import load_release

    t0 = time.perf_counter()
    model = load_release(path)
    load_s = time.perf_counter() - t0
    x = torch.rand(1, 3, height, 2 * height, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    depth = model.predict(x)  # [1,1,H,2H] metres
    predict_s = time.perf_counter() - t0
    assert depth.shape == (1, 1, height, 2 * height) and torch.isfinite(depth).all()
    return {
        "backbone": model.cfg.backbone,
        "load_s": round(load_s, 2),
        "predict_s": round(predict_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--sizes", default="vits,vitl")
    ap.add_argument("--child", nargs=3, metavar=("PATH", "HEIGHT", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), int(args.child[2]))))
        return

    import torch

    from dap_model.io import atomic_write_text

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            path = Path(tmp) / f"{size}.pth"
            n_params = write_release(size, path)
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
            out = subprocess.run([sys.executable, __file__, "--child", str(path), str(args.height), str(args.threads)],
                                 capture_output=True, text=True, env=env, check=True)
            rows[size] = {"params_m": round(n_params / 1e6, 1), "file_mb": round(path.stat().st_size / 2**20, 1),
                          **json.loads(out.stdout.strip().splitlines()[-1])}
            print(size, rows[size], flush=True)
    res = {
        "what": "DAP release layout, random fill: load_release + one predict, batch 1, fp32, CPU",
        "input": [args.height, 2 * args.height],
        "threads": args.threads,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__},
        "cpu": rows,
        "gpu": "unmeasured (no CUDA device)" if not torch.cuda.is_available() else "not run by this script",
    }
    if "vits" in rows and "vitl" in rows:
        res["vitl_over_vits"] = {k: round(rows["vitl"][k] / rows["vits"][k], 2)
                                 for k in ("params_m", "load_s", "predict_s", "peak_rss_mb")}
    out = ROOT / "benchmarks" / "results" / "release.json"
    atomic_write_text(out, json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
