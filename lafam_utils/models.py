"""Models by name: the paper's supervised ResNet50 and the Lightning Bolts SimCLR and SwAV encoders
(and, through ``ssl_releases``, six official self-supervised ResNet50 releases).

All three are torchvision ResNet50s, so a layer name ("layer4", "layer3.5.conv3") means the same
in each; the self-supervised encoders replace ``fc`` by their embedding. Weights come from the web
(cached in ``torch.hub.get_dir()/checkpoints``) or from a local file (``checkpoint=``). Inputs are
preprocessed with ``lafam_utils.transforms.preprocess_image`` (ImageNet normalisation) for all.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import http.client
import pickle
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from .shapes_models import SHAPES_MODELS

BOLTS_URLS = {
    "simclr": "https://pl-bolts-weights.s3.us-east-2.amazonaws.com/simclr/bolts_simclr_imagenet/simclr_imagenet.ckpt",
    "swav": "https://pl-bolts-weights.s3.us-east-2.amazonaws.com/swav/bolts_swav_imagenet/swav_imagenet.ckpt",
}
PAPER_EMBEDDINGS = {"simclr": "backbone", "swav": "projection"}
EMBEDDINGS = ("backbone", "projection")
PAPER_WEIGHTS = {"resnet50": "IMAGENET1K_V1"}
TORCHVISION_MODELS = tuple(torchvision.models.list_models(module=torchvision.models))

# Where a Bolts checkpoint keeps the ResNet50 and the projection head, and its parts no embedding
# uses: Bolts' unused 1000-way ``fc``, SwAV's prototypes, the online linear probe.
BOLTS_BACKBONE = {"simclr": "encoder.", "swav": "model."}
BOLTS_HEAD = {"simclr": "projection.model.", "swav": "model.projection_head."}
BOLTS_UNUSED = {
    "simclr": ("encoder.fc.", "non_linear_evaluator."),
    "swav": ("model.prototypes.", "non_linear_evaluator."),
}
BOLTS_IMAGENET_CONFIG = {"arch": "resnet50", "first_conv": True, "maxpool1": True}


class DownloadError(RuntimeError):
    """Weights could not be downloaded (offline, HTTP error, hash mismatch)."""


class CheckpointError(RuntimeError):
    """A weights file cannot be read, needs trust to unpickle, or does not fit the model."""


TRAINING_RECORD_MODULES = ("pytorch_lightning.", "lightning.", "lightning_fabric.", "lightning_lite.", "pl_bolts.", "torchmetrics.")
"""Modules whose objects a Lightning/Bolts checkpoint holds beside the weights (hyper-parameters as
``AttributeDict``, callback states keyed by the callback class, trainer enums); they are read as
inert ``TrainingRecord`` stand-ins, so no code of these packages (installed or not) runs."""
HARMLESS_GLOBALS = {
    "argparse.Namespace": argparse.Namespace,
    "numpy.dtype": "numpy:dtype",
    "numpy.core.multiarray.scalar": "numpy.core.multiarray:scalar",
    "numpy._core.multiarray.scalar": "numpy._core.multiarray:scalar",
}
"""Globals of training records that only hold data: read as themselves."""
DANGEROUS_MODULES = ("os", "posix", "nt", "subprocess", "builtins", "sys", "shutil", "socket", "importlib",
                     "runpy", "pty", "code", "webbrowser", "ctypes", "multiprocessing", "pickle", "marshal", "types")


class NormalizedProjection(nn.Sequential):
    """SimCLR's and SwAV's projection head, 2048 -> 2048 -> 128, with an L2-normalised output."""

    def __init__(self, out_bias: bool, width: int = 2048, out_dim: int = 128) -> None:
        super().__init__(
            nn.Linear(width, width),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True),
            nn.Linear(width, out_dim, bias=out_bias),
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(super().forward(x), dim=1)


def load_model(
    name: str,
    weights: str | None = "default",
    checkpoint: str | Path | None = None,
    device: torch.device | str | None = None,
    embedding: str | None = None,
    trust_checkpoint: bool = False,
    weights_dir: str | Path | None = None,
) -> nn.Module:
    """A model by name, in eval mode, on ``device``.

    - ``"resnet50"``: torchvision ResNet50 with the paper's IMAGENET1K_V1 weights; 1000 logits.
      Any other torchvision classification model (``"resnet18"``, ``"vgg16"``, ...) by its name,
      with torchvision's default weights or ``weights="<enum name>"`` (e.g. ``"IMAGENET1K_V2"``).
      Classifiers carry ``model.class_names`` (the 1000 ImageNet categories).
    - ``"dino-resnet50"``, ``"mocov2"``, ``"mocov3-resnet50"``, ``"barlowtwins"``, ``"vicreg"``,
      ``"swav-fair"``: the official ResNet50 releases of these self-supervised methods
      (``lafam_utils.ssl_releases``); ``embedding="backbone"`` (default) or ``"projection"``.
    - ``"simclr"``, ``"swav"``: the Bolts ImageNet ResNet50 encoders, forward -> (B, D) embedding.
      ``embedding="backbone"``: pooled 2048-d layer4 features; ``"projection"``: the 128-d
      L2-normalised projection-head output. Defaults are the embeddings the paper's RELAX used:
      SimCLR -> backbone (its ``encoder(x)[0]``), SwAV -> projection (its ``model(x)[0]``).
    - ``"shapes-supervised"``, ``"shapes-simclr"``, ``"shapes-simclr-background"``: the CNNs of the
      synthetic shapes benchmark, shipped in ``data/models`` (the last a background-biased negative control).

    ``weights=None``: random init, no download. Downloads are cached (see ``fetch``); torchvision's
    are hash-checked and loaded by torchvision. ``checkpoint``: a local file instead of the
    download (a Bolts/Lightning ``.ckpt``, a plain state dict or a torchvision ``.pth``), read with
    ``read_checkpoint`` (no code from the file runs; ``trust_checkpoint=True`` unpickles fully).
    ``weights_dir``: a folder holding the published files under their download names (e.g.
    ``resnet50-0676ba61.pth``, ``simclr_imagenet.ckpt``), used instead of the torch hub cache
    (hash-checked where the name has a hash; a missing file is downloaded there). The shapes
    models load their shipped files and ignore it.
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    from .ssl_releases import RELEASES, load_release

    if embedding is not None and name not in (*BOLTS_URLS, *RELEASES):
        raise ValueError(f"embedding= applies to {', '.join((*BOLTS_URLS, *RELEASES))} only, not {name!r}")
    if name in SHAPES_MODELS:
        from .shapes_models import load_shapes_model

        return load_shapes_model(name, weights=weights, checkpoint=checkpoint, device=device)
    if name in BOLTS_URLS:
        model = _bolts_encoder(name, weights, checkpoint, embedding, trust_checkpoint, weights_dir)
    elif name in RELEASES:
        model = load_release(name, weights, checkpoint, embedding, trust_checkpoint, weights_dir)
    elif name in TORCHVISION_MODELS:
        model = _torchvision_classifier(name, weights, checkpoint, trust_checkpoint, weights_dir)
    else:
        close = difflib.get_close_matches(name, (*BOLTS_URLS, *RELEASES, *SHAPES_MODELS, *TORCHVISION_MODELS), n=5)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise ValueError(
            f"unknown model {name!r}.{hint} Known: {', '.join((*BOLTS_URLS, *RELEASES, *SHAPES_MODELS))} "
            "and torchvision's classification models (torchvision.models.list_models())."
        )
    model.eval()
    return model if device is None else model.to(device)


