"""load_model against Lightning Bolts' and torchvision's own loading, on checkpoints made here."""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import sys
import types
import warnings
from contextlib import contextmanager
from pathlib import Path
from urllib.error import URLError

import pytest
import pytorch_lightning
import torch
import torchvision
from torch import nn

import lafam_utils as lu
from lafam_utils.hooks import layer_output
from lafam_utils.models import CheckpointError, DownloadError
from lafam_utils.notebook import setup


@contextmanager
def bolts():
    """Lightning Bolts' SimCLR and SwAV, with its deprecation and "under review" warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pl_bolts.models.self_supervised import SimCLR, SwAV

        warnings.simplefilter("ignore")  # again: importing Bolts puts its own filters first
        yield {"simclr": SimCLR, "swav": SwAV}


class TrainingNote:
    """A custom object, as training scripts pickle into checkpoints."""

    def __init__(self, text: str) -> None:
        self.text = text


def randomize_batchnorm(module: nn.Module, seed: int) -> None:
    """Non-trivial BatchNorm statistics, so a mis-mapped buffer changes the embedding."""
    generator = torch.Generator().manual_seed(seed)
    for bn in module.modules():
        if isinstance(bn, nn.modules.batchnorm._BatchNorm):
            n = bn.num_features
            bn.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
            bn.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            bn.weight.data.copy_(0.5 + torch.rand(n, generator=generator))
            bn.bias.data.copy_(0.1 * torch.randn(n, generator=generator))


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Whether two models hold exactly the same parameters and buffers under the same names."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def lightning_checkpoint(module: pytorch_lightning.LightningModule) -> dict:
    """A trainer-free Lightning checkpoint with the online linear probe Bolts' runs carried."""
    probe = {
        "non_linear_evaluator.block_forward.2.weight": torch.randn(1000, 2048),
        "non_linear_evaluator.block_forward.2.bias": torch.randn(1000),
    }
    return {
        "state_dict": {**module.state_dict(), **probe},
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": pytorch_lightning.__version__,
        "epoch": 0,
        "global_step": 0,
    }


def bolts_checkpoint(name: str, path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    with bolts() as modules:
        module = modules[name](gpus=0, num_samples=8, batch_size=2, dataset="imagenet", arch="resnet50")
    randomize_batchnorm(module, seed)
    torch.save(lightning_checkpoint(module), path)
    return path


@pytest.fixture(scope="module")
def simclr_ckpt(tmp_path_factory) -> Path:
    return bolts_checkpoint("simclr", tmp_path_factory.mktemp("simclr") / "simclr.ckpt", seed=0)


@pytest.fixture(scope="module")
def swav_ckpt(tmp_path_factory) -> Path:
    return bolts_checkpoint("swav", tmp_path_factory.mktemp("swav") / "swav.ckpt", seed=1)


@pytest.fixture(scope="module")
def simclr_contents(simclr_ckpt) -> dict:
    return torch.load(simclr_ckpt, weights_only=True)


@pytest.fixture(scope="module")
def simclr(simclr_ckpt) -> dict[str, nn.Module]:
    return {e: lu.load_model("simclr", checkpoint=simclr_ckpt, embedding=e) for e in ("backbone", "projection")}


@pytest.fixture(scope="module")
def swav(swav_ckpt) -> dict[str, nn.Module]:
    return {e: lu.load_model("swav", checkpoint=swav_ckpt, embedding=e) for e in ("backbone", "projection")}


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))


@pytest.fixture
def offline(monkeypatch, tmp_path) -> Path:
    """No network and an empty torch hub cache; returns the cache's checkpoints directory."""

    def refuse(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "urlopen", refuse)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_simclr_equals_bolts(simclr_ckpt, simclr, x):
    with bolts() as modules:
        reference = modules["simclr"].load_from_checkpoint(str(simclr_ckpt), strict=False).eval()
    with torch.no_grad():
        h = reference.encoder(x)[-1]
        assert torch.allclose(simclr["backbone"](x), h, atol=1e-5)
        assert torch.allclose(simclr["projection"](x), reference.projection(h), atol=1e-5)
    assert h.shape == (2, 2048)


