"""Numeric precision of the explainers' forward passes: ``"fp32"``, ``"tf32"``, ``"bf16"`` or ``"auto"``.

- ``"fp32"``: strict IEEE float32 on every device. On CUDA, TF32 is switched off for cuBLAS
  matmuls and cuDNN convolutions (``torch.backends.cuda.matmul.allow_tf32``,
  ``torch.backends.cudnn.allow_tf32``) while the explainer's forward and backward run; PyTorch's
  own default runs convolutions in TF32, which moved Grad-CAM maps by up to 2.2e-3 on an H200.
- ``"tf32"``: those two flags on for the call (10-bit mantissa products, float32 sums). TF32
  exists on CUDA devices of compute capability 8.0 or newer only; elsewhere (CPU, older GPUs)
  ``"tf32"`` computes strict fp32 and resolves to ``"fp32"``, so a run records what ran.
- ``"bf16"``: the model's forward (and Grad-CAM's backward through the layers after the
  explained layer) under ``torch.autocast(dtype=torch.bfloat16)`` on the images' device, images
  in channels_last; the TF32 flags stay as the caller set them.
- ``"auto"``: ``"tf32"`` on a CUDA device with TF32 (else ``"fp32"``; never bf16 by itself:
  bf16 is the user's measured choice); on the CPU ``"bf16"`` where it has native bf16
  arithmetic (``native_bf16``), else ``"fp32"``.

The model itself is not touched: its weights keep their dtype and memory format (autocast casts
them per call; a channels_last input is enough for the convolutions to run channels_last). The
caller's TF32 flags are restored after each forward and backward, also when it raises.
Everything after the forward (channel means, EigenCAM's principal component, gradient
weighting, RELAX's statistics, normalisation) runs in float32, and maps are float32 in [0, 1].
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

Precision = Literal["fp32", "tf32", "bf16", "auto"]
Resolved = Literal["fp32", "tf32", "bf16"]
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16", "auto")
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")  # x86 AMX, x86 AVX512-BF16, Arm FEAT_BF16
TF32_CAPABILITY = (8, 0)  # Ampere and newer


def check_precision(precision: object) -> None:
    """Raise a clear error unless ``precision`` is one of ``PRECISIONS``.

    Raises:
        ValueError: ``precision`` is not one of them.
    """
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


def cuda_capability(device: torch.device) -> tuple[int, int] | None:
    """The compute capability of a CUDA ``device``; None where CUDA is not available."""
    if not torch.cuda.is_available():
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.get_device_capability(index)


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` does bf16 arithmetic natively.

    CUDA: ``torch.cuda.is_bf16_supported()`` and compute capability >= 8.0 (Ampere or newer).
    CPU: one of the flags ``amx_bf16``, ``avx512_bf16`` (x86) or ``bf16`` (Arm) in /proc/cpuinfo,
    or an Apple Silicon Mac (arm64 Darwin; M2 and newer have bf16 instructions). Other devices: False.
    """
    device = torch.device(device)
    if device.type == "cuda":
        capability = cuda_capability(device)
        return capability is not None and torch.cuda.is_bf16_supported() and capability >= (8, 0)
    if device.type == "cpu":
        apple_silicon = platform.system() == "Darwin" and platform.machine() == "arm64"
        return apple_silicon or any(flag in cpu_flags() for flag in CPU_BF16_FLAGS)
    return False


def native_tf32(device: str | torch.device) -> bool:
    """Whether ``device`` computes float32 matmuls and convolutions in TF32 when allowed: a CUDA
    device of compute capability >= 8.0 (Ampere or newer)."""
    device = torch.device(device)
    if device.type != "cuda":
        return False
    capability = cuda_capability(device)
    return capability is not None and capability >= TF32_CAPABILITY


def resolve_precision(precision: Precision, device: str | torch.device) -> Resolved:
    """What ``precision`` computes on ``device``: ``"auto"`` decided, ``"tf32"`` without TF32 as ``"fp32"``.

    Args:
        precision: one of ``PRECISIONS``.
        device: where the forward runs.

    Returns:
        ``"fp32"``, ``"tf32"`` or ``"bf16"``: what runs (the value a run's identity records).

    Raises:
        ValueError: ``precision`` is not one of ``PRECISIONS``.
    """
    check_precision(precision)
    device = torch.device(device)
    if precision == "auto":
        if device.type == "cuda":
            return "tf32" if native_tf32(device) else "fp32"
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "tf32" and not native_tf32(device):
        return "fp32"
    return precision  # type: ignore[return-value]


