"""Make `timm` importable next to a torchvision whose native ops do not match the installed torch.

PyPI's torchvision wheels are CUDA builds; with the CPU torch its `_C` extension fails to load,
and `import torchvision` then dies in `_meta_registrations` registering fake kernels for
`torchvision::nms` / `qnms`, schemas the missing extension should have defined. timm imports
torchvision (transforms only; we use none of its C++ ops), so before the first import we define
exactly those two schemas, without kernels: calling `torchvision.ops.nms` still fails loudly.
When the native library loads (a matching CUDA torch on a GPU machine) nothing is changed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_done = False
_library = None  # keeps the torch.library.Library alive


def torchvision_native_ops_available() -> bool:
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    for folder in spec.submodule_search_locations:
        for so in Path(folder).glob("_C*.so"):
            try:
                torch.ops.load_library(str(so))
                return True
            except (OSError, RuntimeError):
                return False
    return False


def ensure_torchvision_importable() -> None:
    global _done, _library
    if _done:
        return
    _done = True
    import torch

    if torchvision_native_ops_available():
        return
    try:
        torch._C._dispatch_find_schema_or_throw("torchvision::nms", "")
        return
    except RuntimeError:
        pass
    _library = torch.library.Library("torchvision", "DEF")
    _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def import_timm():
    """`import timm` after the compatibility step."""
    ensure_torchvision_importable()
    import timm

    return timm
