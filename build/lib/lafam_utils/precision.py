"""Numeric precision of the explainers' forward passes: ``"fp32"``, ``"bf16"`` or ``"auto"``.

``"bf16"`` runs the model's forward (and Grad-CAM's backward through the layers after the
explained layer) under ``torch.autocast(dtype=torch.bfloat16)`` on the images' device, with the
images in channels_last memory format. The model itself is not touched: its weights keep their
dtype and memory format (autocast casts them per call; a channels_last input is enough for the
convolutions to run channels_last). Everything after the forward (channel means, SVD, gradient
weighting, RELAX's statistics, normalisation) runs in float32, and maps are float32 in [0, 1].
``"auto"`` is ``"bf16"`` where the device has native bf16 arithmetic (``native_bf16``), else ``"fp32"``.
"""

from __future__ import annotations

import functools
import platform
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

Precision = Literal["fp32", "bf16", "auto"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "auto")
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")  # x86 AMX, x86 AVX512-BF16, Arm FEAT_BF16


def check_precision(precision: object) -> None:
    """Raise a clear error unless ``precision`` is one of ``PRECISIONS``."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux); empty where that file does not exist."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return frozenset()
    flags: set[str] = set()
    for line in cpuinfo.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` does bf16 arithmetic natively (what ``precision="auto"`` asks).

    CUDA: ``torch.cuda.is_bf16_supported()`` and compute capability >= 8.0 (Ampere or newer).
    CPU: one of the flags ``amx_bf16``, ``avx512_bf16`` (x86) or ``bf16`` (Arm) in /proc/cpuinfo,
    or an Apple Silicon Mac (arm64 Darwin; M2 and newer have bf16 instructions). Other devices: False.
    """
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.is_bf16_supported() and torch.cuda.get_device_capability(index) >= (8, 0)
    if device.type == "cpu":
        apple_silicon = platform.system() == "Darwin" and platform.machine() == "arm64"
        return apple_silicon or any(flag in cpu_flags() for flag in CPU_BF16_FLAGS)
    return False


def resolve_precision(precision: Precision, device: str | torch.device) -> Literal["fp32", "bf16"]:
    """``precision`` with ``"auto"`` decided for ``device``: ``"bf16"`` where ``native_bf16``, else ``"fp32"``."""
    check_precision(precision)
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision  # type: ignore[return-value]


def forward_context(precision: Literal["fp32", "bf16"], device: torch.device) -> AbstractContextManager:
    """bf16 autocast on ``device``'s type for ``"bf16"``, nothing for ``"fp32"``."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def memory_format(x: Tensor, precision: Literal["fp32", "bf16"]) -> Tensor:
    """``x`` in channels_last for ``"bf16"`` (a (B, C, H, W) tensor), unchanged for ``"fp32"``."""
    return x.contiguous(memory_format=torch.channels_last) if precision == "bf16" else x


__all__ = [
    "PRECISIONS",
    "Precision",
    "check_precision",
    "forward_context",
    "memory_format",
    "native_bf16",
    "resolve_precision",
]
