"""The official self-supervised ResNet50 releases, loaded from checkpoints written here in each
release's exact layout (keys, nesting, prefixes, extra entries) and compared with a torchvision
ResNet50 (and a head built as the release's code builds it) given the same weights directly."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import urllib.error
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import lafam_utils as lu
from lafam_utils.models import CheckpointError, DownloadError
from lafam_utils.models import releases as ssl_releases
from lafam_utils.models.releases import RELEASES
from lafam_utils.models.vit_releases import VIT_RELEASES

NAMES = list(RELEASES)
NARROW = 64  # Barlow Twins' and VICReg's 8192-wide projectors are built this wide in the tests


def randomise(module: nn.Module, seed: int) -> nn.Module:
    """Random BatchNorm affine parameters and statistics (weights keep their seeded random init),
    so that every tensor of the state dict changes the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point() and name.endswith(("running_var", "running_mean")) or (
                tensor.ndim == 1 and name.endswith(("weight", "bias"))
            ):
                values = torch.rand(tensor.shape, generator=generator)
                tensor.copy_(values + 0.5 if name.endswith(("running_var", "weight")) else values * 0.2 - 0.1)
    return module.eval()


@pytest.fixture(scope="module")
def backbone() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    model.fc = nn.Identity()
    return randomise(model, seed=0)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def prefixed(prefix: str, state: dict) -> dict:
    return {prefix + key: value for key, value in state.items()}


def sgd_state(n_params: int) -> dict:
    group = {"lr": 0.03, "momentum": 0.9, "weight_decay": 1e-4, "params": list(range(n_params))}
    return {"state": {}, "param_groups": [group]}


@pytest.fixture(scope="module")
def heads() -> dict[str, nn.Module]:
    """Each release's projection head as its own code builds it (narrow where noted), random weights."""
    torch.manual_seed(2)

    def projector(bias: bool) -> nn.Sequential:  # Barlow Twins main.py / VICReg main_vicreg.py Projector
        sizes = [2048, NARROW, NARROW, NARROW]
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 2):
            layers += [nn.Linear(sizes[i], sizes[i + 1], bias=bias), nn.BatchNorm1d(sizes[i + 1]), nn.ReLU(True)]
        return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1], bias=False))

    heads = {
        "mocov2": nn.Sequential(nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 128)),  # builder.py, mlp=True
        "mocov3-resnet50": nn.Sequential(  # MoCo_ResNet: _build_mlp(2, 2048, 4096, 256)
            nn.Linear(2048, 4096, bias=False), nn.BatchNorm1d(4096), nn.ReLU(True),
            nn.Linear(4096, 256, bias=False), nn.BatchNorm1d(256, affine=False),
        ),
        "barlowtwins": projector(bias=False),
        "vicreg": projector(bias=True),
        "swav-fair": nn.Sequential(nn.Linear(2048, 2048), nn.BatchNorm1d(2048), nn.ReLU(True), nn.Linear(2048, 128)),
    }
    return {name: randomise(head, seed=i + 1) for i, (name, head) in enumerate(heads.items())}


NORMALISED = {"mocov2", "swav-fair"}  # MoCo v2 normalises q, SwAV's forward_head applies l2norm


def dino_full(backbone: dict, head: dict) -> dict:
    """main_dino.py's checkpoint.pth: DDP-wrapped student and teacher, optimizer, epoch, args, loss centre."""
    dino_head = {
        "mlp.0.weight": torch.randn(2048, 2048), "mlp.0.bias": torch.zeros(2048),
        "mlp.2.weight": torch.randn(2048, 2048), "mlp.2.bias": torch.zeros(2048),
        "mlp.4.weight": torch.randn(256, 2048), "mlp.4.bias": torch.zeros(256),
        # the release's out_dim is far larger than 1000; the head is dropped by name whatever its size
        "last_layer.weight_g": torch.ones(1000, 1), "last_layer.weight_v": torch.randn(1000, 256),
    }
    network = {**prefixed("module.backbone.", backbone), **prefixed("module.head.", dino_head)}
    return {
        "student": network, "teacher": dict(network), "optimizer": sgd_state(len(network)), "epoch": 800,
        "args": argparse.Namespace(arch="resnet50", out_dim=1000), "dino_loss": {"center": torch.zeros(1, 1000)},
    }


