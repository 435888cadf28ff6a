"""Training the shapes models: supervised classifiers and SimCLR encoders, CNNs and ViTs, from recipes.

``RECIPES`` names the shipped models' recipes (``TrainConfig``); ``train_shapes_model`` trains a
``ShapesNet`` or ``ShapesViT`` on fresh single-object images, deterministically on one torch thread.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..progress import progress_bar
from .dataset import SyntheticShapes
from .network import Architecture, Objective, ShapesNet, ShapesViT, new_shapes_model

TRAIN_SEED_OFFSET = 1 << 20  # training images use seeds far from the evaluation seeds (0, 1, ...)


Window = Literal["object", "contains", "random"]
ViewFactor = Literal["shared", "independent"]
SecondWindow = Literal["same", "own"]


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe; its hash names the cache file, so a changed recipe trains anew.

    The two SimCLR views of an image are augmentations of one rendering unless ``backgrounds``,
    ``colours`` or ``second_window`` say otherwise.

    Attributes:
        size: the side images are rendered at (the evaluation size, so objects have their
            evaluation pixel scale).
        crop: the side of the window they are cut to, which costs ``(crop / size)**2`` of full images.
        steps: optimiser steps, one batch each.
        batch_size: images per batch.
        lr: the peak learning rate (AdamW, one-cycle schedule).
        temperature: NT-Xent's temperature (SimCLR).
        seed: seeds the training images (offset by 2**20 from the evaluation seeds), the windows,
            the augmentations and the initialisation.
        window: where the window is placed: ``"object"`` centred on the object (jittered by up to a
            quarter of the window), ``"contains"`` anywhere the whole object fits (the object at a
            random place; centred on it when it does not fit), ``"random"`` anywhere in the image
            (no mask used).
        backgrounds: ``"independent"``: the second view shows the objects on an independent background.
        colours: ``"independent"``: the second view is painted in independent colours (both rendered
            so: same geometry, no label used).
        second_window: ``"own"``: the second view is cut at its own window (placed by ``window``),
            not at the first view's.
        architecture: ``"cnn"`` (``ShapesNet``) or ``"vit"`` (``ShapesViT``).

    Raises:
        ValueError: ``window``, ``backgrounds``, ``colours``, ``second_window`` or ``architecture``
            is not one of its choices.
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
    architecture: Architecture = "cnn"

    def __post_init__(self) -> None:
        if self.window not in ("object", "contains", "random"):
            raise ValueError(f"window must be 'object', 'contains' or 'random', got {self.window!r}")
        for name in ("backgrounds", "colours"):
            if getattr(self, name) not in ("shared", "independent"):
                raise ValueError(f"{name} must be 'shared' or 'independent', got {getattr(self, name)!r}")
        if self.second_window not in ("same", "own"):
            raise ValueError(f"second_window must be 'same' or 'own', got {self.second_window!r}")
        if self.architecture not in ("cnn", "vit"):
            raise ValueError(f"architecture must be 'cnn' or 'vit', got {self.architecture!r}")

    def digest(self) -> str:
        """The recipe's hash (10 hex digits of the SHA-1 of its fields as JSON), for cache file names."""
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


VIT_LR = 3e-4
"""The ViTs' peak learning rate. The CNNs' 3e-3 is far above the AdamW rates ViTs train with
(DINO: 5e-4 per 256 images); of 1e-3 and 3e-4, 3e-4 gave the better SimCLR linear probe."""
RECIPES: dict[str, tuple[Objective, TrainConfig]] = {
    "shapes-supervised": ("supervised", TrainConfig(crop=192, steps=800, window="contains")),
    "shapes-simclr": (
        "simclr",
        TrainConfig(steps=3000, window="random", backgrounds="independent", colours="independent", second_window="own"),
    ),
    "shapes-simclr-background": ("simclr", TrainConfig(steps=150, window="object", backgrounds="shared")),
    "shapes-vit-supervised": (
        "supervised",
        TrainConfig(crop=192, steps=800, lr=VIT_LR, window="contains", architecture="vit"),
    ),
    "shapes-vit-simclr": (
        "simclr",
        TrainConfig(
            steps=3000, lr=VIT_LR, window="random", backgrounds="independent", colours="independent",
            second_window="own", architecture="vit",
        ),
    ),
}
"""The shipped models' recipes. ``shapes-simclr-background`` is the negative control: views cut
around the object from one image whose background texture is unique to it, so SimCLR can tell
the images apart by their background, and does. The ViTs use the CNNs' recipes (the same views,
steps and schedule) at ``VIT_LR``."""
SHAPES_MODELS = tuple(RECIPES)


