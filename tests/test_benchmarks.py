"""Smoke test of the benchmark harness: timing order, ratios, memory probe, report; never timings."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import report, run, timing  # noqa: E402
from benchmarks.cases import Comparison, Settings  # noqa: E402


def test_interleaved_alternates_order_and_skips_warmup():
    calls = []
    contenders = {name: (lambda name=name: calls.append(name)) for name in "ABC"}
    times = timing.interleaved(contenders, rounds=3, warmup=1)
    assert calls == list("ABC" "CBA" "ABC" "CBA")
    assert {name: len(t) for name, t in times.items()} == {"A": 3, "B": 3, "C": 3}
    assert all(t >= 0 for samples in times.values() for t in samples)


def test_interleaved_rejects_no_rounds():
    with pytest.raises(ValueError, match="rounds"):
        timing.interleaved({"A": lambda: None}, rounds=0)


def test_ratio_is_the_median_of_within_round_ratios():
    # round 2 is slow for both (a loaded machine): the within-round ratio stays 2.
    times = {"a": [2.0, 20.0, 2.2], "b": [1.0, 10.0, 1.0]}
    assert timing.ratio(times, "a", "b") == pytest.approx(2.0)
    assert timing.ratio_range(times, "a", "b") == pytest.approx((2.0, 2.2))
    with pytest.raises(ValueError):
        timing.ratio({"a": [1.0, 2.0], "b": [1.0]}, "a", "b")


PEAK_PROBE = """
import json
from benchmarks import timing
result = timing.peak_memory(lambda: len(b"\\x01" * (64 * 2**20)))
print(json.dumps({**result, "after_mib": timing.rss_mib()}))
"""


def test_peak_memory_sees_an_allocation_freed_before_it_returns():
    """In a fresh process, as ``peak_memory`` asks: a long test session's heap can keep freed pages."""
    probe = subprocess.run([sys.executable, "-c", PEAK_PROBE], capture_output=True, text=True, check=True, cwd=REPO)
    result = json.loads(probe.stdout)
    assert result["rss_increase_mib"] >= 0.9 * 64
    assert result["peak_rss_mib"] >= result["rss_increase_mib"]
    assert result["after_mib"] < result["peak_rss_mib"]


def test_comparison_checks_its_target_in_the_stated_direction():
    at_most = Comparison("a", "b", "a / b", target=1.05)
    at_least = Comparison("a", "b", "speed-up", target=20, op=">=")
    assert at_most.met(1.05) and not at_most.met(1.06)
    assert at_least.met(20.0) and not at_least.met(19.9)
    assert Comparison("a", "b", "context").met(3.0) is None


def test_markdown_reports_misses_and_cases_that_could_not_run():
    result = {
        "command": "python benchmarks/run.py",
        "started": "2026-01-01 00:00 UTC",
        "seconds": 1.0,
        "complete": True,
        "machine": {"cpu": "CPU", "cores": 2, "torch_threads": 2, "torch": "2", "device": "cpu"},
        "load_average_1min": {"start": 1.0, "end": 2.0},
        "cases": [
            {
                "title": "LaFAM, batch 1",
                "items": 1,
                "notes": {},
                "median_s": {"LaFAM": 0.2, "forward": 0.1},
                "comparisons": [
                    {"label": "LaFAM / forward", "numerator": "LaFAM", "denominator": "forward", "ratio": 2.0,
                     "ratio_range": [1.5, 2.5], "target": 1.05, "op": "<=", "met": False},
                ],
                "memory": {"LaFAM": {"peak_rss_mib": 500.0, "rss_increase_mib": 40.0}},
            },
            {"title": "RELAX", "items": 1, "notes": {}, "error": "ImportError: no module"},
        ],
    }
    table = report.markdown(result)
    assert "| LaFAM, batch 1 | LaFAM / forward | 2.00x (1.50-2.50) | <= 1.05 | **no** | 200.0 ms vs 100.0 ms |" in table
    assert "| RELAX | not run: ImportError: no module |" in table
    assert "500 (+40)" in table


