"""Small CNNs trained locally on the synthetic shapes: a supervised classifier and a SimCLR encoder.

``ShapesNet`` mirrors a ResNet's stage layout and strides at a fraction of its cost: ``stem``
(1/4), ``layer1`` (1/4), ``layer2`` (1/8), ``layer3`` (1/16), ``layer4`` (1/32), global average
pooling and a linear head. ``layer4`` is the ResNet50 ``layer4`` analogue: 7x7 for 224 inputs,
so every explainer's default layer works unchanged.

``load_shapes_model("shapes-supervised")`` loads the classifier, ``load_shapes_model("shapes-simclr")``
the same backbone trained with SimCLR (no labels) and ``"shapes-simclr-background"`` the
background-biased negative control, from the files shipped in ``data/models`` (recipe and sha256
in its ``MANIFEST.json``, checked on load); ``python -m lafam_utils.shapes_retrain`` (``make
models``) retrains them from ``RECIPES``. Training is deterministic on one torch thread.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from .progress import progress_bar
from .synthetic import SHAPE_CLASSES, SyntheticShapes

Objective = Literal["supervised", "simclr"]
TRAIN_SEED_OFFSET = 1 << 20  # training images use seeds far from the evaluation seeds (0, 1, ...)
MODELS_DIR = Path(__file__).resolve().parent.parent / "data" / "models"


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class ShapesNet(nn.Module):
    """A ResNet-shaped CNN, pooling and a head, cheap enough to train on a laptop CPU in minutes.

    ``stem`` is two stride-2 3x3 convs (1/4, like ResNet's conv1 + max-pool); ``layer1`` one 3x3
    conv (1/4); ``layer2`` .. ``layer4`` a stride-2 and a plain 3x3 conv each (1/8, 1/16, 1/32);
    every conv is followed by BatchNorm and ReLU. With ``num_classes`` the head is linear
    and ``forward`` returns logits; with ``None`` it returns the pooled ``layer4`` features.
    """

    def __init__(self, num_classes: int | None = len(SHAPE_CLASSES), widths: tuple[int, ...] = (16, 16, 32, 64, 128)):
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"widths must give 5 stage widths (stem, layer1..layer4), got {widths}")
        self.stem = nn.Sequential(*_conv_bn_relu(3, widths[0], stride=2), *_conv_bn_relu(widths[0], widths[0], stride=2))
        self.layer1 = nn.Sequential(*_conv_bn_relu(widths[0], widths[1]))
        for k in range(2, 5):
            stage = _conv_bn_relu(widths[k - 1], widths[k], stride=2) + _conv_bn_relu(widths[k], widths[k])
            self.add_module(f"layer{k}", nn.Sequential(*stage))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes) if num_classes else nn.Identity()
        self.embedding_dim = widths[-1]

    def features(self, x: Tensor) -> Tensor:
        """The pooled ``layer4`` output, (B, widths[-1])."""
        for stage in (self.stem, self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
        return self.pool(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


Window = Literal["object", "contains", "random"]
ViewFactor = Literal["shared", "independent"]
SecondWindow = Literal["same", "own"]


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe; its hash names the cache file, so a changed recipe trains anew.

    Images are rendered at ``size`` (the evaluation size, so objects have their evaluation pixel
    scale) and cut to a ``crop`` window, which costs ``(crop / size)**2`` of full images. ``window`` places it:
    ``"object"`` centred on the object (jittered by up to a quarter of the window), ``"contains"``
    anywhere the whole object fits (the object at a random place; centred on it when it does not
    fit), ``"random"`` anywhere in the image (no mask used). The two SimCLR views of an image are
    augmentations of one rendering unless: ``backgrounds="independent"``, the second view shows
    the objects on an independent background; ``colours="independent"``, painted in independent
    colours (both rendered so: same geometry, no label used); ``second_window="own"``, the second
    view is cut at its own window (placed by ``window``), not at the first view's.
    """

    size: int = 224
    crop: int = 128
    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    temperature: float = 0.2
    seed: int = 0
    window: Window = "random"
    backgrounds: ViewFactor = "shared"
    colours: ViewFactor = "shared"
    second_window: SecondWindow = "same"

    def __post_init__(self) -> None:
        if self.window not in ("object", "contains", "random"):
            raise ValueError(f"window must be 'object', 'contains' or 'random', got {self.window!r}")
        for name in ("backgrounds", "colours"):
            if getattr(self, name) not in ("shared", "independent"):
                raise ValueError(f"{name} must be 'shared' or 'independent', got {getattr(self, name)!r}")
        if self.second_window not in ("same", "own"):
            raise ValueError(f"second_window must be 'same' or 'own', got {self.second_window!r}")

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


RECIPES: dict[str, tuple[Objective, TrainConfig]] = {
    "shapes-supervised": ("supervised", TrainConfig(crop=192, steps=800, window="contains")),
    "shapes-simclr": (
        "simclr",
        TrainConfig(steps=3000, window="random", backgrounds="independent", colours="independent", second_window="own"),
    ),
    "shapes-simclr-background": ("simclr", TrainConfig(steps=150, window="object", backgrounds="shared")),
}
"""The shipped models' recipes. ``shapes-simclr-background`` is the negative control: views cut
around the object from one image whose background texture is unique to it, so SimCLR can tell
the images apart by their background, and does."""
SHAPES_MODELS = tuple(RECIPES)


class _TrainingBatches(Dataset):
    """Batch ``step``: windows of fresh single-object images (never the evaluation seeds), windows
    of their second views (see ``TrainConfig``) and the labels."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.data = SyntheticShapes(config.steps * config.batch_size, "single", TRAIN_SEED_OFFSET + config.seed, config.size)

    def __len__(self) -> int:
        return self.config.steps

    def _window(self, mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
        size, crop, window = self.config.size, min(self.config.crop, self.config.size), self.config.window
        if window == "random":
            return tuple(int(c) for c in rng.integers(0, size - crop + 1, 2))
        ys, xs = np.nonzero(mask)
        corner = []
        for low, high, centre in ((ys.min(), ys.max(), ys.mean()), (xs.min(), xs.max(), xs.mean())):
            if window == "object":
                start = centre - crop / 2 + rng.uniform(-crop / 4, crop / 4)
            elif high - low + 1 <= crop:
                start = rng.uniform(max(0, high + 1 - crop), min(low, size - crop))
            else:
                start = (low + high + 1 - crop) / 2
            corner.append(int(np.clip(start, 0, size - crop)))
        return corner[0], corner[1]

    def __getitem__(self, step: int) -> tuple[Tensor, Tensor, Tensor]:
        config = self.config
        crop, b = min(config.crop, config.size), config.batch_size
        background = 0 if config.backgrounds == "independent" else None
        colours = 0 if config.colours == "independent" else None
        rng = np.random.default_rng([config.seed, step])
        first, second, labels = [], [], []
        for i in range(step * b, (step + 1) * b):
            item = self.data[i]
            mask = item["mask"].numpy()
            windows = [self._window(mask, rng) for _ in range(2 if config.second_window == "own" else 1)]
            cuts = [(slice(None), slice(top, top + crop), slice(left, left + crop)) for top, left in windows]
            view = item if background is None and colours is None else self.data.item(i, background=background, colours=colours)
            first.append(item["image"][cuts[0]])
            second.append(view["image"][cuts[-1]])
            labels.append(item["label_ids"][0])
        return torch.stack(first), torch.stack(second), torch.tensor(labels)


def augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """A SimCLR view of each normalised image: random crop-zoom, rotation, flip, channel permutation,
    contrast and brightness; batched, on ``x``'s device."""
    b = x.shape[0]

    def uniform(low: float, high: float, *shape: int) -> Tensor:
        return (low + (high - low) * torch.rand(b, *shape, generator=generator)).to(x.device)

    scale, angle = uniform(0.55, 1.0), uniform(0.0, 2 * math.pi)
    flip = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0)
    cos, sin = scale * torch.cos(angle), scale * torch.sin(angle)
    shift = uniform(-1.0, 1.0, 2) * (1 - scale)[:, None]
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    views = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    permutation = torch.argsort(torch.rand(b, 3, generator=generator), dim=1).to(x.device)
    views = views.gather(1, permutation[:, :, None, None].expand_as(views))
    return views * uniform(0.6, 1.4, 1, 1, 1) + uniform(-0.5, 0.5, 1, 1, 1)


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """SimCLR's NT-Xent loss: each view must pick its partner among the 2B - 1 other views."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    b = z1.shape[0]
    partners = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(logits, partners)


def _new_model(objective: Objective) -> ShapesNet:
    """A random-init classifier (with ``class_names``) or encoder (``class_names`` None)."""
    model = ShapesNet(len(SHAPE_CLASSES) if objective == "supervised" else None)
    model.class_names = list(SHAPE_CLASSES) if objective == "supervised" else None
    return model


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_shapes_model(
    objective: Objective,
    config: TrainConfig = TrainConfig(),
    progress: bool = True,
    threads: int | None = 1,
    workers: int = 1,
) -> ShapesNet:
    """Train a ``ShapesNet`` on fresh single-object images, deterministically by ``config.seed``.

    ``"supervised"``: cross-entropy on the shape class. ``"simclr"``: NT-Xent between two
    augmented views through a 2-layer projection head (dropped afterwards); no labels are used.
    ``threads`` bounds torch's threads while training (default 1: these small convs gain little
    from a second thread and lose much on a busy machine; ``None`` keeps torch's setting);
    ``workers`` processes render the images meanwhile (0: in the training process).
    Returns the model in eval mode on the CPU.
    """
    if objective not in ("supervised", "simclr"):
        raise ValueError(f"objective must be 'supervised' or 'simclr', got {objective!r}")
    with torch.random.fork_rng(devices=[]), _torch_threads(threads):
        torch.manual_seed(config.seed)
        model = _new_model(objective)
        width = model.embedding_dim
        head = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 64))
        params = list(model.parameters()) + (list(head.parameters()) if objective == "simclr" else [])
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.steps)
        generator = torch.Generator().manual_seed(config.seed)
        model.train().to(memory_format=torch.channels_last)
        batches = DataLoader(_TrainingBatches(config), batch_size=None, num_workers=workers)
        bar = progress_bar(batches, desc=f"shapes-{objective}", disable=not progress)
        for images, others, labels in bar:
            images = images.contiguous(memory_format=torch.channels_last)
            if objective == "supervised":
                loss = F.cross_entropy(model(images), labels)
            else:
                views = augment(images, generator), augment(others.contiguous(memory_format=torch.channels_last), generator)
                loss = nt_xent(head(model(views[0])), head(model(views[1])), config.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return model.to(memory_format=torch.contiguous_format).eval()


def cache_dir() -> Path:
    """Where weights trained from a custom recipe are kept: ``$LAFAM_CACHE``, else ``~/.cache/lafam_utils``."""
    return Path(os.environ.get("LAFAM_CACHE") or Path.home() / ".cache" / "lafam_utils")


class ShippedModelError(RuntimeError):
    """A shipped model file is missing, altered, or was trained from another recipe than the code's."""