def mocov2(backbone: dict, head: dict) -> dict:
    """main_moco.py's checkpoint: DDP-wrapped MoCo with encoder_q, encoder_k, queue and its pointer."""
    encoder = {**backbone, **prefixed("fc.", head)}
    state = {
        **prefixed("module.encoder_q.", encoder), **prefixed("module.encoder_k.", encoder),
        "module.queue": torch.randn(128, 65536), "module.queue_ptr": torch.zeros(1, dtype=torch.long),
    }
    return {"epoch": 800, "arch": "resnet50", "state_dict": state, "optimizer": sgd_state(len(encoder))}


def mocov3(backbone: dict, head: dict) -> dict:
    """moco-v3 main_moco.py's checkpoint: base and momentum encoders with projectors, the predictor."""
    predictor = nn.Sequential(
        nn.Linear(256, 4096, bias=False), nn.BatchNorm1d(4096), nn.ReLU(True), nn.Linear(4096, 256, bias=False)
    ).state_dict()
    encoder = {**backbone, **prefixed("fc.", head)}
    state = {
        **prefixed("module.base_encoder.", encoder), **prefixed("module.momentum_encoder.", encoder),
        **prefixed("module.predictor.", predictor),
    }
    scaler = {
        "scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 0
    }
    return {
        "epoch": 1000,
        "arch": "resnet50",
        "state_dict": state,
        "optimizer": sgd_state(len(encoder)),
        "scaler": scaler,
    }


def full_checkpoint(batch_norm: bool) -> Callable[[dict, dict], dict]:
    """Barlow Twins' main.py / VICReg's main_vicreg.py checkpoint: epoch, DDP-wrapped model, optimizer."""

    def build(backbone: dict, head: dict) -> dict:
        model = {**prefixed("module.backbone.", backbone), **prefixed("module.projector.", head)}
        if batch_norm:  # BarlowTwins.bn, BatchNorm1d(8192, affine=False)
            model |= prefixed("module.bn.", nn.BatchNorm1d(NARROW, affine=False).state_dict())
        return {"epoch": 1000, "model": model, "optimizer": sgd_state(len(model))}

    return build


def swav(backbone: dict, head: dict) -> dict:
    """swav_800ep_pretrain.pth.tar: the DDP state dict, projection head and 3000 prototypes included."""
    prototypes = {"module.prototypes.weight": torch.randn(3000, 128)}
    return {**prefixed("module.", backbone), **prefixed("module.projection_head.", head), **prototypes}


def swav_training(backbone: dict, head: dict) -> dict:
    """main_swav.py's checkpoint.pth.tar around the same state dict."""
    amp = {"loss_scaler0": {"loss_scale": 65536.0, "unskipped": 0}}
    return {"epoch": 800, "state_dict": swav(backbone, head), "optimizer": sgd_state(3), "amp": amp}


def backbone_only(backbone: dict, head: dict) -> dict:
    """The torch.hub files of DINO, Barlow Twins and VICReg: the backbone's state dict, no fc."""
    return dict(backbone)


LAYOUTS = {
    ("dino-resnet50", "backbone file"): backbone_only,
    ("dino-resnet50", "full checkpoint"): dino_full,
    ("mocov2", "checkpoint"): mocov2,
    ("mocov3-resnet50", "checkpoint"): mocov3,
    ("barlowtwins", "backbone file"): backbone_only,
    ("barlowtwins", "full checkpoint"): full_checkpoint(batch_norm=True),
    ("vicreg", "backbone file"): backbone_only,
    ("vicreg", "full checkpoint"): full_checkpoint(batch_norm=False),
    ("swav-fair", "release file"): swav,
    ("swav-fair", "training checkpoint"): swav_training,
}


