"""Timing and memory helpers: interleaved repetitions, within-round ratios, peak RSS, the machine.

The machine may be shared, so contenders are timed in alternating rounds (A, B, A, B, ...; the
order reversed every other round) and a ratio is the median of the ratios measured inside each
round, where both sides saw the same load.
"""

from __future__ import annotations

import ctypes
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch


def synchronize(device: str) -> None:
    """Wait for queued GPU work so a timer sees the whole call."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: str = "cpu") -> float:
    """Seconds one call of ``fn`` takes, GPU work included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def interleaved(
    contenders: Mapping[str, Callable[[], object]],
    rounds: int,
    warmup: int = 1,
    device: str = "cpu",
) -> dict[str, list[float]]:
    """Seconds per call of each contender, ``rounds`` samples each, after ``warmup`` untimed rounds.

    Each round calls every contender once; odd rounds run them in reverse order, so no contender
    always follows the same neighbour.
    """
    if rounds < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1 and warmup >= 0, got rounds={rounds}, warmup={warmup}")
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(warmup + rounds):
        order = names if index % 2 == 0 else names[::-1]
        for name in order:
            seconds = time_call(contenders[name], device)
            if index >= warmup:
                times[name].append(seconds)
    return times


def ratio(times: Mapping[str, list[float]], numerator: str, denominator: str) -> float:
    """Median over rounds of ``numerator``'s time divided by ``denominator``'s in the same round."""
    return statistics.median(a / b for a, b in zip(times[numerator], times[denominator], strict=True))


def ratio_range(times: Mapping[str, list[float]], numerator: str, denominator: str) -> tuple[float, float]:
    """The lowest and highest within-round ratio: how much the load moved the ratio."""
    ratios = [a / b for a, b in zip(times[numerator], times[denominator], strict=True)]
    return min(ratios), max(ratios)


def rss_mib(field: str = "VmRSS") -> float:
    """This process's resident memory (``VmRSS``) or its high-water mark (``VmHWM``), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found in /proc/self/status (Linux only)")


def reset_peak_rss() -> None:
    """Reset this process's RSS high-water mark to the current RSS (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def release_free_heap() -> None:
    """Hand memory that earlier work freed back to the OS (glibc), so it cannot hide a new peak."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def peak_memory(fn: Callable[[], object], device: str = "cpu") -> dict[str, float]:
    """Run ``fn`` once and report peak RSS (absolute and above the RSS before the call), in MiB.

    On a GPU it also reports ``torch.cuda.max_memory_allocated`` during the call. Call it in a
    fresh process so memory freed by earlier work does not hide this call's peak.
    """
    synchronize(device)
    release_free_heap()
    before = rss_mib()
    reset_peak_rss()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
        gpu_before = torch.cuda.memory_allocated(device)
    fn()
    synchronize(device)
    peak = rss_mib("VmHWM")
    result = {"peak_rss_mib": peak, "rss_increase_mib": max(peak - before, 0.0)}
    if device.startswith("cuda"):
        gpu_peak = torch.cuda.max_memory_allocated(device)
        result["gpu_peak_mib"] = gpu_peak / 2**20
        result["gpu_increase_mib"] = (gpu_peak - gpu_before) / 2**20
    return result


def bf16_flags() -> dict[str, bool]:
    """Whether /proc/cpuinfo lists AMX (``amx_bf16``) and AVX512-BF16, and what ``precision="auto"`` picks."""
    from lafam_utils.precision import cpu_flags, resolve_precision

    flags = cpu_flags()
    return {
        "amx_bf16": "amx_bf16" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "auto_on_cpu": resolve_precision("auto", "cpu"),
    }


def machine(device: str) -> dict[str, object]:
    """The CPU model, core count, threads, torch version and device a result was measured on."""
    cpu = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        cpu = models[0] if models else cpu
    info: dict[str, object] = {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info