def model_file_bytes(model: ShapesNet, objective: Objective, config: TrainConfig) -> bytes:
    """The bytes of a model file: tensors and plain values only (``torch.load(weights_only=True)``),
    the same bytes for the same weights and recipe whatever the file is called. The recipe is
    stored as freshly decoded JSON values: pickle writes one object once, so equal strings that
    happen to be one object (interned literals) would otherwise change the bytes."""
    buffer = io.BytesIO()
    recipe = json.loads(json.dumps(asdict(config)))
    torch.save({"state_dict": model.state_dict(), "objective": objective, "config": recipe}, buffer)
    return buffer.getvalue()


def read_manifest(directory: Path | None = None) -> dict[str, dict]:
    """``MANIFEST.json`` of ``directory`` (default ``MODELS_DIR``): model name -> file, sha256, objective, recipe."""
    path = (directory or MODELS_DIR) / "MANIFEST.json"
    if not path.is_file():
        raise ShippedModelError(f"{path} does not exist; the shipped shapes models are expected there (retrain and record them: make models MODELS_ARGS=--ship)")
    return json.loads(path.read_text())


def ship_model(name: str, model: ShapesNet, directory: Path | None = None) -> str:
    """Write ``name``'s file (``<name>.pt``) into ``directory`` (default ``MODELS_DIR``) and record
    it in its manifest; return its sha256."""
    objective, config = RECIPES[name]
    directory = directory or MODELS_DIR
    data = model_file_bytes(model, objective, config)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.pt").write_bytes(data)
    manifest_path = directory / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    digest = hashlib.sha256(data).hexdigest()
    manifest[name] = {"file": f"{name}.pt", "sha256": digest, "objective": objective, "recipe": asdict(config)}
    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
    return digest


