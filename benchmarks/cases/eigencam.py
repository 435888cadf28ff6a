"""Case 11: EigenCAM's principal component from the Gram matrix against the batched SVD it replaced,
and EigenCAM's images/s beside LaFAM's (the same forward to layer4).

The SVD version is kept here (``eigencam_svd``, the package's code before the Gram matrix) so the
ratio is measured in the same run on the same activations; the test of EigenCAM checks the
maps against it.
"""

from __future__ import annotations

import torch
from torch import Tensor

import lafam_utils as lu

from . import Case, Comparison, Contenders, Settings, image_size, images, resnet50

SVD_TARGET = 10  # the Gram matrix at least this many times faster than the batched SVD
LAFAM_SHARE_TARGET = 0.5  # EigenCAM's images/s at least this share of LaFAM's


def eigencam_svd(acts: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """EigenCAM's raw (B, h, w) maps from a batched SVD of the centred (B, h*w, C) activations in
    ``dtype``, with the sign rule and the constant-map rule of ``lu.EigenCAM``."""
    acts = acts.to(dtype)
    samples = acts.flatten(2).transpose(1, 2)  # (B, h*w, C)
    centred = samples - samples.mean(dim=1, keepdim=True)
    u, s, _ = torch.linalg.svd(centred, full_matrices=False)
    projection = u[:, :, 0] * s[:, :1]  # = centred @ v_1
    noise = torch.finfo(s.dtype).eps * max(centred.shape[1:]) * samples.abs().amax(dim=(1, 2))
    projection = torch.where(s[:, :1] > noise[:, None], projection, 0.0)
    channel_mean = samples.mean(dim=2)
    agreement = (projection * (channel_mean - channel_mean.mean(dim=1, keepdim=True))).sum(dim=1)
    sign = torch.where(agreement < 0, -1.0, 1.0)
    return (sign[:, None] * projection).relu().view(acts.shape[0], *acts.shape[2:])


def activations(batch: int, device: str, seed: int = 0) -> Tensor:
    """(batch, 2048, 7, 7) ReLU'd Gaussian activations, layer4's shape at 224x224."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2048, 7, 7, generator=generator).relu().to(device)


def _activation_contenders(batch: int, settings: Settings, notes: dict[str, object]) -> Contenders:
    acts = activations(batch, settings.device)
    eigencam = lu.EigenCAM(torch.nn.Sequential(), layer=None)
    difference = (eigencam.from_activations(acts) - eigencam_svd(acts)).abs().max() / eigencam_svd(acts).abs().max()
    notes["max |Gram - SVD| / max map, raw maps"] = f"{difference.item():.1e}"
    return {"Gram matrix": lambda: eigencam.from_activations(acts), "batched SVD": lambda: eigencam_svd(acts)}


def _image_contenders(batch: int, settings: Settings) -> Contenders:
    model = resnet50(settings.device)
    x = images(batch, settings.device, image_size(settings))
    lafam, eigencam = lu.LaFAM(model), lu.EigenCAM(model)
    return {"LaFAM": lambda: lafam(x), "EigenCAM": lambda: eigencam(x)}


def cases(settings: Settings) -> list[Case]:
    batch = 4 if settings.tiny else 256
    image_batch = 2 if settings.tiny else 16
    notes: dict[str, object] = {}
    return [
        Case(
            id="eigencam-activations",
            title=f"EigenCAM from {batch} activations of 2048x7x7, Gram matrix vs batched SVD",
            build=lambda: _activation_contenders(batch, settings, notes),
            comparisons=[Comparison("batched SVD", "Gram matrix", "speed-up over the batched SVD", SVD_TARGET, ">=")],
            items=batch,
            notes=notes,
        ),
        Case(
            id="eigencam-images",
            title=f"EigenCAM and LaFAM, ResNet50, batch {image_batch}",
            build=lambda: _image_contenders(image_batch, settings),
            comparisons=[
                Comparison("LaFAM", "EigenCAM", "EigenCAM images/s / LaFAM images/s", LAFAM_SHARE_TARGET, ">=")
            ],
            items=image_batch,
            rounds=3,
        ),
    ]
