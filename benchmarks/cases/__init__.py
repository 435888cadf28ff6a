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
    """What every case is sized by: the device and whether the larger sizes were asked for."""

    device: str = "cpu"
    large: bool = False
    tiny: bool = False

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
    images per call (for per-image times); ``notes`` holds what a case measures besides time.
    """

    id: str
    title: str
    build: Callable[[], Contenders]
    comparisons: list[Comparison]
    items: int = 1
    rounds: int = 5
    notes: dict[str, object] = field(default_factory=dict)
    module: str = ""  # the case module's name, set by run.all_cases (the memory probe imports only it)


def resnet50(device: str, seed: int = 0) -> nn.Module:
    """A random-init torchvision ResNet50 in eval mode on ``device``; timing does not need weights."""
    torch.manual_seed(seed)
    return torchvision.models.resnet50(weights=None).eval().to(device)


def images(batch: int, device: str, size: int = 224, seed: int = 0) -> torch.Tensor:
    """A reproducible batch of normalised-looking random images."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=generator).to(device)


def image_size(settings: Settings) -> int:
    """224 px (the paper's size); 64 px for the harness's own smoke test."""
    return 64 if settings.tiny else 224