def load_shipped_state(name: str, directory: Path | None = None) -> dict[str, Tensor]:
    """The state dict of ``name``'s shipped file in ``directory`` (default ``MODELS_DIR``), after
    checking it against the manifest: the
    file's sha256, and the recipe (objective and ``TrainConfig``) of the manifest, of the file
    and of ``RECIPES`` must all agree, else a ``ShippedModelError`` says which differs."""
    objective, config = RECIPES[name]
    directory = directory or MODELS_DIR
    entry = read_manifest(directory).get(name)
    if entry is None:
        raise ShippedModelError(f"{directory / 'MANIFEST.json'} has no entry for {name!r} (retrain and record them: make models MODELS_ARGS=--ship)")
    path = directory / entry["file"]
    if not path.is_file():
        raise ShippedModelError(f"{path}, the shipped weights of {name!r}, does not exist (retrain and record them: make models MODELS_ARGS=--ship)")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise ShippedModelError(
            f"{path} has sha256 {digest}, but the manifest records {entry['sha256']}: the file was altered "
            "or replaced (restore it from git, or retrain and record it: make models MODELS_ARGS=--ship)"
        )
    expected = {"objective": objective, "recipe": asdict(config)}
    recorded = {"objective": entry["objective"], "recipe": entry["recipe"]}
    if recorded != expected:
        raise ShippedModelError(
            f"{name!r} was shipped trained with {recorded}, but the code's recipe is {expected} "
            "(retrain and record it: make models MODELS_ARGS=--ship)"
        )
    stored = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if {"objective": stored.get("objective"), "recipe": stored.get("config")} != expected:
        raise ShippedModelError(f"{path} holds a model of another recipe than its manifest entry records")
    return stored["state_dict"]