def test_one_case_end_to_end_at_a_tiny_size(tmp_path):
    result = run.main(["--tiny", "--cases", "lafam-b1", "--rounds", "2", "--no-memory", "--out", str(tmp_path)])
    (case,) = result["cases"]
    assert "error" not in case
    assert set(case["times_s"]) == {"forward to layer4", "LaFAM"}
    assert all(len(t) == 2 for t in case["times_s"].values())
    (comparison,) = case["comparisons"]
    assert math.isfinite(comparison["ratio"]) and comparison["ratio"] > 0
    assert comparison["met"] == (comparison["ratio"] <= 1.05)
    written = json.loads((tmp_path / "bench.json").read_text())
    assert written["machine"]["cores"] >= 1 and written["machine"]["device"] == "cpu"
    assert "LaFAM / forward to layer4" in (tmp_path / "bench.md").read_text()


def test_memory_probe_runs_a_contender_in_a_fresh_process():
    settings = Settings(tiny=True)
    (case,) = [c for c in run.all_cases(settings) if c.id == "lafam-b1"]
    memory = run.measure_memory(case, settings, ["LaFAM"])
    assert memory["LaFAM"]["peak_rss_mib"] > memory["LaFAM"]["rss_increase_mib"] >= 0


def test_a_failing_case_is_recorded_not_raised():
    from benchmarks.cases import Case

    def broken():
        raise ImportError("peer not installed")

    result = run.run_case(Case("x", "X", broken, []), Settings(tiny=True), rounds=1, memory=False)
    assert result["error"] == "ImportError: peer not installed"


def test_an_unknown_case_id_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no case id starts with.*lafam-b1"):
        run.main(["--tiny", "--cases", "no-such-case", "--no-memory", "--out", str(tmp_path)])


def test_gpu_explainer_case_records_how_far_each_precision_moves_the_maps():
    """The GPU explainer case built here on the CPU at the toy size (bf16 autocast works there too)."""
    from benchmarks.cases import gpu

    notes: dict[str, object] = {}
    contenders = gpu._explainer_contenders("bf16", Settings(tiny=True), notes)
    assert set(contenders) == {"forward", "LaFAM", "Grad-CAM", "EigenCAM"}
    assert set(notes) == {f"{title}: max |map - strict fp32 map|" for title in ("LaFAM", "Grad-CAM", "EigenCAM")}
    assert 0 < notes["LaFAM: max |map - strict fp32 map|"] <= 1
    assert contenders["LaFAM"]().shape == (2, 64, 64)
    assert gpu.cases(Settings()) == []  # on a CPU only at the toy size
    ids = [case.id for case in gpu.cases(Settings(tiny=True))]
    assert ids == ["gpu-forward", "gpu-explainers-fp32", "gpu-explainers-tf32", "gpu-explainers-bf16",
                   "gpu-relax-tf32", "gpu-relax-bf16", "gpu-paper", "gpu-jpeg"]


PEERS = ("captum", "pytorch_grad_cam", "quantus")
WITHOUT_PEERS = """
import sys
for name in {peers}:
    sys.modules[name] = None  # import captum etc. raises ImportError
sys.path.insert(0, {root!r})
from benchmarks import run
from benchmarks.cases import Settings
ids = [case.id for case in run.all_cases(Settings(tiny=True))]
assert "gradcam" in ids and "gpu-paper" in ids, ids
result = run.main(["--tiny", "--device", "cpu", "--cases", *{cases}, "--no-memory", "--rounds", "1", "--out", {out!r}])
assert result["complete"] and not [case["id"] for case in result["cases"] if case.get("error")], result["cases"]
assert not [name for name in {peers} if sys.modules[name] is not None]
print("cases:", " ".join(case["id"] for case in result["cases"]))
"""


def run_without_peers(cases: list[str], out: Path) -> str:
    """Run benchmark cases in a fresh interpreter where Captum, pytorch-grad-cam and Quantus cannot be imported."""
    root = str(Path(__file__).resolve().parent.parent)
    code = WITHOUT_PEERS.format(peers=PEERS, root=root, cases=cases, out=str(out))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_benchmark_cases_import_and_a_gpu_case_runs_without_the_peers(tmp_path):
    assert "cases: gpu-explainers-fp32" in run_without_peers(["gpu-explainers-fp32"], tmp_path)


