"""Where one batch of the paper's six pairs spends its time besides RELAX's masked forwards.

    python benchmarks/profile_paper.py --images 4 --masks 256 --precision bf16 --threads 1

Runs ``lu.evaluate`` on one batch of synthetic 224x224 images with the paper's six pairs
(random-init ResNet50, SimCLR and SwAV; RELAX with ``--masks`` masks) under ``torch.profiler``
and prints the operators by self CPU time, and the share of the batch spent in the encoders'
forwards (the convolutions, batch norms, ReLUs, poolings and additions of the ResNet50s) against
the rest: mask generation, masking, the running statistics, Grad-CAM and LaFAM, the metrics and
the store. The first call (warm-up) is not profiled.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lafam_utils as lu  # noqa: E402
from benchmarks.cases.shared import paper_models, synthetic_items  # noqa: E402
from lafam_utils.paper import PAPER_PAIRS  # noqa: E402

FORWARD_OPS = ("conv", "batch_norm", "relu", "max_pool", "adaptive_avg_pool", "addmm", "mkldnn", "add_")
"""Operator name fragments of a ResNet50 forward (aten::convolution, mkldnn_convolution, ...)."""


def run_once(items: list[dict], models: dict, masks: int, precision: str) -> float:
    """Seconds of one ``evaluate`` of ``items`` (one batch) with the six pairs."""
    with tempfile.TemporaryDirectory(prefix="lafam-profile-") as folder:
        start = time.perf_counter()
        lu.evaluate(items, PAPER_PAIRS, results_dir=folder, models=models, batch_size=len(items), progress=False,
                    num_workers=0, precision=precision, explainer_kwargs={"relax": {"n_masks": masks}},
                    dataset_name="synthetic", k=1000)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--masks", type=int, default=256)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", type=int, default=25, help="operators listed")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = paper_models("cpu")
    items = synthetic_items(args.images, 224)
    run_once(items, models, args.masks, args.precision)  # warm-up: weights fingerprint cache, oneDNN kernels
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        seconds = run_once(items, models, args.masks, args.precision)
    events = profiler.key_averages()
    total = sum(event.self_cpu_time_total for event in events) / 1e6
    forward = sum(e.self_cpu_time_total for e in events if any(op in e.key for op in FORWARD_OPS)) / 1e6
    print(f"command: python benchmarks/profile_paper.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"one batch of {args.images} images, six pairs, RELAX {args.masks} masks, {args.precision}: "
          f"{seconds:.2f} s wall; profiled operators {total:.2f} s, of which the networks' forward operators "
          f"{forward:.2f} s ({forward / total:.0%}), the rest {total - forward:.2f} s ({1 - forward / total:.0%})")
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
