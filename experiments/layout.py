"""Does an empty-room model transfer to real rooms where per-pixel networks do not? A network that
predicts only a room's layout — per image column the horizontal distance D to the wall, per image
the camera's height above the floor h and the ceiling's height above the camera c — renders depth as
the nearest of the three surfaces along each ray (latitude φ):

    depth(φ, col) = min(D(col) / cos φ,  h / sin(−φ) if φ < 0,  c / sin φ if φ > 0)

which is exact for any room whose floor plan is star-shaped around the camera, with furniture
missing. The floor–wall edge of each column fixes D = h / tan(−φ_edge): a cue every real room has,
unlike the simulator's materials. Trained on the indoor panoramas of a store's labelled train split
(log-L1 on valid depth), scored on the real pairs through `dap_model.evaluation` beside the
simulator's mean room (`RowPriorModel`, the same train split) and the constants.

    python -m experiments.layout --profile tiny --data DIR [--steps 500] [--batch 8] [--seed 0]
        [--lr 1e-3] [--encoder resnet18] [--residual-l1 W] [--real DIR] [--save DIR] [--out ...]

DIR is a store with a labelled set (`labeled/`), e.g. an `experiments.backbones` project's `data/`.
The encoder is a timm convolutional network from scratch; its stride-4 to stride-32 feature maps
are folded column-wise (rows into channels, as HorizonNet does) into one 1-D sequence over the
panorama's width, read by circular 1-D convolutions. Written here rather than in the model registry:
it is a question about what transfers, not a product network."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dap_model.evaluation.baseline import ReferenceModel
from dap_model.models.dap import IMAGENET_MEAN, IMAGENET_STD
from experiments.common import DEFAULT_REAL, real_baselines, require_real, score_real, write_real_results

INIT_M = {"wall": 2.5, "floor": 1.5, "ceiling": 1.2}  # start: a 5 m round room, camera 1.5 m up, 2.7 m ceiling


def layout_depth(log_wall: Tensor, log_floor: Tensor, log_ceiling: Tensor, h: int) -> Tensor:
    """log_wall [B,W] (horizontal wall distance per column), log_floor / log_ceiling [B] (floor below
    and ceiling above the camera) → depth [B,1,h,W] metres along each ray at the h ERP row centres."""
    lat = math.pi / 2 - (torch.arange(h, device=log_wall.device, dtype=log_wall.dtype) + 0.5) * (math.pi / h)  # [h]
    wall = log_wall.exp()[:, None, :] / lat.cos()[None, :, None]  # [B,h,W]
    s = lat.sin()[None, :, None]  # [1,h,1]
    inf = torch.full_like(wall, float("inf"))
    floor = torch.where(s < 0, log_floor.exp()[:, None, None] / (-s).clamp_min(1e-6), inf)
    ceiling = torch.where(s > 0, log_ceiling.exp()[:, None, None] / s.clamp_min(1e-6), inf)
    return torch.minimum(wall, torch.minimum(floor, ceiling))[:, None]  # [B,1,h,W]


class LayoutNet(nn.Module):
    """rgb [B,3,H,W] in [0,1] → dict(log_wall [B,W], log_floor [B], log_ceiling [B]) and, with
    `residual`, a per-pixel log-depth residual [B,1,H,W] over the rendered room (furniture), read
    from the stride-4 and stride-8 features and zero at the start."""

    def __init__(self, encoder: str = "resnet18", height: int = 64, width: int = 128, hidden: int = 256,
                 residual: bool = False):
        super().__init__()
        from dap_model.compat import import_timm

        timm = import_timm()

        self.height, self.width = height, width
        self.encoder = timm.create_model(encoder, pretrained=False, features_only=True, out_indices=(1, 2, 3, 4))
        with torch.no_grad():
            feats = self.encoder.eval()(torch.zeros(1, 3, height, width))  # the feature shapes
        self.encoder.train()
        self.seq_w = feats[0].shape[-1]  # the stride-4 width: the sequence length
        fold = sum(f.shape[1] * f.shape[2] for f in feats)  # rows folded into channels
        self.read = nn.Sequential(
            nn.Conv1d(fold, hidden, 1), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Conv1d(hidden, hidden, 3, padding=1, padding_mode="circular"), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Conv1d(hidden, 1, 3, padding=1, padding_mode="circular"),
        )
        self.heights = nn.Linear(feats[-1].shape[1], 2)
        nn.init.zeros_(self.read[-1].weight)
        nn.init.constant_(self.read[-1].bias, math.log(INIT_M["wall"]))
        nn.init.zeros_(self.heights.weight)
        with torch.no_grad():
            self.heights.bias.copy_(torch.tensor([math.log(INIT_M["floor"]), math.log(INIT_M["ceiling"])]))
        self.residual = None
        if residual:
            c = feats[0].shape[1] + feats[1].shape[1]
            self.residual = nn.Sequential(nn.Conv2d(c, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                          nn.Conv2d(64, 1, 3, padding=1))
            nn.init.zeros_(self.residual[-1].weight)
            nn.init.zeros_(self.residual[-1].bias)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, rgb: Tensor) -> dict[str, Tensor]:
        w = rgb.shape[-1]
        x = F.interpolate((rgb - self.mean) / self.std, size=(self.height, self.width), mode="bilinear", align_corners=False)
        feats = self.encoder(x)  # 4 × [B,C_i,h_i,w_i]
        seq = [F.interpolate(f.flatten(1, 2), size=self.seq_w, mode="linear", align_corners=False) for f in feats]  # [B,C_i·h_i,seq_w]
        log_wall = self.read(torch.cat(seq, 1))  # [B,1,seq_w]
        log_wall = F.interpolate(log_wall, size=w, mode="linear", align_corners=False)[:, 0]  # [B,W]
        log_floor, log_ceiling = self.heights(feats[-1].mean((2, 3))).unbind(1)  # [B], [B]
        out = {"log_wall": log_wall, "log_floor": log_floor, "log_ceiling": log_ceiling}
        if self.residual is not None:
            f1 = F.interpolate(feats[1], size=feats[0].shape[-2:], mode="bilinear", align_corners=False)
            res = self.residual(torch.cat([feats[0], f1], 1))  # [B,1,h/4,w/4]
            out["residual"] = F.interpolate(res, size=rgb.shape[-2:], mode="bilinear", align_corners=False)  # [B,1,H,W]
        return out


def predict(net: LayoutNet, rgb: Tensor) -> tuple[Tensor, Tensor | None]:
    """(depth [B,1,H,W] metres, the log residual or None): the rendered room times exp(residual)."""
    o = net(rgb)
    room = layout_depth(o["log_wall"], o["log_floor"], o["log_ceiling"], rgb.shape[-2])
    res = o.get("residual")
    return (room if res is None else room * res.exp()), res


class LayoutModel(ReferenceModel):
    """A trained `LayoutNet` behind the evaluation's model interface: every pixel in range."""

    def __init__(self, net: LayoutNet):
        super().__init__()
        self.net = net

    def forward(self, rgb: Tensor) -> dict[str, Tensor]:
        return self._outputs(predict(self.net, rgb)[0])