def test_swav_equals_bolts(swav_ckpt, swav, x):
    """Also on a batch of one odd-sized image: SwAV's extra pad must equal padding 3 there too."""
    with bolts() as modules:
        reference = modules["swav"].load_from_checkpoint(str(swav_ckpt), strict=False).eval()
    odd = torch.randn(1, 3, 67, 75)
    with torch.no_grad():
        for images in (x, odd):
            z = reference.model(images)[0]
            assert torch.allclose(swav["projection"](images), z, atol=1e-5)
            assert torch.allclose(swav["backbone"](images), reference.model.forward_backbone(images), atol=1e-5)
    assert z.shape == (1, 128)
    assert torch.allclose(z.norm(dim=1), torch.ones(1))


def test_defaults_are_the_papers_embeddings(x):
    simclr = lu.load_model("simclr", weights=None)
    swav = lu.load_model("swav", weights=None)
    assert not simclr.training and not swav.training
    with torch.no_grad():
        h, z = simclr(x), swav(x)
    assert h.shape == (2, 2048) and z.shape == (2, 128)
    assert torch.allclose(z.norm(dim=1), torch.ones(2))


def test_layers_keep_torchvisions_names(resnet50, simclr, swav, x):
    def body(model: nn.Module) -> set[str]:
        return {name for name, _ in model.named_modules() if not name.startswith("fc")}

    for model in (simclr["backbone"], simclr["projection"], swav["projection"]):
        assert body(model) == body(resnet50)
        with torch.no_grad():
            assert layer_output(model, "layer4", x).shape == (2, 2048, 2, 2)


def test_own_state_dict_round_trips(swav, tmp_path):
    torch.save(swav["projection"].state_dict(), tmp_path / "swav.pth")
    assert same_weights(lu.load_model("swav", checkpoint=tmp_path / "swav.pth"), swav["projection"])


@pytest.mark.parametrize("lightning_style", [False, True])
def test_torchvision_state_dict_round_trips(resnet50, tmp_path, lightning_style):
    state = resnet50.state_dict()
    torch.save({"state_dict": state} if lightning_style else state, tmp_path / "resnet50.pth")
    model = lu.load_model("resnet50", checkpoint=tmp_path / "resnet50.pth")
    assert same_weights(model, resnet50) and not model.training
    assert model.class_names == torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    assert len(model.class_names) == 1000


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(CheckpointError, match=r"resnet18\.pth does not fit resnet50.*missing keys"):
        lu.load_model("resnet50", checkpoint=tmp_path / "resnet18.pth")


def edited_checkpoint(contents: dict, target: Path, edit) -> Path:
    """Save a copy of a checkpoint's contents with ``edit`` applied to the copy."""
    checkpoint = {**contents, "state_dict": dict(contents["state_dict"])}
    checkpoint["hyper_parameters"] = dict(contents["hyper_parameters"])
    edit(checkpoint)
    torch.save(checkpoint, target)
    return target


def test_missing_backbone_key_is_named(simclr_contents, tmp_path):
    path = edited_checkpoint(
        simclr_contents, tmp_path / "cut.ckpt", lambda c: c["state_dict"].pop("encoder.layer4.2.bn3.running_var")
    )
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): layer4\.2\.bn3\.running_var"):
        lu.load_model("simclr", checkpoint=path)


def test_missing_head_key_is_named_only_when_the_head_is_used(simclr_contents, simclr, tmp_path):
    path = edited_checkpoint(
        simclr_contents, tmp_path / "nohead.ckpt", lambda c: c["state_dict"].pop("projection.model.3.weight")
    )
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): fc\.3\.weight"):
        lu.load_model("simclr", checkpoint=path, embedding="projection")
    assert same_weights(lu.load_model("simclr", checkpoint=path), simclr["backbone"])


def test_unknown_extra_key_is_refused(simclr_contents, tmp_path):
    def add(checkpoint):
        checkpoint["state_dict"]["encoder.extra.weight"] = torch.zeros(3)

    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): extra\.weight"):
        lu.load_model("simclr", checkpoint=edited_checkpoint(simclr_contents, tmp_path / "extra.ckpt", add))


def test_non_imagenet_configuration_is_refused(simclr_contents, tmp_path):
    path = edited_checkpoint(
        simclr_contents, tmp_path / "cifar.ckpt", lambda c: c["hyper_parameters"].update(maxpool1=False)
    )
    with pytest.raises(CheckpointError, match="maxpool1.*ImageNet configuration"):
        lu.load_model("simclr", checkpoint=path)


