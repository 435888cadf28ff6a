"""Case 3: RELAX against its floor, ``n_masks`` encoder passes per image at the same batch size,
and against a plain per-image loop over mask batches (the reference implementation's shape)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import lafam_utils as lu

from . import Case, Comparison, Contenders, Settings, image_size, images, resnet50


def encoder(device: str) -> nn.Module:
    """A random-init SimCLR-style encoder: torchvision ResNet50 with ``fc`` removed, (B, 2048) out."""
    model = resnet50(device)
    model.fc = nn.Identity()
    return model


def relax_plain_loop(enc: nn.Module, x: Tensor, n_masks: int, batch_size: int, cells: int = 7) -> Tensor:
    """RELAX importance written as a per-image loop over mask batches, one image at a time."""
    size = tuple(x.shape[-2:])
    generator = torch.Generator().manual_seed(0)
    maps = []
    with torch.no_grad():
        for image in x:
            reference = enc(image[None])
            total = torch.zeros(cells, cells, device=x.device)
            weight = torch.zeros(cells, cells, device=x.device)
            for start in range(0, n_masks, batch_size):
                count = min(batch_size, n_masks - start)
                grids = (torch.rand(count, cells, cells, generator=generator) < 0.5).float().to(x.device)
                masks = F.interpolate(grids[:, None], size=size, mode="nearest")
                scores = F.cosine_similarity(reference, enc(image * masks), dim=1)
                total += (scores[:, None, None] * grids).sum(dim=0)
                weight += grids.sum(dim=0)
            maps.append(total / weight.clamp_min(1e-10))
    return torch.stack(maps)


def _contenders(n_images: int, n_masks: int, batch_size: int, settings: Settings) -> Contenders:
    enc = encoder(settings.device)
    x = images(n_images, settings.device, image_size(settings))
    relax = lu.RELAX(enc, n_masks=n_masks, batch_size=batch_size, seed=0)
    masked_batch = x[:1].expand(batch_size, -1, -1, -1).contiguous()
    passes = n_images * -(-n_masks // batch_size)

    def encoder_passes() -> None:
        with torch.no_grad():
            for _ in range(passes):
                enc(masked_batch)

    return {
        "RELAX": lambda: relax(x),
        "encoder passes": encoder_passes,
        "plain per-image loop": lambda: relax_plain_loop(enc, x, n_masks, batch_size),
    }


def cases(settings: Settings) -> list[Case]:
    if settings.tiny:
        n_images, n_masks, batch_size = 1, 4, 2
    elif settings.cuda:
        n_images, n_masks, batch_size = 4, 2048, 256
    elif settings.large:
        n_images, n_masks, batch_size = 2, 512, 64
    else:
        n_images, n_masks, batch_size = 1, 64, 32
    return [
        Case(
            id="relax",
            title=f"RELAX, {n_masks} masks in batches of {batch_size}, {n_images} image(s)",
            build=lambda: _contenders(n_images, n_masks, batch_size, settings),
            comparisons=[
                Comparison("RELAX", "encoder passes", f"RELAX / {n_masks} encoder passes per image", 1.1),
                Comparison("RELAX", "plain per-image loop", "RELAX / plain per-image loop"),
            ],
            items=n_images,
            rounds=3,
        )
    ]
