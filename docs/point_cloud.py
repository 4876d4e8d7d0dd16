"""Render point clouds (`dap predict --ply` output) side by side as one picture.

    .venv/bin/python docs/point_cloud.py A.ply [B.ply ...] --titles "prediction" "ground truth" \
        --out docs/img/point_cloud.png

Each cloud is drawn from above and behind the camera (the camera frame of docs/architecture.md:
x right, y up, z forward), with its own colours, at most `--points` points."""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from plyfile import PlyData  # noqa: E402


def read_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(points [N,3] metres, colours [N,3] in 0..1)."""
    v = PlyData.read(str(path))["vertex"].data
    xyz = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float32)
    rgb = np.stack([v["red"], v["green"], v["blue"]], axis=1).astype(np.float32) / 255.0
    return xyz, rgb


def render(paths: list[Path], titles: list[str], out: Path, points: int = 40000, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    clouds = [read_ply(p) for p in paths]
    lim = max(float(np.percentile(np.abs(xyz), 98)) for xyz, _ in clouds)
    fig = plt.figure(figsize=(5.5 * len(clouds), 5))
    for i, ((xyz, rgb), title) in enumerate(zip(clouds, titles), 1):
        keep = rng.choice(len(xyz), size=min(points, len(xyz)), replace=False)
        ax = fig.add_subplot(1, len(clouds), i, projection="3d")
        # matplotlib's z is up: plot (x, z, y) so the scene's up is the plot's up
        ax.scatter(xyz[keep, 0], xyz[keep, 2], xyz[keep, 1], c=rgb[keep], s=0.6, linewidths=0)
        ax.scatter([0], [0], [0], c="red", s=25, marker="^")  # the camera
        ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim), ax.set_zlim(-lim, lim)
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=35, azim=-60)
        ax.set_xlabel("x (m)"), ax.set_ylabel("z (m)"), ax.set_zlabel("y (m)")
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ply", nargs="+", type=Path)
    p.add_argument("--titles", nargs="*", default=None)
    p.add_argument("--points", type=int, default=40000)
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("img") / "point_cloud.png")
    a = p.parse_args()
    titles = a.titles or [x.stem for x in a.ply]
    if len(titles) != len(a.ply):
        p.error("one title per PLY file")
    print(render(a.ply, titles, a.out, a.points))


if __name__ == "__main__":
    main()