class TrainingBatches(Dataset):
    """Batch ``step``: windows of fresh single-object images, windows of their second views, and the labels.

    The images never use the evaluation seeds; the second views are as ``TrainConfig`` says.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.data = SyntheticShapes(
            config.steps * config.batch_size, "single", TRAIN_SEED_OFFSET + config.seed, config.size
        )

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
            view = (
                item
                if background is None and colours is None
                else self.data.item(i, background=background, colours=colours)
            )
            first.append(item["image"][cuts[0]])
            second.append(view["image"][cuts[-1]])
            labels.append(item["label_ids"][0])
        return torch.stack(first), torch.stack(second), torch.tensor(labels)


def augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """A SimCLR view of each normalised image, batched on ``x``'s device: (B, 3, H, W) -> (B, 3, H, W).

    Random crop-zoom, rotation, flip, channel permutation, contrast and brightness, drawn by
    ``generator`` (a CPU one).
    """
    b = x.shape[0]

    def uniform(low: float, high: float, *shape: int) -> Tensor:
        return (low + (high - low) * torch.rand(b, *shape, generator=generator)).to(x.device)

    scale, angle = uniform(0.55, 1.0), uniform(0.0, 2 * math.pi)
    flip = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0)
    cos, sin = scale * torch.cos(angle), scale * torch.sin(angle)
    shift = uniform(-1.0, 1.0, 2) * (1 - scale)[:, None]
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1
    )
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
) -> ShapesNet | ShapesViT:
    """Train a ``ShapesNet`` or ``ShapesViT`` (``config.architecture``) on fresh single-object images,
    deterministically by ``config.seed``.

    Args:
        objective: ``"supervised"``: cross-entropy on the shape class. ``"simclr"``: NT-Xent between
            two augmented views through a 2-layer projection head (dropped afterwards); no labels are used.
        config: the recipe.
        progress: show a progress bar.
        threads: bounds torch's threads while training (default 1: these small convs gain little
            from a second thread and lose much on a busy machine; ``None`` keeps torch's setting).
        workers: processes that render the images meanwhile (0: in the training process).

    Returns:
        The model in eval mode on the CPU.

    Raises:
        ValueError: ``objective`` is neither "supervised" nor "simclr".
    """
    if objective not in ("supervised", "simclr"):
        raise ValueError(f"objective must be 'supervised' or 'simclr', got {objective!r}")
    with torch.random.fork_rng(devices=[]), _torch_threads(threads):
        torch.manual_seed(config.seed)
        model = new_shapes_model(objective, config.architecture)
        width = model.embedding_dim
        head = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 64))
        params = list(model.parameters()) + (list(head.parameters()) if objective == "simclr" else [])
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.steps)
        generator = torch.Generator().manual_seed(config.seed)
        model.train().to(memory_format=torch.channels_last)
        batches = DataLoader(TrainingBatches(config), batch_size=None, num_workers=workers)
        bar = progress_bar(batches, desc=f"shapes-{objective}", disable=not progress)
        for images, others, labels in bar:
            images = images.contiguous(memory_format=torch.channels_last)
            if objective == "supervised":
                loss = F.cross_entropy(model(images), labels)
            else:
                views = (
                    augment(images, generator),
                    augment(others.contiguous(memory_format=torch.channels_last), generator),
                )
                loss = nt_xent(head(model(views[0])), head(model(views[1])), config.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return model.to(memory_format=torch.contiguous_format).eval()


__all__ = ["RECIPES", "SHAPES_MODELS", "TrainConfig", "augment", "nt_xent", "train_shapes_model"]