@pytest.fixture
def narrow_projectors(monkeypatch):
    """Barlow Twins' and VICReg's releases with their projectors built NARROW wide (same structure)."""
    for name, head in (("barlowtwins", ssl_releases.barlowtwins_head), ("vicreg", ssl_releases.vicreg_head)):
        monkeypatch.setitem(RELEASES, name, dataclasses.replace(RELEASES[name], head=functools.partial(head, NARROW)))


def write(tmp_path: Path, checkpoint: dict) -> Path:
    path = tmp_path / "weights.pth"
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize(("name", "layout"), list(LAYOUTS))
def test_each_layout_loads_the_backbone_and_the_head_exactly(
    name, layout, backbone, heads, images, tmp_path, narrow_projectors
):
    checkpoint = LAYOUTS[name, layout](backbone.state_dict(), heads[name].state_dict() if name in heads else {})
    path = write(tmp_path, checkpoint)

    with torch.no_grad():
        expected = backbone(images)
        loaded = lu.load_model(name, checkpoint=path)
        torch.testing.assert_close(loaded(images), expected, rtol=1e-5, atol=1e-5)
        assert isinstance(loaded.fc, nn.Identity)
        if name in heads and layout != "backbone file":
            projection = heads[name](expected)
            projection = F.normalize(projection, dim=1) if name in NORMALISED else projection
            encoder = lu.load_model(name, checkpoint=path, embedding="projection")
            torch.testing.assert_close(encoder(images), projection, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_random_init_downloads_nothing(name, images, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("weights=None must not download")

    monkeypatch.setattr(ssl_releases, "download", no_download)
    model = lu.load_model(name, weights=None)
    assert not model.training and isinstance(model.fc, nn.Identity)
    assert model(images).shape == (2, 2048)
    assert lu.LaFAM(model, layer="layer4")(torch.randn(1, 3, 64, 64)).shape == (1, 64, 64)  # 2x2 at layer4


def test_random_init_projection_needs_no_file_even_where_the_download_lacks_the_head(images, narrow_projectors):
    model = lu.load_model("barlowtwins", weights=None, embedding="projection")
    assert model(images).shape == (2, NARROW)


def test_full_width_projectors_match_the_release_code():
    with torch.device("meta"):
        shapes = {
            name: {key: tuple(value.shape) for key, value in RELEASES[name].head().state_dict().items()}
            for name in ("barlowtwins", "vicreg")
        }
    assert shapes["barlowtwins"] == {
        "0.weight": (8192, 2048),
        "1.weight": (8192,), "1.bias": (8192,), "1.running_mean": (8192,), "1.running_var": (8192,),
        "1.num_batches_tracked": (), "3.weight": (8192, 8192), "4.weight": (8192,), "4.bias": (8192,),
        "4.running_mean": (8192,), "4.running_var": (8192,), "4.num_batches_tracked": (), "6.weight": (8192, 8192),
    }
    assert shapes["vicreg"] == {**shapes["barlowtwins"], "0.bias": (8192,), "3.bias": (8192,)}


@pytest.mark.parametrize("name", [*NAMES, *VIT_RELEASES])
def test_offline_download_names_the_url_and_the_file(name, tmp_path, monkeypatch):
    """Every official release, ResNet50 and ViT alike."""

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    release = {**RELEASES, **VIT_RELEASES}[name]
    with pytest.raises(DownloadError) as caught:
        lu.load_model(name)
    message = str(caught.value)
    assert release.url in message
    assert str(tmp_path / "hub" / "checkpoints" / release.file_name) in message


def test_weights_dir_holds_the_files_under_their_cache_names(backbone, tmp_path):
    torch.save(backbone.state_dict(), tmp_path / RELEASES["vicreg"].file_name)
    with torch.no_grad():
        images = torch.randn(1, 3, 32, 32)
        loaded = lu.load_model("vicreg", weights_dir=tmp_path)
        torch.testing.assert_close(loaded(images), backbone(images), rtol=1e-5, atol=1e-5)


def test_barlow_twins_and_vicreg_are_cached_under_distinct_names():
    assert len({release.file_name for release in RELEASES.values()}) == len(RELEASES)


def test_a_cached_file_is_checked_against_the_published_md5(backbone, heads, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / RELEASES["mocov2"].file_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"an interrupted or foreign download")
    with pytest.raises(DownloadError, match=f"{cached} .*has md5 .* publishes a04e12f8.*delete it"):
        lu.load_model("mocov2")
    torch.save(mocov2(backbone.state_dict(), heads["mocov2"].state_dict()), cached)
    md5 = hashlib.md5(cached.read_bytes()).hexdigest()
    monkeypatch.setitem(RELEASES, "mocov2", dataclasses.replace(RELEASES["mocov2"], md5_prefix=md5[:8]))
    with torch.no_grad():
        images = torch.randn(1, 3, 32, 32)
        torch.testing.assert_close(lu.load_model("mocov2")(images), backbone(images), rtol=1e-5, atol=1e-5)


def test_wrong_keys_are_errors_naming_them(backbone, heads, tmp_path):
    checkpoint = mocov2(backbone.state_dict(), heads["mocov2"].state_dict())
    state = checkpoint["state_dict"]
    del state["module.encoder_q.layer4.2.conv3.weight"]
    state["module.momentum.weight"] = torch.ones(1)
    state["module.encoder_q.layer1.0.conv1.weight"] = torch.ones(64, 64, 3, 3)
    with pytest.raises(CheckpointError) as caught:
        lu.load_model("mocov2", checkpoint=write(tmp_path, checkpoint))
    message = str(caught.value)
    assert "missing keys (1): layer4.2.conv3.weight" in message
    assert "unexpected keys (1): module.momentum.weight" in message
    assert "shape mismatches (1): layer1.0.conv1.weight (64, 64, 3, 3) vs (64, 64, 1, 1)" in message


def test_a_foreign_layout_is_an_error_listing_the_expected_ones(backbone, tmp_path):
    path = write(tmp_path, {"state_dict": prefixed("encoder.", backbone.state_dict())})
    expected = r"not a mocov3-resnet50 checkpoint.*'module\.base_encoder\.conv1\.weight'.*top-level keys are state_dict"
    with pytest.raises(CheckpointError, match=expected):
        lu.load_model("mocov3-resnet50", checkpoint=path)


def test_projection_needs_a_file_that_has_the_head(backbone, tmp_path):
    with pytest.raises(ValueError, match=r"download .*resnet50\.pth\) holds the backbone only.*ljng/checkpoint\.pth"):
        lu.load_model("barlowtwins", embedding="projection")
    with pytest.raises(ValueError, match="dino-resnet50 has no projection embedding"):
        lu.load_model("dino-resnet50", embedding="projection", weights=None)
    path = write(tmp_path, backbone.state_dict())
    with pytest.raises(CheckpointError, match=r"holds no projection head .*vicreg/resnet50_fullckpt\.pth"):
        lu.load_model("vicreg", checkpoint=path, embedding="projection")


def test_a_saved_encoder_loads_back_in_torchvision_names(backbone, heads, images, tmp_path):
    release_file = write(tmp_path, swav(backbone.state_dict(), heads["swav-fair"].state_dict()))
    encoder = lu.load_model("swav-fair", checkpoint=release_file, embedding="projection")
    path = tmp_path / "saved.pth"
    torch.save(encoder.state_dict(), path)
    with torch.no_grad():
        reloaded = lu.load_model("swav-fair", checkpoint=path, embedding="projection")
        torch.testing.assert_close(reloaded(images), encoder(images), rtol=0, atol=0)