def _torchvision_classifier(
    name: str, weights: str | None, checkpoint: str | Path | None, trust: bool, weights_dir: str | Path | None
) -> nn.Module:
    """A torchvision classifier with its named weights, random init, or a local state dict."""
    available = torchvision.models.get_model_weights(name)
    if weights is not None and weights != "default" and weights not in available.__members__:
        raise ValueError(
            f"weights for {name!r} must be 'default', None or one of "
            f"{', '.join(available.__members__)}; got {weights!r}"
        )
    if weights == "default":
        weights = PAPER_WEIGHTS.get(name, "DEFAULT")
    chosen = available[weights] if weights is not None else available.DEFAULT
    if checkpoint is None and weights is not None and weights_dir is not None:
        checkpoint = fetch(chosen.url, weights_dir)
    if checkpoint is None and weights is not None:
        path = fetch(chosen.url)
        try:
            model = torchvision.models.get_model(name, weights=chosen)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
            raise CheckpointError(
                f"{path}, the cached download of {chosen.url}, cannot be loaded ({_reason(err)}); "
                "delete it to download it again"
            ) from None
    else:
        model = torchvision.models.get_model(name, weights=None)
        if checkpoint is not None:
            state = read_checkpoint(checkpoint, trust)
            _load_weights(model, state.get("state_dict", state), checkpoint, name)
    model.class_names = list(chosen.meta["categories"])
    return model


