"""Every measurement the performance page leaves for a GPU, in one run (docs/performance.md, "Left for a GPU").

    OMP_NUM_THREADS=1 python benchmarks/gpu_checks.py                  # on a CUDA machine: about 8 minutes
    python benchmarks/gpu_checks.py --tiny --device cpu --out /tmp/x   # the same steps at toy sizes

Writes into ``--out`` (default benchmarks/results/gpu): ``decoding_cuda.{json,md}`` (the keep-or-drop
check of device decoding, 300 images), ``bench.{json,md}`` (the GPU and loading cases of
``benchmarks/run.py``) and ``profile_paper.txt`` (one batch of the six pairs at 2048 masks in bf16
under the profiler). Each step's command is printed before it runs; a step that fails is reported
and the next one still runs. Nothing here imports Captum, pytorch-grad-cam, Quantus or zennit.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import decoding_agreement, profile_paper, run  # noqa: E402


def steps(device: str, out: Path, tiny: bool) -> list[tuple[str, Callable[[list[str]], object], list[str]]]:
    """(script, its main, its arguments) of each measurement."""
    decoding = ["--images", "8", "--size", "64", "--no-resnet50"] if tiny else ["--images", "300"]
    bench = ["--tiny", "--rounds", "1"] if tiny else []
    profile = ["--images", "1", "--masks", "4", "--rows", "5"] if tiny else ["--images", "16", "--masks", "2048"]
    cases = ["--cases", "gpu", "loading", "--no-memory"]
    return [
        ("decoding_agreement.py", decoding_agreement.main, ["--device", device, *decoding, "--out", str(out)]),
        ("run.py", run.main, ["--device", device, *cases, *bench, "--out", str(out)]),
        ("profile_paper.py", profile_paper.main, ["--device", device, "--precision", "bf16", *profile]),
    ]


def main(argv: list[str] | None = None) -> list[str]:
    """Run every step; return the scripts that failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu")
    parser.add_argument("--tiny", action="store_true", help="toy sizes, to check the steps on any device")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for script, step, arguments in steps(args.device, args.out, args.tiny):
        print(f"\n$ python benchmarks/{script} {' '.join(arguments)}", flush=True)
        start = time.perf_counter()
        try:
            if script == "profile_paper.py":
                with (args.out / "profile_paper.txt").open("w") as text, contextlib.redirect_stdout(text):
                    step(arguments)
                print((args.out / "profile_paper.txt").read_text())
            else:
                step(arguments)
        except Exception:  # noqa: BLE001 - one failed measurement must not cost the others
            traceback.print_exc()
            failed.append(script)
        print(f"[{script}: {time.perf_counter() - start:.0f} s]", flush=True)
    print(f"\nfailed: {', '.join(failed)}" if failed else "\nevery step ran")
    return failed


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
