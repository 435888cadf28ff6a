"""Small CNNs trained locally on the synthetic shapes: a supervised classifier and a SimCLR encoder.

``ShapesNet`` mirrors a ResNet's stage layout and strides at a fraction of its cost: ``stem``
(1/4), ``layer1`` (1/4), ``layer2`` (1/8), ``layer3`` (1/16), ``layer4`` (1/32), global average
pooling and a linear head. ``layer4`` is the ResNet50 ``layer4`` analogue: 7x7 for 224 inputs,
so every explainer's default layer works unchanged.

``load_shapes_model("shapes-supervised")`` trains the classifier on first use,
``load_shapes_model("shapes-simclr")`` the same backbone with SimCLR (no labels); both are cached
in ``$LAFAM_CACHE`` (default ``~/.cache/lafam_utils``) and load from there in well under a second.
"""

from __future__ import annotations

import hashlib
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

SHAPES_MODELS = ("shapes-supervised", "shapes-simclr")
Objective = Literal["supervised", "simclr"]
TRAIN_SEED_OFFSET = 1 << 20  # training images use seeds far from the evaluation seeds (0, 1, ...)


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


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe; its hash names the cache file, so a changed recipe trains anew.

    Images are rendered at ``size`` (the evaluation size, so objects have their evaluation
    pixel scale) and cropped to ``crop`` around the object, which costs a third of full images.
    """

    size: int = 224
    crop: int = 128
    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    temperature: float = 0.2
    seed: int = 0

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


DEFAULT_CONFIGS = {"shapes-supervised": TrainConfig(steps=400), "shapes-simclr": TrainConfig(steps=150)}


class _TrainingBatches(Dataset):
    """Batch ``step`` of fresh single-object images, cropped around the object; never the evaluation seeds."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.data = SyntheticShapes(config.steps * config.batch_size, "single", TRAIN_SEED_OFFSET + config.seed, config.size)

    def __len__(self) -> int:
        return self.config.steps

    def __getitem__(self, step: int) -> tuple[Tensor, Tensor]:
        size, crop, b = self.config.size, min(self.config.crop, self.config.size), self.config.batch_size
        items = [self.data[i] for i in range(step * b, (step + 1) * b)]
        jitter = np.random.default_rng([self.config.seed, step]).uniform(-crop / 4, crop / 4, (b, 2))
        crops = []
        for item, (jy, jx) in zip(items, jitter):
            ys, xs = np.nonzero(item["mask"].numpy())
            top = int(np.clip(ys.mean() - crop / 2 + jy, 0, size - crop))
            left = int(np.clip(xs.mean() - crop / 2 + jx, 0, size - crop))
            crops.append(item["image"][:, top : top + crop, left : left + crop])
        return torch.stack(crops), torch.tensor([item["label_ids"][0] for item in items])


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
        for images, labels in bar:
            images = images.contiguous(memory_format=torch.channels_last)
            if objective == "supervised":
                loss = F.cross_entropy(model(images), labels)
            else:
                views = augment(images, generator), augment(images, generator)
                loss = nt_xent(head(model(views[0])), head(model(views[1])), config.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return model.to(memory_format=torch.contiguous_format).eval()


def cache_dir() -> Path:
    """Where trained weights are kept: ``$LAFAM_CACHE``, else ``~/.cache/lafam_utils``."""
    return Path(os.environ.get("LAFAM_CACHE") or Path.home() / ".cache" / "lafam_utils")


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
    ``model.class_names``) or ``"shapes-simclr"`` ((B, 128) embeddings).

    ``weights="default"`` loads the cached weights of ``config`` (default: ``DEFAULT_CONFIGS``),
    training them on first use; ``weights=None`` gives a random init; ``checkpoint`` (which takes
    precedence) loads a state dict, or a cache file's ``{"state_dict": ...}``, from a file.
    """
    if name not in SHAPES_MODELS:
        raise ValueError(f"unknown shapes model {name!r}; expected one of {SHAPES_MODELS}")
    if weights not in ("default", None):
        raise ValueError(f"weights must be 'default' or None, got {weights!r}")
    objective = name.removeprefix("shapes-")
    model = _new_model(objective)
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state))
    elif weights == "default":
        config = config or DEFAULT_CONFIGS[name]
        path = cache_dir() / f"{name}-{config.digest()}.pt"
        if not path.exists():
            trained = train_shapes_model(objective, config, progress)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save({"state_dict": trained.state_dict(), "config": asdict(config)}, partial)
            os.replace(partial, path)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
    return model.eval().to(device)


__all__ = ["SHAPES_MODELS", "ShapesNet", "TrainConfig", "cache_dir", "load_shapes_model", "nt_xent", "train_shapes_model"]