def load_shapes_model(
    name: str,
    weights: Literal["default"] | None = "default",
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    *,
    config: TrainConfig | None = None,
    progress: bool = True,
) -> ShapesNet:
    """A shapes model in eval mode: ``"shapes-supervised"`` (logits over ``SHAPE_CLASSES``, see
    ``model.class_names``), ``"shapes-simclr"`` or ``"shapes-simclr-background"`` ((B, 128) embeddings).

    ``weights="default"`` loads the weights shipped in ``data/models`` (checked against their
    recorded sha256 and recipe; nothing is trained). ``config``, a recipe other than the shipped
    one, trains on first use and caches the weights in ``cache_dir()``. ``weights=None`` gives a
    random init; ``checkpoint`` (which takes precedence) loads a state dict, or a model file's
    ``{"state_dict": ...}``, from a file.
    """
    if name not in SHAPES_MODELS:
        raise ValueError(f"unknown shapes model {name!r}; expected one of {SHAPES_MODELS}")
    if weights not in ("default", None):
        raise ValueError(f"weights must be 'default' or None, got {weights!r}")
    objective = RECIPES[name][0]
    model = _new_model(objective)
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state))
    elif weights == "default" and (config is None or config == RECIPES[name][1]):
        model.load_state_dict(load_shipped_state(name))
    elif weights == "default":
        path = cache_dir() / f"{name}-{config.digest()}.pt"
        if not path.exists():
            trained = train_shapes_model(objective, config, progress)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(model_file_bytes(trained, objective, config))
            os.replace(partial, path)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
    return model.eval().to(device)


__all__ = [
    "RECIPES",
    "SHAPES_MODELS",
    "ShapesNet",
    "ShippedModelError",
    "TrainConfig",
    "cache_dir",
    "load_shapes_model",
    "load_shipped_state",
    "model_file_bytes",
    "nt_xent",
    "read_manifest",
    "ship_model",
    "train_shapes_model",
]