def _bolts_encoder(
    name: str,
    weights: str | None,
    checkpoint: str | Path | None,
    embedding: str | None,
    trust: bool,
    weights_dir: str | Path | None,
) -> nn.Module:
    """A torchvision ResNet50 whose ``fc`` gives the chosen SimCLR or SwAV embedding."""
    if weights not in ("default", None):
        raise ValueError(f"weights for {name!r} must be 'default' or None, got {weights!r}")
    embedding = embedding or PAPER_EMBEDDINGS[name]
    if embedding not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {embedding!r}")
    model = torchvision.models.resnet50(weights=None)
    model.fc = nn.Identity() if embedding == "backbone" else NormalizedProjection(out_bias=name == "swav")
    if checkpoint is None and weights is None:
        return model
    source = checkpoint if checkpoint is not None else fetch(BOLTS_URLS[name], weights_dir)
    state = torchvision_state_dict(name, read_checkpoint(source, trust), source)
    if embedding == "backbone":
        state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    _load_weights(model, state, source, f"{name} ({embedding} embedding)")
    return model


def torchvision_state_dict(name: str, checkpoint: dict[str, Any], source: str | Path) -> dict[str, Tensor]:
    """A Bolts SimCLR/SwAV checkpoint's weights under torchvision's ResNet50 names, head as ``fc``.

    SwAV's extra 1-pixel pad before a padding-2 ``conv1`` equals torchvision's padding 3, so the
    weights carry over unchanged. A state dict already in torchvision's names passes through.
    """
    config = checkpoint.get("hyper_parameters")
    config = vars(config) if isinstance(config, argparse.Namespace) else config
    if isinstance(config, Mapping):
        wrong = {k: config[k] for k, v in BOLTS_IMAGENET_CONFIG.items() if k in config and config[k] != v}
        if wrong:
            raise CheckpointError(
                f"{source} is a {name} checkpoint with {wrong}; "
                f"expected the ImageNet configuration {BOLTS_IMAGENET_CONFIG}"
            )
    state = checkpoint.get("state_dict", checkpoint)
    backbone, head, unused = BOLTS_BACKBONE[name], BOLTS_HEAD[name], BOLTS_UNUSED[name]
    if not any(key.startswith(backbone) for key in state):
        return state
    renamed = {}
    for key, value in state.items():
        if key.startswith(head):
            renamed["fc." + key[len(head) :]] = value
        elif key.startswith(backbone) and not key.startswith(unused):
            renamed[key[len(backbone) :]] = value
        elif not key.startswith(unused):
            renamed[key] = value
    return renamed