@pytest.mark.parametrize("trust", [False, True])
@pytest.mark.parametrize("damage", ["truncated", "junk", "empty"])
def test_corrupt_file_error_names_it(resnet50, tmp_path, damage, trust):
    path = tmp_path / "good.pth"
    torch.save(resnet50.state_dict(), path)
    data = path.read_bytes()
    bad = tmp_path / f"{damage}.pth"
    bad.write_bytes({"truncated": data[: len(data) // 2], "junk": b"<html>403</html>" * 9, "empty": b""}[damage])
    with pytest.raises(CheckpointError, match=f"{damage}.pth is corrupt"):
        lu.load_model("resnet50", checkpoint=bad, trust_checkpoint=trust)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nowhere.ckpt does not exist"):
        lu.load_model("simclr", checkpoint="nowhere.ckpt")


def test_untrusted_pickle_needs_the_flag(simclr_contents, simclr, tmp_path):
    path = edited_checkpoint(
        simclr_contents, tmp_path / "note.ckpt", lambda c: c.update(note=TrainingNote("trained on 8 GPUs"))
    )
    with pytest.raises(CheckpointError, match=r"TrainingNote.*trust_checkpoint=True"):
        lu.load_model("simclr", checkpoint=path)
    assert same_weights(lu.load_model("simclr", checkpoint=path, trust_checkpoint=True), simclr["backbone"])


@pytest.mark.parametrize(
    ("name", "file_name"),
    [("resnet50", "resnet50-0676ba61.pth"), ("simclr", "simclr_imagenet.ckpt"), ("swav", "swav_imagenet.ckpt")],
)
def test_failed_download_says_what_to_do(offline, name, file_name):
    with pytest.raises(DownloadError) as error:
        lu.load_model(name)
    message = str(error.value)
    assert f"/{file_name} (" in message and "Temporary failure in name resolution" in message
    assert str(offline) in message and "checkpoint=" in message
    assert error.value.__cause__ is None and error.value.__suppress_context__
    assert not offline.exists() or not any(offline.iterdir())


def cached_under_its_hash(state: dict, directory: Path, stem: str) -> Path:
    """``state`` saved as torchvision names its files, ``<stem>-<first 8 hex digits of its SHA-256>.pth``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}.pth"
    torch.save(state, path)
    return path.rename(directory / f"{stem}-{hashlib.sha256(path.read_bytes()).hexdigest()[:8]}.pth")


def test_cached_files_load_without_network(offline, resnet50, simclr_ckpt, simclr, monkeypatch):
    path = cached_under_its_hash(resnet50.state_dict(), offline, "resnet50")
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.value
    monkeypatch.setattr(weights, "url", f"https://download.pytorch.org/models/{path.name}")
    (offline / "simclr_imagenet.ckpt").write_bytes(simclr_ckpt.read_bytes())
    assert same_weights(lu.load_model("resnet50"), resnet50)
    assert same_weights(lu.load_model("simclr"), simclr["backbone"])


def test_cached_torchvision_file_is_hash_checked(offline, resnet50, monkeypatch):
    """Problem 7: a cached file that is not the published one used to load silently."""
    path = cached_under_its_hash(resnet50.state_dict(), offline, "resnet50")
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.value
    monkeypatch.setattr(weights, "url", f"https://download.pytorch.org/models/{path.name}")
    other = torchvision.models.resnet50(weights=None).state_dict()  # another valid file under the same name
    torch.save(other, path)
    with pytest.raises(CheckpointError, match=rf"{path.name}, the cached download of .*its name promises .*delete it"):
        lu.load_model("resnet50")


def test_random_init_needs_no_network(offline):
    model = lu.load_model("resnet18", weights=None, device="meta")
    assert next(model.parameters()).device.type == "meta"
    assert len(model.class_names) == 1000 and not model.training


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="unknown model 'resnet5'.*resnet50"):
        lu.load_model("resnet5")
    with pytest.raises(ValueError, match="embedding must be one of"):
        lu.load_model("simclr", weights=None, embedding="logits")
    with pytest.raises(ValueError, match="embedding= applies to simclr, swav, dino-resnet50, .*, swav-fair only"):
        lu.load_model("resnet50", weights=None, embedding="backbone")
    with pytest.raises(ValueError, match="IMAGENET1K_V2"):
        lu.load_model("resnet50", weights="imagenet")
    with pytest.raises(ValueError, match="'default' or None"):
        lu.load_model("swav", weights="IMAGENET1K_V1")


def test_shapes_models_are_dispatched(monkeypatch, tmp_path):
    calls = []
    fake = types.ModuleType("lafam_utils.shapes.shipped")
    fake.load_shapes_model = lambda name, **kwargs: calls.append((name, kwargs)) or nn.Identity()
    monkeypatch.setitem(sys.modules, "lafam_utils.shapes.shipped", fake)
    model = lu.load_model("shapes-simclr", weights=None, checkpoint=tmp_path / "m.pt", device="cpu")
    assert isinstance(model, nn.Identity)
    assert calls == [("shapes-simclr", {"weights": None, "checkpoint": tmp_path / "m.pt", "device": "cpu"})]


def test_corrupt_cached_download_says_to_delete_it(offline):
    offline.mkdir(parents=True)
    (offline / "resnet50-0676ba61.pth").write_bytes(b"<html>503 Service Unavailable</html>")
    with pytest.raises(CheckpointError, match=r"resnet50-0676ba61\.pth, the cached download of .*delete it"):
        lu.load_model("resnet50")


CALLS: list[str] = []


def fake_class(full_name: str, base: type = object) -> type:
    """A class pickled under ``full_name`` that records any construction or state set while loading."""
    module, _, name = full_name.rpartition(".")

    def record(self, *args, **kwargs):
        CALLS.append(full_name)

    return type(name, (base,), {"__module__": module, "__qualname__": name, "__setstate__": record, "__init__": record}
                if base is object else {"__module__": module, "__qualname__": name, "__setstate__": record})


@contextmanager
def registered(monkeypatch, *classes: type):
    """Make ``classes`` picklable under their module names, only while saving."""
    with monkeypatch.context() as patch:
        for cls in classes:
            parts = cls.__module__.split(".")
            for module in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
                if module not in sys.modules:
                    patch.setitem(sys.modules, module, types.ModuleType(module))
            patch.setattr(sys.modules[cls.__module__], cls.__name__, cls, raising=False)
        yield


LIGHTNING_LAYOUTS = {
    # version: (AttributeDict's module, callbacks keyed by class (True) or by state key, legacy file format)
    "1.0.8": ("pytorch_lightning.utilities.parsing", True, True),
    "1.2.10": ("pytorch_lightning.utilities.parsing", True, False),
    "1.4.9": ("pytorch_lightning.utilities.parsing", True, False),
    "1.6.5": ("pytorch_lightning.utilities.parsing", False, False),
    "1.8.6": ("lightning_lite.utilities.data", False, False),
    "1.9.5": ("lightning_fabric.utilities.data", False, False),
}


def lightning_file(contents: dict, path: Path, version: str, monkeypatch) -> Path:
    """``contents``' weights in a checkpoint laid out as Lightning ``version`` saved it."""
    attribute_module, keyed_by_class, legacy = LIGHTNING_LAYOUTS[version]
    attribute_dict = fake_class(f"{attribute_module}.AttributeDict", dict)
    checkpoint_cb = fake_class("pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint")
    early_stop = fake_class("pytorch_lightning.callbacks.early_stopping.EarlyStopping")
    online = fake_class("pl_bolts.callbacks.ssl_online.SSLOnlineEvaluator")
    callback_states = {
        checkpoint_cb: {
            "monitor": "val_loss",
            "best_model_score": torch.tensor(0.25),
            "best_model_path": "/ckpt/epoch=9.ckpt",
        },
        early_stop: {"wait_count": 2, "stopped_epoch": 0, "best_score": torch.tensor(0.3), "patience": 3},
        online: {"state_dict": {"weight": torch.randn(3, 2)}},
    }
    if not keyed_by_class:
        callback_states = {f"{cls.__name__}{{'monitor': 'val_loss'}}": state for cls, state in callback_states.items()}
    hyper = attribute_dict(arch="resnet50", first_conv=True, maxpool1=True, learning_rate=1e-3,
                           args=argparse.Namespace(gpus=8, dataset="imagenet"))
    weight = torch.randn(4, 4, requires_grad=True)
    checkpoint = {
        "epoch": 9, "global_step": 5000, "pytorch-lightning_version": version,
        "state_dict": contents["state_dict"],
        "callbacks": callback_states,
        "optimizer_states": [
            {
                "state": {
                    0: {"step": torch.tensor(5000.0), "exp_avg": torch.zeros(4, 4), "exp_avg_sq": torch.zeros(4, 4)}
                },
                "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-6, "params": [0]}],
            }
        ],
        "lr_schedulers": [
            {
                "base_lrs": [1e-3],
                "last_epoch": 9,
                "_step_count": 10,
                "verbose": False,
                "_get_lr_called_within_step": False,
                "_last_lr": [5e-4],
                "lr_lambdas": [None],
            }
        ],
        "hparams_name": "kwargs",
        "hyper_parameters": hyper,
        "native_amp_scaling_state": {"scale": 65536.0, "_growth_tracker": 0},
    }
    del weight
    with registered(monkeypatch, attribute_dict, checkpoint_cb, early_stop, online):
        torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)
    CALLS.clear()
    return path


@pytest.mark.parametrize("version", list(LIGHTNING_LAYOUTS))
def test_lightning_checkpoints_of_every_version_load_without_trust(
    simclr_contents, simclr, tmp_path, monkeypatch, version
):
    """Problem 6: checkpoints with AttributeDict and class-keyed callbacks used to need trust_checkpoint=True."""
    path = lightning_file(simclr_contents, tmp_path / f"lightning-{version}.ckpt", version, monkeypatch)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # what torch alone refuses
    model = lu.load_model("simclr", checkpoint=path)
    assert same_weights(model, simclr["backbone"])
    assert CALLS == []  # no code of the file's classes ran
    contents = lu.models.read_checkpoint(path)
    assert contents["hyper_parameters"]["arch"] == "resnet50"
    assert contents["hyper_parameters"]["args"].gpus == 8
    assert len(contents["callbacks"]) == 3 and all(isinstance(v, dict) for v in contents["callbacks"].values())


def test_lightning_checkpoint_with_a_foreign_configuration_is_still_checked(simclr_contents, tmp_path, monkeypatch):
    path = lightning_file(simclr_contents, tmp_path / "cifar.ckpt", "1.4.9", monkeypatch)
    contents = torch.load(path, weights_only=False)
    contents["hyper_parameters"]["first_conv"] = False
    with registered(
        monkeypatch,
        *{type(k) for k in [contents["hyper_parameters"]]},
        *[k for k in contents["callbacks"] if isinstance(k, type)],
    ):
        torch.save(contents, path)
    with pytest.raises(CheckpointError, match="first_conv"):
        lu.load_model("simclr", checkpoint=path)


class Payload:
    """A pickle that runs a shell command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_never_runs_and_the_message_names_the_blocked_global(simclr_contents, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    path = lightning_file(simclr_contents, tmp_path / "evil.ckpt", "1.4.9", monkeypatch)
    contents = torch.load(path, weights_only=False)
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()  # the payload works with plain pickle
    marker.unlink()
    contents["hyper_parameters"]["evil"] = Payload(marker)
    with registered(
        monkeypatch, type(contents["hyper_parameters"]), *[k for k in contents["callbacks"] if isinstance(k, type)]
    ):
        torch.save(contents, path)
    with pytest.raises(CheckpointError) as error:
        lu.load_model("simclr", checkpoint=path)
    message = str(error.value)
    assert f"blocked global {os.system.__module__}.system" in message
    assert "weights_only" not in message and "trust_checkpoint" not in message
    assert not marker.exists()


def test_weights_dir_and_checkpoints_reach_load_model(offline, resnet50, simclr_ckpt, simclr, tmp_path, monkeypatch):
    """Parameter sets name local weights: a folder of published files, or one file per model."""
    folder = tmp_path / "weights"
    path = cached_under_its_hash(resnet50.state_dict(), folder, "resnet50")
    monkeypatch.setattr(
        torchvision.models.ResNet50_Weights.IMAGENET1K_V1.value,
        "url",
        f"https://download.pytorch.org/models/{path.name}",
    )
    (folder / "simclr_imagenet.ckpt").write_bytes(simclr_ckpt.read_bytes())
    run = setup({"dataset": "voc", "weights_dir": str(folder)})
    assert same_weights(run.models["resnet50"], resnet50) and same_weights(run.models["simclr"], simclr["backbone"])
    assert not offline.exists()  # the torch hub cache was not used
    with pytest.raises(
        DownloadError, match=rf"swav_imagenet\.ckpt \(file 'swav_imagenet\.ckpt' in the folder {folder}"
    ):
        run.models["swav"]
    run = setup({"dataset": "voc", "checkpoints": {"simclr": str(simclr_ckpt)}, "weights_dir": str(tmp_path / "empty")})
    assert same_weights(run.models["simclr"], simclr["backbone"])
    with pytest.raises(ValueError, match=r"checkpoints name models that are not used: \['swav'\]"):
        setup({"dataset": "voc", "encoders": ["simclr"], "checkpoints": {"swav": str(simclr_ckpt)}})
