"""Benchmark dap_model.geometry against py360convert on the CPU.

    python benchmarks/bench_geometry.py [--repeat 15] [--threads 2] [--height 1024] [--face-w 512]

Both libraries get the same 1024×2048 float32 RGB panorama (an HWC array; ours reads it through a
zero-copy channels-last [1,3,H,W] view) and the same number of threads (torch and cv2). Both
sample with cv2.remap over cached maps: py360convert pads the image and remaps one channel at a
time into a [fw, 6·fw] strip with 1/32-px fixed-point maps; ours remaps all channels of the
unpadded image in one call into a [6·fw, fw] stack with float32 maps and fixes the seam/pole
samples by an exact gather (maps cached per H, W, face size, mode). "bare cv2.remap" times that one call alone: the floor of
this route (and with the maps converted to 1/32-px fixed point, the floor of any one-remap route). Both results are HWC faces in memory (e2c: a list of [fw,fw,3] arrays; ours: a
[1,6,3,fw,fw] tensor with channels-last strides); "NCHW" input costs ours one transpose copy. "Warm" rounds follow one warm-up call that fills the caches; "cold"
rounds clear both libraries' caches before every call, so each call builds its maps. Calls are
interleaved round by round so that load from other processes hits both alike; ratios are of the
medians of one run. Results also go to benchmarks/results/geometry.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dap_model.geometry import cube_to_erp, erp_rays, erp_to_cube, erp_to_perspective  # noqa: E402
from dap_model.geometry._views import cached_views_remap, clear_sampling_caches  # noqa: E402
from dap_model.geometry.cube import _ANGLES3  # noqa: E402


def panorama(h: int) -> np.ndarray:
    """Smooth RGB [H,2H,3] float32 panorama built from the ray directions."""
    x, y, z = erp_rays(h, 2 * h, dtype=torch.float64).unbind(-1)
    img = torch.stack((0.5 + 0.3 * x, 0.5 + 0.2 * torch.sin(2 * y + z), 0.5 + 0.25 * x * z), -1)
    return img.float().numpy()


def run_rounds(cases: dict, repeat: int, before=None) -> dict:
    """Median/min ms per case over `repeat` interleaved rounds; `before()` runs untimed before every
    call (cold rounds: it clears the caches), else one warm-up call per case fills them."""
    for fn in cases.values():
        if before is None:
            fn()  # warm-up: grids cached on both sides
    times = {k: [] for k in cases}
    for _ in range(repeat):
        for k, fn in cases.items():
            if before is not None:
                before()
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: {"median_ms": 1e3 * statistics.median(v), "min_ms": 1e3 * min(v)} for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--face-w", type=int, default=512)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "geometry.json"))
    args = ap.parse_args()

    import cv2
    import py360convert

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    h, w, fw = args.height, 2 * args.height, args.face_w
    img = panorama(h)  # [H,W,3] float32
    erp_cl = torch.from_numpy(img).permute(2, 0, 1)[None]  # [1,3,H,W] channels-last view, no copy
    erp = erp_cl.contiguous()  # [1,3,H,W] NCHW
    cube = erp_to_cube(erp, fw)  # [1,6,3,fw,fw]
    cube_list = list(cube[0].permute(0, 2, 3, 1).contiguous().numpy())
    maps = cached_views_remap(h, w, _ANGLES3, (90.0, 90.0), (fw, fw), "bilinear")  # [6·fw, fw] stacked
    out_hwc = np.empty((6 * fw, fw, 3), np.float32)
    fixed = cv2.convertMaps(maps.map_x, maps.map_y, cv2.CV_16SC2)  # 1/32-px fixed point, as e2c samples
    load_before = os.getloadavg()

    cases = {
        "py360convert.e2c": lambda: py360convert.e2c(img, fw, cube_format="list"),
        "erp_to_cube (HWC view)": lambda: erp_to_cube(erp_cl, fw),
        "bare cv2.remap (stacked maps)": lambda: cv2.remap(
            img, maps.map_x, maps.map_y, maps.interpolation, dst=out_hwc, borderMode=cv2.BORDER_REPLICATE),
        "bare cv2.remap (stacked fixed-point maps)": lambda: cv2.remap(
            img, fixed[0], fixed[1], maps.interpolation, dst=out_hwc, borderMode=cv2.BORDER_REPLICATE),
        "erp_to_cube (HWC view) + .contiguous()": lambda: erp_to_cube(erp_cl, fw).contiguous(),
        "erp_to_cube (NCHW)": lambda: erp_to_cube(erp, fw),
        "erp_to_cube (NCHW, allow_nan)": lambda: erp_to_cube(erp, fw, allow_nan=True),
        "py360convert.c2e": lambda: py360convert.c2e(cube_list, h, w, cube_format="list"),
        "cube_to_erp": lambda: cube_to_erp(cube, h, w),
        "py360convert.e2p": lambda: py360convert.e2p(img, 90, 30, 10, (fw, fw)),
        "erp_to_perspective": lambda: erp_to_perspective(erp, 30.0, 10.0, 0.0, 90, (fw, fw)),
    }
    res = run_rounds(cases, args.repeat)
    pair = {k: cases[k] for k in ("py360convert.e2c", "erp_to_cube (HWC view)")}

    def clear_both() -> None:
        clear_sampling_caches()
        py360convert.utils.EquirecSampler.from_cubemap.cache_clear()

    res_cold = run_rounds(pair, max(3, args.repeat // 3), before=clear_both)

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    res1 = run_rounds(pair, args.repeat)
    res1_cold = run_rounds(pair, max(3, args.repeat // 3), before=clear_both)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    ours = erp_to_cube(erp_cl, fw)[0].permute(0, 2, 3, 1).numpy()
    ref = np.stack(py360convert.e2c(img, fw, cube_format="list"))
    max_diff = float(np.abs(ours - ref).max())

    base = res["py360convert.e2c"]["median_ms"]
    ratio = base / res["erp_to_cube (HWC view)"]["median_ms"]
    ratio_nchw = base / res["erp_to_cube (NCHW)"]["median_ms"]
    ratio_bare = base / res["bare cv2.remap (stacked maps)"]["median_ms"]
    ratio_fixed = base / res["bare cv2.remap (stacked fixed-point maps)"]["median_ms"]
    ratio_1t = res1["py360convert.e2c"]["median_ms"] / res1["erp_to_cube (HWC view)"]["median_ms"]
    ratio_cold = res_cold["py360convert.e2c"]["median_ms"] / res_cold["erp_to_cube (HWC view)"]["median_ms"]
    ratio_1t_cold = res1_cold["py360convert.e2c"]["median_ms"] / res1_cold["erp_to_cube (HWC view)"]["median_ms"]
    ratio_c2e = res["py360convert.c2e"]["median_ms"] / res["cube_to_erp"]["median_ms"]
    ratio_e2p = res["py360convert.e2p"]["median_ms"] / res["erp_to_perspective"]["median_ms"]

    print(f"{h}×{w} float32 RGB, face_w {fw}, {args.threads} threads, {args.repeat} interleaved rounds")
    print(f"{'case':34s} {'median ms':>10s} {'min ms':>9s}")
    for k, v in res.items():
        print(f"{k:34s} {v['median_ms']:10.1f} {v['min_ms']:9.1f}")
    for tag, table in (("cold", res_cold), ("1 thread", res1), ("1 thread, cold", res1_cold)):
        for k, v in table.items():
            print(f"{k + ' [' + tag + ']':34s} {v['median_ms']:10.1f} {v['min_ms']:9.1f}")
    print(f"erp_to_cube speed-up vs e2c, warm caches: {ratio:.2f}× (HWC view), {ratio_nchw:.2f}× (NCHW), "
          f"{ratio_1t:.2f}× (1 thread); bare cv2.remap alone {ratio_bare:.2f}× "
          f"(fixed-point maps {ratio_fixed:.2f}×)")
    print(f"erp_to_cube speed-up vs e2c, cold caches: {ratio_cold:.2f}×, {ratio_1t_cold:.2f}× (1 thread)")
    print(f"cube_to_erp vs c2e: {ratio_c2e:.2f}×   erp_to_perspective vs e2p: {ratio_e2p:.2f}×")
    print(f"max |ours − e2c| = {max_diff:.2e} (e2c's 1/32-px fixed-point interpolation)")
    print(f"load average before/after: {load_before} / {os.getloadavg()}")

    out = {
        "shape": [h, w],
        "face_w": fw,
        "dtype": "float32",
        "threads": args.threads,
        "repeat": args.repeat,
        "cache_note": "warm: sampling maps cached by a warm-up call (both libraries); "
                      "cold: both libraries' map caches cleared before every call",
        "timings_ms": res,
        "timings_ms_cold": res_cold,
        "timings_ms_1_thread": res1,
        "timings_ms_1_thread_cold": res1_cold,
        "speedup_erp_to_cube_vs_e2c": ratio,
        "speedup_erp_to_cube_nchw_vs_e2c": ratio_nchw,
        "speedup_bare_cv2_remap_vs_e2c": ratio_bare,
        "speedup_bare_cv2_remap_fixed_point_vs_e2c": ratio_fixed,
        "speedup_erp_to_cube_vs_e2c_1_thread": ratio_1t,
        "speedup_erp_to_cube_vs_e2c_cold": ratio_cold,
        "speedup_erp_to_cube_vs_e2c_1_thread_cold": ratio_1t_cold,
        "speedup_cube_to_erp_vs_c2e": ratio_c2e,
        "speedup_erp_to_perspective_vs_e2p": ratio_e2p,
        "max_abs_diff_vs_e2c": max_diff,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cv2_threads": cv2.getNumThreads(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "py360convert": getattr(py360convert, "__version__", "?"), "opencv": cv2.__version__},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