@pytest.mark.slow
def test_every_gpu_eigencam_and_loading_case_runs_at_the_toy_size_on_the_cpu_without_the_peers(tmp_path):
    stdout = run_without_peers(["gpu", "eigencam", "loading"], tmp_path)
    assert all(name in stdout for name in ("gpu-forward", "gpu-paper", "gpu-jpeg", "eigencam-activations", "loading"))
    result = json.loads((tmp_path / "bench.json").read_text())
    paper = next(case for case in result["cases"] if case["id"] == "gpu-paper")
    assert set(paper["projected_s"]["evaluate bf16"]) == {"VOC (753 images)", "ImageNet-S (11,294 images)"}
    assert "projected VOC (753 images)" in (tmp_path / "bench.md").read_text()


def test_precision_and_shared_forward_cases_state_their_targets():
    cases = {case.id: case for case in run.all_cases(Settings(tiny=True))}
    (relax,) = cases["bf16-relax"].comparisons
    assert (relax.numerator, relax.denominator, relax.target, relax.op) == ("bf16", "fp32", 0.35, "<=")
    shared = cases["shared-resnet50"].comparisons[0]
    assert (shared.numerator, shared.denominator, shared.target) == ("together", "separately", 0.6)
    assert [(c.denominator, c.target, c.op) for c in cases["end-to-end-paper"].comparisons] == [
        ("evaluate fp32", 3, ">="), ("evaluate bf16", 3, ">=")
    ]
    assert {"bf16-lafam", "bf16-gradcam"} <= set(cases)


def test_memory_probe_caps_relax_masks_and_report_shows_cpu_flags():
    from benchmarks.cases import probe_masks

    assert probe_masks(Settings(probe=True), 2048) == 128 and probe_masks(Settings(), 2048) == 2048
    flags = timing.bf16_flags()
    assert set(flags) == {"amx_bf16", "avx512_bf16", "auto_on_cpu"} and flags["auto_on_cpu"] in ("fp32", "bf16")
    text = report._flags({"amx_bf16": True, "avx512_bf16": False, "auto_on_cpu": "bf16"})
    assert "AMX (amx_bf16) yes, AVX512-BF16 no" in text and "bf16" in text


def test_lafam_lrp_case_times_every_contender_against_grad_cam_plus_20_percent(tmp_path):
    result = run.main(["--tiny", "--cases", "lrp-shapes", "--rounds", "1", "--no-memory", "--out", str(tmp_path)])
    (case,) = result["cases"]
    contenders = {"LaFAM", "Grad-CAM", "LayerCAM", "LaFAM-LRP", "LaFAM-LRP EpsilonPlusFlat"}
    contenders.add("forward + backward to the pixels")
    assert "error" not in case and set(case["times_s"]) == contenders
    target = next(c for c in case["comparisons"] if c["label"] == "LaFAM-LRP / Grad-CAM")
    assert target["target"] == 1.2 and target["met"] == (target["ratio"] <= 1.2)
    assert "lrp-resnet50" in [c.id for c in run.all_cases(Settings(tiny=True))]


def test_the_sanity_cases_compare_with_quantus_against_a_stated_target():
    cases = {case.id: case for case in run.all_cases(Settings(tiny=True))}
    peers = {"sanity-road": "Quantus ROAD", "sanity-deletion": "Quantus PixelFlipping", "sanity-mprt": "Quantus MPRT"}
    for case_id, peer in peers.items():
        comparison, floor = cases[case_id].comparisons
        assert floor.numerator == "torch" and floor.target is None
        stated = (comparison.numerator, comparison.denominator, comparison.target, comparison.op)
        assert stated == (peer, "torch", 20, ">=")


