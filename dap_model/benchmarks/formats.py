"""One reader per benchmark encoding (layouts and encodings: docs/evaluation.md#benchmark-formats)."""

from __future__ import annotations

import fnmatch
import re
from pathlib import PurePosixPath
from typing import Iterator

import numpy as np

from dap_model.errors import InputError
from dap_model.images import decode_rgb

from ._files import (
    clean_depth,
    decode_npy,
    decode_npz,
    decode_png_u16,
    posix_parent,
    read_bytes,
    read_exr_depth,
)
from .base import BenchmarkReader, BenchSample, PairedReader, check_pair, register
from .cassini import cassini_to_erp


@register
class Stanford2D3D(PairedReader):
    """uint16 PNG, metres = value / 512; 65535 (no return) and 0 are invalid."""

    format = "stanford2d3d"
    layout = "<stem>_rgb.png + <stem>_depth.png (uint16 / 512), same folder or sibling rgb/ depth/ folders"
    depth_suffix = "_depth.png"

    def decode_depth(self, depth_key: str) -> np.ndarray:
        return decode_png_u16(read_bytes(self.store, depth_key), self.name(depth_key), 512.0, (0, 65535))


@register
class Matterport3D(PairedReader):
    """DAP's split: float EXR in metres."""

    format = "matterport3d"
    layout = "<stem>_rgb.png + <stem>_depth.exr (metres), same folder or sibling rgb/ depth/ folders"
    depth_suffix = "_depth.exr"

    def decode_depth(self, depth_key: str) -> np.ndarray:
        try:
            path = self.store.fetch(depth_key)
        except OSError as err:
            raise InputError(f"{self.name(depth_key)}: unreadable ({err})") from None
        return read_exr_depth(path, self.name(depth_key))


@register
class Matterport3DPng(PairedReader):
    """The other common Matterport3D encoding: uint16 PNG, metres = value / 4000; 0 invalid."""

    format = "matterport3d_png"
    layout = "<stem>_rgb.png + <stem>_depth.png (uint16 / 4000), same folder or sibling rgb/ depth/ folders"
    depth_suffix = "_depth.png"

    def decode_depth(self, depth_key: str) -> np.ndarray:
        return decode_png_u16(read_bytes(self.store, depth_key), self.name(depth_key), 4000.0, (0,))


@register
class Deep360(PairedReader):
    """Cassini-projected RGB and `.npz` depth (metres), both Hc x Wc with Hc = 2 Wc, converted to
    a Wc x 2Wc ERP (`cassini.cassini_to_erp`: RGB bilinear, depth nearest)."""

    format = "deep360"
    layout = ("<stem>_rgb.png + <stem>_depth.npz (Cassini, height = 2 x width, metres), same folder or "
              "sibling rgb/ depth/ folders")
    depth_suffix = "_depth.npz"

    def decode_depth(self, depth_key: str) -> np.ndarray:
        return decode_npz(read_bytes(self.store, depth_key), self.name(depth_key))

    def _read(self, item: tuple[str, str, str]) -> Iterator[BenchSample]:
        key, rgb_key, depth_key = item
        rgb_c = decode_rgb(read_bytes(self.store, rgb_key), self.name(rgb_key))  # [Hc,Wc,3]
        depth_c = self.decode_depth(depth_key)  # [Hc,Wc]
        name = self.name(depth_key)
        if depth_c.shape != rgb_c.shape[:2]:
            raise InputError(
                f"{name}: depth is {depth_c.shape[0]}x{depth_c.shape[1]} but its image {self.name(rgb_key)} "
                f"is {rgb_c.shape[0]}x{rgb_c.shape[1]}"
            )
        hc, wc = depth_c.shape
        if hc != 2 * wc:
            raise InputError(f"{name}: {hc}x{wc} is not a Cassini panorama (height must be 2 x width)")
        import torch

        rgb_t = torch.from_numpy(rgb_c).permute(2, 0, 1)[None].float()  # [1,3,Hc,Wc]
        rgb = cassini_to_erp(rgb_t, "bilinear")[0].round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
        depth = cassini_to_erp(torch.from_numpy(depth_c)[None, None], "nearest")[0, 0].numpy()  # [Wc,2Wc]
        check_pair(rgb, depth, name, self.name(rgb_key))
        yield BenchSample(key=key, rgb=np.ascontiguousarray(rgb), depth=np.ascontiguousarray(depth), source=name,
                          meta={"cassini_hw": [hc, wc]})


@register
class Npy(PairedReader):
    """`<stem>_rgb.png` + `<stem>_depth.npy` (float metres) of any 2:1 size."""

    format = "npy"
    layout = "<stem>_rgb.png + <stem>_depth.npy (float metres, width = 2 x height)"
    depth_suffix = "_depth.npy"

    def decode_depth(self, depth_key: str) -> np.ndarray:
        return decode_npy(read_bytes(self.store, depth_key), self.name(depth_key))


_PANO_RE = re.compile(r"^panorama_(\d+)\.png$")


@register
class AirSim360(BenchmarkReader):
    """AirSim360 / DAP-Test: `<sequence>/panorama_<i>.png` + `erp_distance_<i>.npy` (metres, ≤ 1000)."""

    format = "airsim360"
    layout = "<sequence>/panorama_<i>.png + <sequence>/erp_distance_<i>.npy (metres)"

    def _list(self) -> list[tuple[str, str, str]]:
        keys = self.store.list()
        present = set(keys)
        out = []
        for k in keys:
            m = _PANO_RE.match(PurePosixPath(k).name)
            if not m:
                continue
            parent = posix_parent(k)
            dk = f"{parent}/erp_distance_{m.group(1)}.npy" if parent else f"erp_distance_{m.group(1)}.npy"
            if dk not in present:
                raise InputError(f"{self.name(k)}: no depth file {self.name(dk)} beside it")
            out.append((k[: -len(".png")], k, dk))
        return out

    def _read(self, item: tuple[str, str, str]) -> Iterator[BenchSample]:
        key, rgb_key, depth_key = item
        rgb = decode_rgb(read_bytes(self.store, rgb_key), self.name(rgb_key))
        depth = decode_npy(read_bytes(self.store, depth_key), self.name(depth_key))
        check_pair(rgb, depth, self.name(depth_key), self.name(rgb_key))
        yield BenchSample(key=key, rgb=rgb, depth=depth, source=self.name(depth_key))


@register
class Shards(BenchmarkReader):
    """The project's own held-out splits: tar shards (`dap_model.data.shards`) whose keys match
    `pattern` (fnmatch, e.g. `labeled/test-*.tar`, `web/test/*.tar`). Samples without depth are
    skipped (they carry no ground truth)."""

    format = "shards"
    layout = "tar shards matching the pattern, samples with <key>.depth.npy"

    def _list(self) -> list[str]:
        pattern = self.pattern or "*.tar"
        return [k for k in self.store.list() if k.endswith(".tar") and fnmatch.fnmatchcase(k, pattern)]

    def _read(self, item: str) -> Iterator[BenchSample]:
        from dap_model.data.shards import iter_shard

        try:
            path = self.store.fetch(item)
        except OSError as err:
            raise InputError(f"{self.name(item)}: unreadable ({err})") from None
        for s in iter_shard(path):
            if s.depth is None:
                continue
            name = f"{self.name(item)}:{s.key}.depth.npy"
            depth = clean_depth(s.depth, name)
            check_pair(s.rgb, depth, name, f"{self.name(item)}:{s.key}.rgb.png")
            yield BenchSample(key=s.key, rgb=s.rgb, depth=depth, source=name, meta=dict(s.meta))

