"""The precision setting: fp32 unchanged, bf16 float32 maps in [0, 1], auto per device, clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torchvision

import lafam_utils as lu
from lafam_utils import precision as prec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

EXPLAINERS = {
    "lafam": {},
    "gradcam": {},
    "eigencam": {},
    "relax": {"n_masks": 8},
}


@pytest.fixture(scope="module")
def small_resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=5).eval()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(2, 3, 48, 40, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("method", list(EXPLAINERS))
def test_fp32_is_the_default_and_unchanged(small_resnet, x, method):
    default = lu.explainer(method, small_resnet, **EXPLAINERS[method])
    assert default.precision == "fp32"
    explicit = lu.explainer(method, small_resnet, precision="fp32", **EXPLAINERS[method])
    assert torch.equal(default(x), explicit(x))


def test_fp32_lafam_is_the_plain_float32_channel_mean(small_resnet, x):
    with torch.no_grad():
        acts = lu.hooks.layer_output(small_resnet, "layer4", x)
    expected = lu.explainers.upsample_maps(lu.explainers.minmax_normalize(acts.mean(dim=1)), (48, 40), "nearest")
    assert torch.equal(lu.LaFAM(small_resnet, precision="fp32")(x), expected)


@pytest.mark.parametrize("method", list(EXPLAINERS))
def test_bf16_gives_float32_maps_in_unit_range_close_to_fp32(small_resnet, x, method):
    weights = {name: p.clone() for name, p in small_resnet.state_dict().items()}
    before = x.clone()
    maps = lu.explainer(method, small_resnet, precision="bf16", **EXPLAINERS[method])(x)
    fp32 = lu.explainer(method, small_resnet, precision="fp32", **EXPLAINERS[method])(x)
    assert maps.dtype == torch.float32 and maps.device == x.device and maps.shape == (2, 48, 40)
    assert maps.min() >= 0 and maps.max() <= 1
    assert not torch.equal(maps, fp32)  # bf16 really ran
    assert (maps - fp32).abs().max() < 0.25
    # the caller's model and images are left as they were
    assert torch.equal(x, before) and x.is_contiguous()
    for name, p in small_resnet.state_dict().items():
        assert p.dtype == weights[name].dtype and torch.equal(p, weights[name])
        assert p.is_contiguous()


def test_gradcam_bf16_keeps_float32_logits_and_targets(small_resnet, x):
    gradcam = lu.GradCAM(small_resnet, precision="bf16")
    gradcam(x)
    assert gradcam.logits.dtype == torch.float32 and gradcam.targets.dtype == torch.long


def test_auto_decides_by_the_cpu_flags(monkeypatch):
    for flags, expected in [({"avx512f", "amx_bf16"}, "bf16"), ({"avx512_bf16"}, "bf16"), ({"bf16"}, "bf16"),
                            ({"avx2", "avx512f"}, "fp32"), (set(), "fp32")]:
        monkeypatch.setattr(prec, "cpu_flags", lambda flags=flags: frozenset(flags))
        monkeypatch.setattr(prec.platform, "system", lambda: "Linux")
        assert prec.resolve_precision("auto", "cpu") == expected
        assert prec.resolve_precision("fp32", "cpu") == "fp32" and prec.resolve_precision("bf16", "cpu") == "bf16"


def test_auto_on_cuda_picks_tf32_never_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    for capability, expected in [((8, 0), "tf32"), ((9, 0), "tf32"), ((7, 5), "fp32")]:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, c=capability: c)
        assert prec.resolve_precision("auto", "cuda:0") == expected
        assert prec.resolve_precision("tf32", "cuda:0") == expected  # no TF32 before Ampere: fp32 ran
        assert prec.resolve_precision("bf16", "cuda:0") == "bf16"
        assert prec.native_bf16("cuda:0") == (capability >= (8, 0))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert prec.resolve_precision("auto", "cuda") == "fp32"
    assert prec.resolve_precision("auto", "meta") == "fp32"


def test_tf32_on_the_cpu_computes_and_records_fp32(small_resnet, x):
    prec.check_precision("tf32")
    assert prec.resolve_precision("tf32", "cpu") == "fp32"
    tf32 = lu.LaFAM(small_resnet, precision="tf32")
    assert tf32.resolved_precision(x.device) == "fp32"
    assert torch.equal(tf32(x), lu.LaFAM(small_resnet)(x))


@pytest.fixture
def caller_flags():
    """The caller's TF32 settings: matmuls allowed, cuDNN not (not PyTorch's defaults); reset after the test."""
    saved = prec.tf32_flags()
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = True, False
    yield (True, False)
    prec.restore_tf32_flags(saved)


def current_flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


class FlagRecorder:
    """Forward and backward hooks on a module that record the TF32 flags they see."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.forward: list[tuple[bool, bool]] = []
        self.backward: list[tuple[bool, bool]] = []
        self.handles = [
            module.register_forward_hook(lambda *_: self.forward.append(current_flags())),
            module.register_full_backward_hook(lambda *_: self.backward.append(current_flags())),
        ]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@pytest.mark.parametrize("method", list(EXPLAINERS))