@pytest.mark.slow
def test_the_sanity_cases_run_at_the_toy_size(tmp_path):
    result = run.main(["--tiny", "--cases", "sanity", "--rounds", "1", "--no-memory", "--out", str(tmp_path)])
    assert [case["id"] for case in result["cases"]] == ["sanity-road", "sanity-deletion", "sanity-mprt"]
    assert all("error" not in case and math.isfinite(case["comparisons"][0]["ratio"]) for case in result["cases"])


def test_decoding_agreement_keeps_cpu_decoding_and_records_what_it_compared(tmp_path):
    from benchmarks import decoding_agreement

    argv = ["--images", "6", "--size", "48", "--batch", "4", "--no-resnet50", "--out", str(tmp_path)]
    result = decoding_agreement.main(argv)
    assert result["images"] == 6 and result["keep"]
    assert result["pixels"]["shapes_equal"] and result["pixels"]["max"] == 0  # on the CPU: Pillow's pixels
    assert result["metrics"]["rows"] == 12 and result["metrics"]["errors"] == 0
    assert result["metrics"]["largest_difference"] == 0
    assert set(result["metrics"]["abs_difference"]) == {"shapes-supervised / lafam", "shapes-supervised / gradcam"}
    assert json.loads((tmp_path / "decoding_cpu.json").read_text())["pixels"] == result["pixels"]
    assert "**Verdict: keep**" in (tmp_path / "decoding_cpu.md").read_text()


@pytest.mark.parametrize(
    "change", [{"shapes_equal": False}, {"p99.9": 2.5}, {"mean": 0.6}, {"largest_difference": 0.1}]
)
def test_decoding_is_dropped_when_any_condition_fails(change):
    from benchmarks.decoding_agreement import verdict

    pixels = {"shapes_equal": True, "mean": 0.1, "p99.9": 1.0, "max": 3.0}
    metrics = {"largest_difference": 0.05}
    assert verdict(pixels, metrics)
    for part in (pixels, metrics):
        part.update({key: value for key, value in change.items() if key in part})
    assert not verdict(pixels, metrics)


@pytest.mark.slow
def test_the_paper_profile_groups_the_time_and_checks_the_weights_digest(capsys):
    from benchmarks import profile_paper

    profile_paper.main(["--images", "1", "--masks", "4", "--precision", "fp32", "--rows", "3"])
    out = capsys.readouterr().out
    assert "one batch of 1 images on cpu" in out and "networks' forward" in out
    assert "same digests: True" in out


@pytest.mark.slow
def test_the_gpu_checks_run_every_step_at_the_toy_size(tmp_path):
    from benchmarks import gpu_checks

    assert gpu_checks.main(["--tiny", "--device", "cpu", "--out", str(tmp_path)]) == []
    assert json.loads((tmp_path / "decoding_cpu.json").read_text())["keep"]
    cases = {case["id"] for case in json.loads((tmp_path / "bench.json").read_text())["cases"]}
    assert {"gpu-jpeg", "gpu-paper", "loading-slow-read", "loading-jpeg"} <= cases
    assert "six pairs" in (tmp_path / "profile_paper.txt").read_text()


def test_the_rescaling_study_keeps_the_function_and_grad_cam_and_moves_lafam(tmp_path):
    from benchmarks import cnn_rescaling

    result = cnn_rescaling.main(["--selection-n", "8", "--report-n", "8", "--spreads", "100", "--out", str(tmp_path)])
    assert set(result["scales"]) == {"towards the object, 100", "towards the background, 100"} | {
        f"random seed {seed}, 100" for seed in (0, 1, 2)
    }
    assert all(0.01 - 1e-6 <= min(s) and max(s) <= 100 + 1e-4 for s in result["scales"].values())
    assert all(check["largest_relative_logit_change"] < 1e-5 for check in result["function"].values())
    assert max(result["map_change"]["gradcam"].values()) < 1e-5
    assert result["map_change"]["lafam"]["towards the background, 100"] > 0.1
    assert "## LaFAM" in (tmp_path / "cnn_rescaling.md").read_text()
    assert (tmp_path / "cnn_rescaling.png").stat().st_size > 0
