"""Device, dtype, autocast and CPU threads from the `device` / `dtype` / `amp_dtype` / `threads`
knobs (`auto` = CUDA when present). Every device choice in the project goes through
`resolve_device`."""

from __future__ import annotations

from dap_model.errors import ConfigError


def resolve_device(spec: str):
    import torch

    spec = (spec or "auto").strip()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError as err:
        raise ConfigError(f"device {spec!r}: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r}: CUDA is not available on this machine")
    return dev


def resolve_dtype(spec: str, device):
    """`auto` = bfloat16 on CUDA, float32 elsewhere."""
    import torch

    if spec == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    if spec not in table:
        raise ConfigError(f"dtype {spec!r}: expected one of auto, {', '.join(table)}")
    return table[spec]


def apply_cpu_threads(n: int) -> None:
    """`torch.set_num_threads(n)` when `n` > 0 (the `train.threads` knob); 0 keeps torch's default."""
    import torch

    if n > 0 and torch.get_num_threads() != n:
        torch.set_num_threads(n)


def autocast(device, amp_dtype: str):
    """bf16/fp16 autocast on CUDA (`train.amp_dtype`); a no-op elsewhere (CPU runs fp32)."""
    import contextlib

    import torch

    if device.type != "cuda" or amp_dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp_dtype == "bf16" else torch.float16)