def _load_weights(model: nn.Module, state: Any, source: str | Path, what: str) -> None:
    """Load a state dict exactly: every parameter and buffer present, nothing unknown left over."""
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{source} does not hold a state dict (a dict of tensors) for {what}")
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    resized = [
        f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    problems = [
        f"{label} ({len(keys)}): {', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}"
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", resized))
        if keys
    ]
    if problems:
        raise CheckpointError(f"{source} does not fit {what}: " + "; ".join(problems))
    model.load_state_dict(state)


def read_checkpoint(path: str | Path, trust: bool = False) -> dict[str, Any]:
    """Read a weights file on the CPU without running code from it (unless ``trust``).

    Plain files are read with ``torch.load(weights_only=True)``. Lightning/Bolts checkpoints of
    any Lightning version also hold training records (``AttributeDict`` hyper-parameters, callback
    states keyed by the callback class, ``argparse.Namespace``); those are read by a restricted
    unpickler that allows torch's weights-only globals, maps the records to inert stand-ins
    (``TrainingRecord``) and refuses every other global with a ``CheckpointError`` naming it.
    ``trust=True`` unpickles such a file fully (it can run arbitrary code: only for files you made).
    Unreadable files raise a ``CheckpointError`` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "WeightsUnpickler" not in str(err):
            raise CheckpointError(f"{path} is corrupt or not a PyTorch checkpoint ({_reason(err)})") from None
        loaded = _load_trusted(path) if trust else _load_restricted(path)
    except Exception as err:
        raise CheckpointError(
            f"{path} is corrupt, truncated or not a PyTorch checkpoint ({_reason(err)})"
        ) from None
    if not isinstance(loaded, dict):
        raise CheckpointError(
            f"{path} holds a {type(loaded).__name__}; expected a state dict or a Lightning checkpoint"
        )
    return loaded


class TrainingRecord(dict):
    """Inert stand-in for an object of a training package found in a checkpoint: it keeps what the
    file stored (items, constructor ``args``, ``state``) and runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __reduce__(self) -> tuple:
        return (dict, (dict(self),))


class BlockedGlobal(pickle.UnpicklingError):
    """A checkpoint refers to a global that reading weights never needs."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


_STAND_INS: dict[str, type] = {}


def _stand_in(full_name: str) -> type:
    """One ``TrainingRecord`` subclass per global name, so that e.g. two callback classes stay two keys."""
    if full_name not in _STAND_INS:
        module, _, name = full_name.rpartition(".")
        _STAND_INS[full_name] = type(name, (TrainingRecord,), {"__module__": f"{__name__}.stand_in.{module}"})
    return _STAND_INS[full_name]


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only torch's weights-only globals, harmless data types and training-record stand-ins."""

    def find_class(self, module: str, name: str) -> Any:
        from torch._weights_only_unpickler import _get_allowed_globals  # torch's own weights-only allow-list

        full_name = f"{module}.{name}"
        allowed = _get_allowed_globals()
        if full_name in allowed:
            return allowed[full_name]
        if full_name in HARMLESS_GLOBALS:
            found = HARMLESS_GLOBALS[full_name]
            if isinstance(found, str):
                import importlib

                owner, _, attribute = found.partition(":")
                return getattr(importlib.import_module(owner), attribute)
            return found
        if full_name.startswith(TRAINING_RECORD_MODULES):
            return _stand_in(full_name)
        raise BlockedGlobal(full_name)


_RESTRICTED_PICKLE = types.ModuleType("lafam_restricted_pickle")
_RESTRICTED_PICKLE.Unpickler = _RestrictedUnpickler
_RESTRICTED_PICKLE.load = lambda file, **kwargs: _RestrictedUnpickler(file, **kwargs).load()
_RESTRICTED_PICKLE.__name__ = "lafam_restricted_pickle"


def _load_restricted(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RESTRICTED_PICKLE)
    except BlockedGlobal as blocked:
        if blocked.name.split(".")[0] in DANGEROUS_MODULES:
            raise CheckpointError(
                f"{path} was not loaded: blocked global {blocked.name}, which unpickling it would call. A weights "
                "file never needs it; this file looks malicious or damaged. Do not load it."
            ) from None
        raise CheckpointError(
            f"{path} was not loaded: blocked global {blocked.name}, a Python object beside the weights that "
            "is neither a tensor, a container nor a Lightning/Bolts training record. If you made this file "
            "yourself, pass trust_checkpoint=True to unpickle it fully (that runs its code)."
        ) from None
    except Exception as err:
        raise CheckpointError(f"{path} is corrupt or cannot be unpickled ({_reason(err)})") from None


def _load_trusted(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(f"{path} is corrupt or cannot be unpickled ({_reason(err)})") from None


_VERIFIED: set[tuple[str, int, int]] = set()


def check_hash(path: Path, url: str) -> None:
    """Raise unless the SHA-256 of a cached file starts with the hash prefix in its name (torchvision's
    ``<name>-<prefix>.pth`` convention); a file without a prefix is not checked. Remembered per
    (path, size, mtime), so each file is hashed once per process."""
    prefix = torch.hub.HASH_REGEX.search(path.name)
    status = path.stat()
    key = (str(path), status.st_size, status.st_mtime_ns)
    if prefix is None or key in _VERIFIED:
        return
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(prefix.group(1)):
        raise CheckpointError(
            f"{path}, the cached download of {url}, is damaged or not the published file: its SHA-256 starts "
            f"with {digest.hexdigest()[:len(prefix.group(1))]}, its name promises {prefix.group(1)}; "
            "delete it to download it again"
        )
    _VERIFIED.add(key)


def fetch(url: str, directory: str | Path | None = None, file_name: str | None = None) -> Path:
    """The cached copy of ``url`` in ``directory`` (default ``torch.hub.get_dir()/checkpoints``),
    downloaded on first use; a cached file whose name carries a hash prefix is checked against it
    (``check_hash``).

    It is cached under the URL's file name, or ``file_name`` where releases share one (``resnet50.pth``).

    A failed download raises ``DownloadError`` naming the URL, the file it is expected as, and the
    two ways around it: place the file there, or pass ``checkpoint=`` to ``load_model``.
    """
    directory = Path(directory) if directory is not None else Path(torch.hub.get_dir()) / "checkpoints"
    path = directory / (file_name or Path(urlparse(url).path).name)
    if path.is_file():
        check_hash(path, url)
        return path
    hash_prefix = torch.hub.HASH_REGEX.search(path.name)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), hash_prefix=hash_prefix and hash_prefix.group(1))
    except (OSError, RuntimeError, http.client.HTTPException) as err:
        raise DownloadError(
            f"could not download {url} ({type(err).__name__}: {_reason(err)}). Weights are expected at "
            f"{path} (file {path.name!r} in the folder {directory}; weights_dir= or $TORCH_HOME choose it). Download "
            "it there by hand, or pass checkpoint='/path/to/" + path.name + "' to load_model."
        ) from None
    return path


def _reason(err: BaseException) -> str:
    """The first line of an error's message (after torch's weights-only preamble, if any)."""
    text = str(err).partition("WeightsUnpickler error:")[2].strip() or str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


__all__ = [
    "BOLTS_URLS",
    "CheckpointError",
    "DownloadError",
    "NormalizedProjection",
    "TrainingRecord",
    "check_hash",
    "fetch",
    "load_model",
    "read_checkpoint",
    "torchvision_state_dict",
]