@pytest.mark.parametrize("precision, inside", [("fp32", (False, False)), ("tf32", (True, True))])
def test_tf32_flags_inside_the_forward_and_restored_after(
    small_resnet, x, caller_flags, monkeypatch, method, precision, inside
):
    monkeypatch.setattr(prec, "native_tf32", lambda device: True)  # as on an Ampere GPU
    recorder = FlagRecorder(small_resnet.fc if method in ("gradcam", "relax") else small_resnet.layer4)
    try:
        lu.explainer(method, small_resnet, precision=precision, **EXPLAINERS[method])(x)
    finally:
        recorder.remove()
    assert recorder.forward and set(recorder.forward) == {inside}
    if method == "gradcam":  # the backward through the layers after layer4
        assert recorder.backward and set(recorder.backward) == {inside}
    assert current_flags() == caller_flags


def test_tf32_flags_are_restored_when_the_forward_raises(small_resnet, x, caller_flags):
    def fail(*_):
        raise RuntimeError("broken layer")

    handle = small_resnet.layer3.register_forward_hook(fail)
    try:
        for method, options in EXPLAINERS.items():
            with pytest.raises(RuntimeError, match="broken layer"):
                lu.explainer(method, small_resnet, **options)(x)
            assert current_flags() == caller_flags
    finally:
        handle.remove()


def test_bf16_leaves_the_callers_tf32_flags(small_resnet, x, caller_flags):
    recorder = FlagRecorder(small_resnet.layer4)
    try:
        lu.LaFAM(small_resnet, precision="bf16")(x)
    finally:
        recorder.remove()
    assert recorder.forward == [caller_flags] and current_flags() == caller_flags


def test_tf32_context_restores_mixed_legacy_and_new_settings():
    saved = prec.tf32_flags()
    try:
        torch.set_float32_matmul_precision("medium")
        torch.backends.cudnn.conv.fp32_precision = "ieee"  # the new API beside the legacy flag
        before = prec.tf32_flags()
        for enabled in (False, True):
            with prec.tf32(enabled):
                assert current_flags() == (enabled, enabled)
                assert torch.backends.mkldnn.matmul.fp32_precision == "ieee"  # oneDNN's bf16 matmuls off
            assert prec.tf32_flags() == before
    finally:
        prec.restore_tf32_flags(saved)


def test_evaluate_records_the_precision_that_ran(tmp_path, monkeypatch):
    from evaluation_toy import ToyDataset, run

    tables = {}
    for native in (False, True):
        monkeypatch.setattr(prec, "native_tf32", lambda device, native=native: native)
        tables[native] = run(tmp_path / str(native), ToyDataset(n=2), precision="tf32", batch_size=2)
    for native, expected in ((False, "fp32"), (True, "tf32")):
        manifest = json.loads((Path(tables[native].attrs["run_dir"]) / "run.json").read_text())
        assert manifest["identity"]["settings"]["precision"] == expected


def test_auto_explainer_follows_the_input_device(small_resnet, x, monkeypatch):
    monkeypatch.setattr(prec, "native_bf16", lambda device: False)
    auto = lu.LaFAM(small_resnet, precision="auto")
    assert torch.equal(auto(x), lu.LaFAM(small_resnet)(x))
    monkeypatch.setattr(prec, "native_bf16", lambda device: True)
    assert torch.equal(auto(x), lu.LaFAM(small_resnet, precision="bf16")(x))


def test_cpu_flags_are_read_from_cpuinfo():
    flags = prec.cpu_flags()
    assert isinstance(flags, frozenset)
    if Path("/proc/cpuinfo").exists() and "flags" in Path("/proc/cpuinfo").read_text():
        assert "fpu" in flags or "sse2" in flags or "fp" in flags


@pytest.mark.parametrize("bad", ["fp16", "BF16", None, 16])
def test_a_bad_precision_is_a_clear_error(small_resnet, bad):
    for method, options in EXPLAINERS.items():
        with pytest.raises(ValueError, match=r"precision must be one of \('fp32', 'tf32', 'bf16', 'auto'\)"):
            lu.explainer(method, small_resnet, precision=bad, **options)
    with pytest.raises(ValueError, match="precision must be one of"):
        lu.evaluate([], results_dir="unused", precision=bad)


def test_repr_names_the_precision(small_resnet):
    assert "precision='bf16'" in repr(lu.LaFAM(small_resnet, precision="bf16"))


def test_agreement_measure_reports_bounds_on_a_small_model():
    """benchmarks/agreement.py's measurement, small: bf16 maps and metric means agree with fp32."""
    from benchmarks import agreement

    torch.manual_seed(0)
    models = {"net": lu.load_model("shapes-supervised", weights=None).eval()}
    dataset = lu.SyntheticShapes(n=4, split="single", seed=0, size=64)
    result = agreement.measure(dataset, models, [("net", "gradcam"), ("net", "lafam")], relax_masks=4, batch_size=4)
    for pair in ("net/gradcam", "net/lafam"):
        r = result[pair]
        assert r["images"] == 4 and 0 <= r["median_map_difference"] <= r["max_map_difference"] < 0.1
        assert set(r["metrics_x100"]) == set(lu.metrics.METRIC_NAMES)
        assert r["within_bound"] == (r["largest_mean_difference_points"] <= agreement.BOUND_POINTS)
        # the bound the full measurement checks, here on a small random-init model
        assert r["within_bound"] and r["pointing_game_flips"] == 0
