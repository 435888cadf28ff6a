"""Shared fixtures: small random-init models and inputs; nothing is downloaded."""

from __future__ import annotations

import pytest
import torch
import torchvision


@pytest.fixture(scope="session")
def resnet50() -> torch.nn.Module:
    """A random-init torchvision ResNet50 in eval mode (fixed seed)."""
    torch.manual_seed(0)
    return torchvision.models.resnet50(weights=None).eval()


@pytest.fixture
def images() -> torch.Tensor:
    """A small batch of odd-sized, non-square images."""
    return torch.randn(3, 3, 97, 130, generator=torch.Generator().manual_seed(1))
