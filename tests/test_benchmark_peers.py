"""Smoke test of the label-free peers' benchmark cases at a tiny size: they build, run and compare."""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import run
from benchmarks.cases import Settings, peers


def test_peer_cases_time_every_method_beside_lafam_and_pytorch_grad_cam(tmp_path):
    result = run.main(["--tiny", "--cases", "peers", "--rounds", "1", "--no-memory", "--out", str(tmp_path)])
    layer, repeat = result["cases"]
    assert "error" not in layer and "error" not in repeat
    names = {"LaFAM", "EigenCAM", *peers.PEERS, *(f"pytorch-grad-cam {name}" for name in peers.PEERS)}
    assert set(layer["times_s"]) == names
    labels = {c["label"] for c in layer["comparisons"]}
    assert {f"{name} / {other}" for name in peers.PEERS for other in ("LaFAM", "pytorch-grad-cam")} <= labels
    assert set(repeat["times_s"]) == {"REPEAT", "LaFAM", "official-shape loop"}
    assert all(math.isfinite(c["ratio"]) and c["ratio"] > 0 for case in (layer, repeat) for c in case["comparisons"])
    assert "REPEAT / official-shape loop" in (tmp_path / "bench.md").read_text()


def test_the_official_shape_loop_computes_repeats_probability():
    torch = peers.torch
    enc = peers.encoder("cpu")
    x = peers.images(1, "cpu", 32)
    probability = peers.official_repeat_loop(enc, x, n_repeats=2, n_masks=4, batch_size=4)
    assert probability.shape == (1, 7, 7) and (probability >= 0).all() and (probability <= 1).all()
    assert torch.isfinite(probability).all() and probability.amax() > 0
    assert [c.id for c in peers.cases(Settings(tiny=True))] == ["peers-layer", "peers-repeat"]