def indoor_train(store, height: int) -> tuple[Tensor, Tensor]:
    """The labelled train split's indoor panoramas at `height`: rgb [N,3,h,2h] in [0,1], depth [N,1,h,2h]."""
    from dap_model import layout as store_layout
    from dap_model.data.samples import split_shard_keys
    from dap_model.data.shards import iter_shards
    from dap_model.data.samples import clean_depth, resize_pair

    rgbs, depths = [], []
    for s in iter_shards(store.fetch(k) for k in split_shard_keys(store, store_layout.LABELED, "train")):
        if s.depth is None or s.meta.get("domain") != "indoor":
            continue
        rgb, depth = resize_pair(s.rgb, clean_depth(s.depth), height)
        rgbs.append(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
        depths.append(torch.from_numpy(depth)[None])
    if not rgbs:
        raise SystemExit("no indoor labelled train panoramas in the store")
    return torch.stack(rgbs), torch.stack(depths)


def train(net: LayoutNet, rgb: Tensor, depth: Tensor, steps: int, batch: int, lr: float, seed: int, cap: float,
          residual_l1: float = 0.0) -> list[float]:
    """AdamW on log-L1 over valid depth (0 < d <= cap), plus `residual_l1` x mean |residual| (furniture
    is a sparse departure from the room); random yaw roll, mirror and brightness/contrast."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    net.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, rgb.shape[0], (batch,), generator=g)
        x, d = rgb[idx].clone(), depth[idx].clone()  # [b,3,h,w], [b,1,h,w]
        for i in range(batch):
            k = int(torch.randint(0, x.shape[-1], (1,), generator=g))
            x[i], d[i] = x[i].roll(k, -1), d[i].roll(k, -1)
            if torch.rand(1, generator=g) < 0.5:
                x[i], d[i] = x[i].flip(-1), d[i].flip(-1)
            a, b = 1 + 0.3 * (2 * torch.rand(2, generator=g) - 1)
            x[i] = ((x[i] - 0.5) * a + 0.5) * b
        x = x.clamp(0, 1)
        pred, res = predict(net, x)  # [b,1,h,w]
        valid = (d > 0) & (d <= cap)
        loss = (pred.clamp_min(1e-3).log() - d.clamp_min(1e-3).log()).abs()[valid].mean()
        if res is not None and residual_l1 > 0:
            loss = loss + residual_l1 * res.abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, action="append", default=None, help="repeat for several seeds (default 0)")
    ap.add_argument("--encoder", default="resnet18")
    ap.add_argument("--residual-l1", type=float, default=None,
                    help="add the per-pixel residual head, with this weight on mean |residual| (0: unpenalised)")
    ap.add_argument("--real", type=Path, default=DEFAULT_REAL)
    ap.add_argument("--save", type=Path, default=None, help="folder for each seed's weights (layout_seedN.safetensors)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", type=Path, default=None, help="markdown table (the figures go to .json beside it)")
    args = ap.parse_args()

    from safetensors.torch import save_file

    from dap_model.config import load_config
    from dap_model.evaluation.report import row_priors
    from dap_model.storage import LocalStore

    cfg = load_config(args.profile, [*args.overrides, "eval.baseline_row_priors=[indoor]"])
    real = require_real(args.real)
    store = LocalStore(args.data)
    h = cfg.train.height
    rgb, depth = indoor_train(store, h)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    rows, runs = {}, {}
    for seed in args.seed or [0]:
        torch.manual_seed(seed)
        net = LayoutNet(args.encoder, h, 2 * h, residual=args.residual_l1 is not None)
        t0 = time.perf_counter()
        losses = train(net, rgb, depth, args.steps, args.batch, args.lr, seed, cfg.eval.cap_m, args.residual_l1 or 0.0)
        seconds = time.perf_counter() - t0
        net.eval()
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(args.save / f"layout_seed{seed}.safetensors"))
        name = f"layout{'' if args.residual_l1 is None else f' + residual (L1 {args.residual_l1:g})'}, seed {seed}"
        with torch.no_grad():
            rows[name] = score_real(cfg, LayoutModel(net), real)
        runs[name] = {"seconds": seconds, "loss_last_50": float(np.mean(losses[-50:])), "loss_first_50": float(np.mean(losses[:50]))}
        print(name, {k: round(v, 4) for k, v in rows[name].items() if k != "by_folder"}, runs[name], flush=True)
    rows |= {m.name: score_real(cfg, m, real) for m in row_priors(cfg, store)}
    rows |= real_baselines(cfg, real)
    write_real_results(rows, args.out, {
        "data": str(args.data), "profile": args.profile, "overrides": args.overrides, "steps": args.steps, "batch": args.batch,
        "lr": args.lr, "encoder": args.encoder, "residual_l1": args.residual_l1, "indoor_train": int(rgb.shape[0]), "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
