"""One forward per model: every combination of explainers gives exactly the separate calls' maps."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import pytest
import torch
import torchvision
from evaluation_toy import CLASS_NAMES, ToyDataset, ToyNet, toy_metrics

import lafam_utils as lu
from lafam_utils.explainers.shared_forward import explain_together, shareable


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=6).eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(3, 3, 40, 48, generator=torch.Generator().manual_seed(2))


def make(net, precision):
    return {
        "lafam": lu.LaFAM(net, precision=precision),
        "eigencam": lu.EigenCAM(net, precision=precision),
        "gradcam": lu.GradCAM(net, precision=precision),
        "relax": lu.RELAX(net, n_masks=3, precision=precision),
        "lafam-layer3": lu.LaFAM(net, layer="layer3", precision=precision, upsample=None),
    }


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_combination_equals_the_separate_calls(net, x, precision):
    explainers = make(net, precision)
    separate = {key: explainer(x) for key, explainer in explainers.items()}
    gradcam_alone = (explainers["gradcam"].logits, explainers["gradcam"].targets)
    relax_alone = explainers["relax"].uncertainty
    for size in range(1, len(explainers) + 1):
        for keys in itertools.combinations(explainers, size):
            needs_whole = "gradcam" in keys or "relax" in keys  # the whole forward runs anyway
            for need_output in (False,) if needs_whole else (False, True):
                shared = explain_together({k: explainers[k] for k in keys}, x, need_output=need_output)
                assert list(shared.maps) == list(keys) == list(shared.seconds)
                for key in keys:
                    assert torch.equal(shared.maps[key], separate[key]), (keys, key, need_output)
                    assert shared.seconds[key] > 0
                assert (shared.output is not None) == (need_output or needs_whole)
                if "gradcam" in keys:
                    assert torch.equal(explainers["gradcam"].logits, gradcam_alone[0])
                    assert torch.equal(explainers["gradcam"].targets, gradcam_alone[1])
                if "relax" in keys:
                    assert torch.equal(explainers["relax"].uncertainty, relax_alone)


def test_the_output_is_the_models_output(net, x):
    shared = explain_together({"lafam": lu.LaFAM(net)}, x, need_output=True)
    with torch.no_grad():
        assert torch.equal(shared.output, net(x))


def test_what_cannot_share_is_a_clear_error(net, x):
    other = torchvision.models.resnet18(weights=None).eval()
    with pytest.raises(ValueError, match="same model"):
        explain_together({"a": lu.LaFAM(net), "b": lu.LaFAM(other)}, x)
    with pytest.raises(ValueError, match="one precision"):
        explain_together({"a": lu.LaFAM(net), "b": lu.GradCAM(net, precision="bf16")}, x)
    with pytest.raises(ValueError, match="one layer"):
        explain_together({"a": lu.GradCAM(net), "b": lu.GradCAM(net, layer="layer3")}, x)
    with pytest.raises(ValueError, match="at least one"):
        explain_together({}, x)

    class Doubled(lu.LaFAM):
        def layer_maps(self, x):
            return super().layer_maps(x) * 2

    assert shareable(lu.RELAX(net)) and not shareable(Doubled(net)) and not shareable(object())
    with pytest.raises(TypeError, match="cannot share"):
        explain_together({"a": Doubled(net)}, x)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_evaluate_shares_the_forward_and_equals_separate_runs(tmp_path, precision):
    net = ToyNet(CLASS_NAMES)  # a classifier with an 8x8 layer4 on the toy images
    dataset = ToyDataset(n=5, broken=(1,))
    options = dict(batch_size=2, models={"net": net}, metric_fn=toy_metrics, progress=False, precision=precision,
                   explainer_kwargs={"relax": {"n_masks": 4}})
    pairs = [("net", "gradcam"), ("net", "lafam"), ("net", "eigencam"), ("net", "relax")]
    together = lu.evaluate(dataset, pairs, results_dir=tmp_path / "together", **options)
    apart = [lu.evaluate(dataset, [pair], results_dir=tmp_path / "-".join(pair), **options) for pair in pairs]
    apart = pd.concat(apart, ignore_index=True)
    columns = ["index", "model", "method", "prediction", "error", *lu.metrics.METRIC_NAMES]
    pd.testing.assert_frame_equal(together[columns], apart[columns])
    assert together.loc[together["index"] == 1, "error"].str.contains("truncated").all()
    ok = together[together["error"] == ""]
    assert len(ok) == 16 and (ok["seconds"] > 0).all() and ok["prediction"].isin(CLASS_NAMES).all()
    stored = (Path(together.attrs["run_dir"]) / "run.json").read_text()
    assert f'"precision": "{precision}"' in stored
