"""Where one batch of the paper's six pairs spends its time besides RELAX's masked forwards.

    python benchmarks/profile_paper.py --images 4 --masks 256 --precision bf16 --threads 1
    python benchmarks/profile_paper.py --device cuda --images 16 --masks 2048 --precision bf16

Runs ``lu.evaluate`` on one batch of synthetic 224x224 images with the paper's six pairs
(random-init ResNet50, SimCLR and SwAV; RELAX with ``--masks`` masks) under ``torch.profiler``
and prints the operators by self CPU time grouped into the networks' forwards, casts and layout
copies, RELAX's masks and masking, and the rest (the running statistics, Grad-CAM's and LaFAM's
maps, the metrics), with the time outside operators (Python, the store, the run identity), and
times the run identity's weights hashing against hashing one tensor at a time. On CUDA the same
groups by the device's kernel time, and the share of the wall time the device was busy. The first
call (warm-up) is not profiled.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lafam_utils as lu  # noqa: E402
from benchmarks.cases.shared import paper_models, synthetic_items  # noqa: E402
from benchmarks.report import command_line  # noqa: E402
from lafam_utils.evaluation import run_store  # noqa: E402
from lafam_utils.paper import PAPER_PAIRS  # noqa: E402

GROUPS = {
    "networks' forward (convolution, batch norm, ReLU, pooling, residual add, fc)":
        ("convolution", "batch_norm", "clamp_min", "max_pool", "adaptive_avg_pool", "add_", "addmm", "mean"),
    "casts and layout copies (autocast, channels_last)": ("copy_", "_to_copy"),
    "RELAX's masks and masking": ("upsample_nearest2d", "aten::mul"),
}
"""Operator name fragments of each group; operators of no group count as "everything else"."""


def group_of(name: str) -> str:
    return next((group for group, parts in GROUPS.items() if any(part in name for part in parts)), "everything else")


def sequential_fingerprint(model: torch.nn.Module) -> str:
    """The weights' fingerprint hashed one tensor at a time through a bytes copy, as a baseline for
    ``run_store.weights_fingerprint`` (same digest)."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(f"{key}:{value.dtype}:{tuple(value.shape)}:".encode())
        flat = value.detach().to("cpu").contiguous().reshape(-1)
        digest.update(hashlib.sha256(flat.view(torch.uint8).numpy().tobytes()).hexdigest().encode())
    return digest.hexdigest()


def run_once(items: list[dict], models: dict, masks: int, precision: str, device: str) -> float:
    """Seconds of one ``evaluate`` of ``items`` (one batch) with the six pairs."""
    with tempfile.TemporaryDirectory(prefix="lafam-profile-") as folder:
        start = time.perf_counter()
        lu.evaluate(items, PAPER_PAIRS, results_dir=folder, models=models, batch_size=len(items), progress=False,
                    num_workers=0, device=device, precision=precision, explainer_kwargs={"relax": {"n_masks": masks}},
                    dataset_name="synthetic", k=1000)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start


def grouped(events: list, seconds_of: Callable[[object], float]) -> dict[str, float]:
    """Seconds per group of ``GROUPS`` (and "everything else"), by ``seconds_of(event)``."""
    groups: dict[str, float] = {}
    for event in events:
        groups[group_of(event.key)] = groups.get(group_of(event.key), 0.0) + seconds_of(event)
    return groups


def print_groups(groups: dict[str, float], seconds: float) -> None:
    for group, group_seconds in sorted(groups.items(), key=lambda item: -item[1]):
        print(f"  {group}: {group_seconds:.2f} s ({group_seconds / seconds:.1%} of the wall time)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--masks", type=int, default=256)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", type=int, default=25, help="operators listed")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = paper_models(args.device)
    items = synthetic_items(args.images, 224)
    run_once(items, models, args.masks, args.precision, args.device)  # warm-up: fingerprint cache, kernels
    on_cuda = torch.device(args.device).type == "cuda"
    activities = [torch.profiler.ProfilerActivity.CPU] + [torch.profiler.ProfilerActivity.CUDA] * on_cuda
    with torch.profiler.profile(activities=activities) as profiler:
        seconds = run_once(items, models, args.masks, args.precision, args.device)
    events = profiler.key_averages()
    total = sum(event.self_cpu_time_total for event in events) / 1e6
    start = time.perf_counter()
    baseline = [sequential_fingerprint(model) for model in models.values()]
    middle = time.perf_counter()
    threaded = [run_store.weights_fingerprint(model) for model in models.values()]
    end = time.perf_counter()
    megabytes = sum(v.numel() * v.element_size() for m in models.values() for v in m.state_dict().values()) / 1e6
    print(f"command: {command_line(__file__, argv)}")
    print(f"one batch of {args.images} images on {args.device}, six pairs, RELAX {args.masks} masks, "
          f"{args.precision}, {torch.get_num_threads()} thread(s): {seconds:.2f} s wall, {total:.2f} s in operators")
    print_groups(grouped(events, lambda event: event.self_cpu_time_total / 1e6), seconds)
    print(f"  outside operators (Python, the store, the run identity): {seconds - total:.2f} s "
          f"({(seconds - total) / seconds:.1%})")
    if on_cuda:
        kernels = grouped(events, lambda event: event.self_device_time_total / 1e6)
        busy = sum(kernels.values())
        print(f"{torch.cuda.get_device_name(args.device)}: kernels {busy:.2f} s, busy {busy / seconds:.1%} of the "
              "wall time; by kernel group:")
        print_groups(kernels, seconds)
    print(f"run identity, SHA-256 of the three models' weights ({megabytes:.0f} MB) per evaluate call: "
          f"{middle - start:.2f} s one tensor at a time through a copy, {end - middle:.2f} s as evaluate does it "
          f"(threads, in place); same digests: {baseline == threaded}")
    print(events.table(sort_by="self_device_time_total" if on_cuda else "self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
