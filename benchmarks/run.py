"""Measure speed and memory of lafam_utils against its peers; write bench.json and bench.md.

    make bench                                   # CPU, default sizes (< 10 minutes on 2 cores)
    make bench BENCH_ARGS="--large"              # larger batches / more RELAX masks
    make bench BENCH_ARGS="--device cuda"        # GPU: synchronised timings, GPU memory, throughput
    make bench BENCH_ARGS="--device cuda --cases gpu"   # only the GPU cases (no peers needed)
    python benchmarks/run.py --tiny --cases gpu --no-memory   # the GPU cases at a toy size on the CPU
    make bench BENCH_ARGS="--threads 1"          # one torch thread: steady times on a shared machine
    make bench BENCH_ARGS="--cases bf16 shared end-to-end"   # only cases whose id starts so
    make bench BENCH_ARGS="--relax-masks 256"    # fewer RELAX masks in the paper-sized cases (default 2048)

Each case times its contenders in interleaved rounds after a warm-up and reports within-round
ratios; the peak memory of each contender is measured once in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import report, timing  # noqa: E402
from benchmarks.cases import Case, Settings  # noqa: E402

CASE_MODULES = (
    "lafam", "gradcam", "relax", "metrics", "end_to_end", "precision", "shared", "eigencam", "loading", "gpu", "peers",
    "lrp", "sanity",
)


def all_cases(settings: Settings, modules: tuple[str, ...] = CASE_MODULES) -> list[Case]:
    """The cases of ``modules`` (under benchmarks/cases), each tagged with its module's name."""
    cases = []
    for name in modules:
        for case in importlib.import_module(f"benchmarks.cases.{name}").cases(settings):
            case.module = name
            cases.append(case)
    return cases


def measure_memory(case: Case, settings: Settings, names: list[str]) -> dict[str, dict[str, float]]:
    """Peak memory of each contender, each measured by ``--probe`` in a fresh Python process."""
    memory = {}
    for name in names:
        command = [sys.executable, __file__, "--probe", case.module, case.id, name, "--device", settings.device]
        command += ["--large"] * settings.large + ["--tiny"] * settings.tiny
        command += ["--threads", str(torch.get_num_threads()), "--relax-masks", str(settings.relax_masks)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"memory probe of {case.id}/{name} failed:\n{done.stderr[-2000:]}")
        memory[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return memory


def run_case(case: Case, settings: Settings, rounds: int | None, memory: bool) -> dict[str, Any]:
    """Time one case's contenders, compute its ratios and (optionally) their peak memory."""
    result: dict[str, Any] = {"id": case.id, "title": case.title, "items": case.items, "notes": case.notes}
    if case.targets_note:
        result["targets_note"] = case.targets_note
    try:
        contenders = case.build()
        times = timing.interleaved(contenders, rounds or case.rounds, warmup=case.warmup, device=settings.device)
        del contenders
        result["rounds"] = rounds or case.rounds
        result["times_s"] = times
        result["median_s"] = {name: statistics.median(t) for name, t in times.items()}
        if case.projections:
            result["projected_s"] = {
                name: {label: seconds / case.items * count for label, count in case.projections.items()}
                for name, seconds in result["median_s"].items()
            }
        result["comparisons"] = [
            {
                "label": c.label,
                "numerator": c.numerator,
                "denominator": c.denominator,
                "ratio": (value := timing.ratio(times, c.numerator, c.denominator)),
                "ratio_range": timing.ratio_range(times, c.numerator, c.denominator),
                "target": c.target,
                "op": c.op,
                "met": c.met(value),
            }
            for c in case.comparisons
        ]
        if memory:
            result["memory"] = measure_memory(case, settings, list(times))
    except Exception as error:  # noqa: BLE001 - a missing module or a failing peer is reported, not fatal
        traceback.print_exc()
        result["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return result


def probe(module: str, case_id: str, name: str, settings: Settings) -> None:
    """Build one case in this (fresh) process, run one contender once, print its peak memory."""
    settings = dataclasses.replace(settings, probe=True)
    (case,) = [case for case in all_cases(settings, (module,)) if case.id == case_id]
    contenders = case.build()
    print(json.dumps(timing.peak_memory(contenders[name], settings.device)))


def write(result: dict[str, Any], folder: Path) -> str:
    """Write bench.json and bench.md into ``folder``; return the Markdown."""
    return report.write_record(folder, "bench", result, report.markdown(result))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:index]")
    parser.add_argument("--large", action="store_true", help="larger batches and more RELAX masks")
    parser.add_argument("--cases", nargs="*", default=None, help="only cases whose id starts with one of these")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per case (default: per case)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--relax-masks", type=int, default=2048, help="RELAX masks in the paper-sized cases (default 2048)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the per-contender memory subprocesses")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="folder for bench.json/.md")
    parser.add_argument("--tiny", action="store_true", help="toy sizes: check that the cases run (any device)")
    parser.add_argument("--probe", nargs=3, metavar=("MODULE", "CASE", "CONTENDER"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    settings = Settings(device=args.device, large=args.large, tiny=args.tiny, relax_masks=args.relax_masks)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if settings.cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for, but torch sees no CUDA device")
    if args.probe:
        probe(*args.probe, settings)
        return {}
    known = all_cases(settings)
    cases = [c for c in known if args.cases is None or c.id.startswith(tuple(args.cases))]
    if not cases:
        raise SystemExit(f"no case id starts with {args.cases}; cases: {', '.join(c.id for c in known)}")
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    load_before = os.getloadavg()
    result: dict[str, Any] = {
        "command": report.command_line(__file__, argv),
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": timing.machine(settings.device),
        "settings": {"device": settings.device, "large": settings.large, "tiny": settings.tiny,
                     "relax_masks": settings.relax_masks},
        "cpu_flags": timing.bf16_flags(),
        "cases": [],
    }
    for case in cases:
        print(f"[{time.perf_counter() - clock:6.0f} s] {case.id}: {case.title}", flush=True)
        result["cases"].append(run_case(case, settings, args.rounds, memory=not args.no_memory))
        result["complete"] = len(result["cases"]) == len(cases)
        result["seconds"] = time.perf_counter() - clock
        result["load_average_1min"] = {"start": load_before[0], "end": os.getloadavg()[0]}
        table = write(result, args.out)  # after every case, so an interrupted run keeps what it measured
    print(table)
    return result


if __name__ == "__main__":
    main()
