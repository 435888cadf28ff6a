"""compile=True: RELAX's masked forwards through torch.compile, the same maps, one compile per model and precision."""

from __future__ import annotations

import gc
import re
import warnings
import weakref

import pytest
import torch
from torch import nn

import lafam_utils as lu
from lafam_utils.compiling import compiled_forward


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(),
    ).eval()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(1))


@pytest.mark.slow
def test_compiled_relax_maps_equal_the_eager_ones_and_the_compile_time_is_one_line(x, capsys):
    encoder = small_cnn()
    eager = lu.RELAX(encoder, n_masks=8, cells=3)(x)
    relax = lu.RELAX(encoder, n_masks=8, cells=3, compile=True, progress=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        maps = relax(x)
        again = relax(x)
    # fp32: the compiled kernels sum in another order, and min-max stretches R's narrow range
    assert (maps - eager).abs().max() < 1e-4
    assert torch.equal(maps, again)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("compiled")]
    assert len(lines) == 1 and re.fullmatch(r"compiled Sequential in \d+\.\d s", lines[0])
    assert compiled_forward(encoder, "fp32").seconds > 0


def test_one_compiled_forward_per_model_and_precision_that_does_not_keep_the_model(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: compiled.append(kwargs) or fn)
    model = small_cnn()
    first = compiled_forward(model, "fp32")
    assert compiled_forward(model, "fp32") is first
    assert compiled_forward(model, "bf16") is not first and compiled_forward(small_cnn(), "fp32") is not first
    assert compiled == [{"dynamic": False}] * 3
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None


@pytest.mark.parametrize("method", ["lafam", "eigencam", "gradcam"])
def test_layer_readers_stay_eager_with_compile(x, monkeypatch, method):
    """Their forwards run hooks, which torch.compile does not honour: compile=True must not reach them."""
    model = nn.Sequential(small_cnn()[:4], nn.Flatten(), nn.LazyLinear(3)).eval()
    model(x)
    layer = "0"
    eager = lu.explainer(method, model, layer=layer)(x)

    def refuse(*args, **kwargs):
        raise AssertionError("torch.compile was called for a forward with hooks")

    monkeypatch.setattr(torch, "compile", refuse)
    explainer = lu.explainer(method, model, layer=layer, compile=True)
    assert explainer.compile and "compile=True" in repr(explainer)
    assert torch.equal(explainer(x), eager)
