"""Benchmark cases: each names its contenders, builds them lazily and states the ratios it checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torchvision
from torch import nn

Contenders = dict[str, Callable[[], object]]


@dataclass(frozen=True)
class Settings:
    """What every case is sized by: the device, whether the larger sizes were asked for, RELAX's masks."""

    device: str = "cpu"
    large: bool = False
    tiny: bool = False
    relax_masks: int = 2048  # the paper's count, for the cases that run RELAX as the paper does
    probe: bool = False  # building a contender for the memory probe (RELAX-heavy cases use fewer masks)

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


@dataclass(frozen=True)
class Comparison:
    """``time(numerator) / time(denominator)``, checked against ``target`` with ``op`` (None: context)."""

    numerator: str
    denominator: str
    label: str
    target: float | None = None
    op: Literal["<=", ">="] = "<="

    def met(self, value: float) -> bool | None:
        if self.target is None:
            return None
        return value <= self.target if self.op == "<=" else value >= self.target


@dataclass
class Case:
    """One group of contenders timed in interleaved rounds.

    ``build`` makes them (models, inputs) only when the case runs; ``items`` is the number of
    images per call (for per-image times); ``notes`` holds what a case measures besides time;
    ``targets_note`` says why a target is missed where the reason is known in advance;
    ``projections`` names image counts (a dataset's size) whose wall time each contender's
    per-image time is projected to.
    """

    id: str
    title: str
    build: Callable[[], Contenders]
    comparisons: list[Comparison]
    items: int = 1
    rounds: int = 5
    warmup: int = 1  # untimed rounds first; 0 for cases whose calls take minutes
    notes: dict[str, object] = field(default_factory=dict)
    targets_note: str = ""
    projections: dict[str, int] = field(default_factory=dict)
    module: str = ""  # the case module's name, set by run.all_cases (the memory probe imports only it)


def resnet50(device: str, seed: int = 0) -> nn.Module:
    """A random-init torchvision ResNet50 in eval mode on ``device``; timing does not need weights."""
    torch.manual_seed(seed)
    return torchvision.models.resnet50(weights=None).eval().to(device)


def images(batch: int, device: str, size: int = 224, seed: int = 0) -> torch.Tensor:
    """A reproducible batch of normalised-looking random images."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=generator).to(device)


def probe_masks(settings: Settings, n_masks: int, cap: int = 128) -> int:
    """RELAX's mask count for a contender: ``cap`` at most in the memory probe, where the peak is set
    by the masked images per forward (64 at 224x224), not by how many forwards follow."""
    return min(n_masks, cap) if settings.probe else n_masks


def image_size(settings: Settings) -> int:
    """224 px (the paper's size); 64 px for the harness's own smoke test."""
    return 64 if settings.tiny else 224