FP32_SETTINGS = (  # per-operation fp32_precision settings ``tf32`` changes: (name, its backend)
    ("cuda.matmul", lambda: torch.backends.cuda.matmul),
    ("cudnn.conv", lambda: torch.backends.cudnn.conv),
    ("cudnn.rnn", lambda: torch.backends.cudnn.rnn),
    ("mkldnn.matmul", lambda: torch.backends.mkldnn.matmul),
    ("mkldnn.conv", lambda: torch.backends.mkldnn.conv),
)


def read_legacy(getter: Callable[[], object]) -> object:
    """A legacy flag's value, or None where PyTorch refuses to read it (the caller mixed its legacy
    and new TF32 APIs into settings the legacy flag cannot express)."""
    try:
        return getter()
    except RuntimeError:
        return None


def tf32_flags() -> dict[str, object]:
    """The float32 settings ``tf32`` changes: the legacy ``float32_matmul_precision`` and cuDNN flag
    (None where unreadable) and the per-operation ``fp32_precision`` of ``FP32_SETTINGS``."""
    return {
        "matmul_precision": read_legacy(torch.get_float32_matmul_precision),
        "cudnn": read_legacy(lambda: torch.backends.cudnn.allow_tf32),
        **{name: backend().fp32_precision for name, backend in FP32_SETTINGS},
    }


def restore_tf32_flags(flags: dict[str, object]) -> None:
    """Set the TF32 settings back to ``flags`` (from ``tf32_flags``): the legacy flags first, then
    each per-operation setting that still differs (setting an equal one would mark the legacy flags
    as mixed with the new API)."""
    if flags["matmul_precision"] is not None:
        torch.set_float32_matmul_precision(flags["matmul_precision"])
    if flags["cudnn"] is not None:
        torch.backends.cudnn.allow_tf32 = flags["cudnn"]
    for name, backend in FP32_SETTINGS:
        if backend().fp32_precision != flags[name]:
            backend().fp32_precision = flags[name]


@contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 for CUDA matmuls and cuDNN convolutions on (``enabled``) or off inside the block.

    Sets ``torch.backends.cuda.matmul.allow_tf32`` and ``torch.backends.cudnn.allow_tf32``, and
    oneDNN's CPU matmuls and convolutions to IEEE float32 (in case the caller allowed them bf16
    or TF32, e.g. with ``torch.set_float32_matmul_precision("medium")``). These are process-wide
    settings, so the block should hold only the explainer's own work; the caller's settings are
    restored on exit, also when the block raises. Costs some microseconds.
    """
    saved = tf32_flags()
    try:
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled
        torch.backends.mkldnn.matmul.fp32_precision = "ieee"
        torch.backends.mkldnn.conv.fp32_precision = "ieee"
        yield
    finally:
        restore_tf32_flags(saved)


def tf32_context(precision: Resolved) -> AbstractContextManager:
    """TF32 off for ``"fp32"``, on for ``"tf32"``, the caller's flags for ``"bf16"``: what a backward pass runs in."""
    return nullcontext() if precision == "bf16" else tf32(precision == "tf32")


def forward_context(precision: Resolved, device: torch.device) -> AbstractContextManager:
    """What a model's forward runs in: bf16 autocast on ``device``'s type for ``"bf16"``, else ``tf32_context``."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return tf32_context(precision)


def memory_format(x: Tensor, precision: Resolved) -> Tensor:
    """``x`` in channels_last for ``"bf16"`` (a (B, C, H, W) tensor), unchanged otherwise."""
    return x.contiguous(memory_format=torch.channels_last) if precision == "bf16" else x


__all__ = [
    "PRECISIONS",
    "Precision",
    "Resolved",
    "check_precision",
    "forward_context",
    "memory_format",
    "native_bf16",
    "native_tf32",
    "resolve_precision",
    "tf32",
    "tf32_context",
]
