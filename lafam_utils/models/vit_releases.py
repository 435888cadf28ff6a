"""The official DINO and DINOv2 Vision Transformer releases, as declarative records.

Each ``ViTRelease`` names its official URL (the torch.hub file of facebookresearch/dino
``hubconf.py`` or facebookresearch/dinov2 ``dinov2/hub/backbones.py``), its architecture
(``ViTConfig``: patch size, width, depth, heads, the position-embedding grid, LayerScale,
registers, the interpolation of the position embeddings) and the file layouts it comes in
(``releases.Layout``). ``load_vit_release`` builds the ``VisionTransformer`` and loads every
tensor of the file exactly, keys as in the official code; the parts the backbone does not use
are dropped by name (DINOv2's ``mask_token``, the DINO head of a full DINO checkpoint), and any
other key, a missing key or a wrong shape is an error naming it. Neither repository publishes
hashes of these files, so none is checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from .checkpoints import load_weights, read_checkpoint, torchvision_names
from .downloads import fetch
from .releases import Layout, find_layout
from .vit import VisionTransformer, ViTConfig

DINO_URL = "https://dl.fbaipublicfiles.com/dino"
DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2"

OFFICIAL_NAMES = "the official names (the torch.hub file, or a state dict saved from this model)"
DINO_LAYOUTS = (
    Layout(f"backbone only, {OFFICIAL_NAMES}", container=None, backbone="", marker="cls_token"),
    Layout(
        "full checkpoint (student, teacher, optimizer, epoch, args, dino_loss), teacher's backbone "
        "(DINO's evaluations read the teacher)",
        container="teacher",
        backbone="backbone.",
        unused={"head.": "DINO head (MLP to the weight-normalised prototypes), not an embedding"},
        marker="cls_token",
    ),
)
DINOV2_LAYOUTS = (
    Layout(
        f"backbone only, {OFFICIAL_NAMES}",
        container=None,
        backbone="",
        unused={"mask_token": "the embedding of masked patches (iBOT loss), used in training only"},
        marker="cls_token",
    ),
)


def dino(patch_size: int, embed_dim: int, num_heads: int) -> ViTConfig:
    """DINO's ``vit_small`` / ``vit_base``: 12 blocks, 224-pixel grid, no LayerScale, no registers."""
    return ViTConfig(patch_size=patch_size, embed_dim=embed_dim, depth=12, num_heads=num_heads)


def dinov2(embed_dim: int, num_heads: int, registers: bool) -> ViTConfig:
    """DINOv2's hub backbones: patch 14, 518-pixel grid (37x37), LayerScale (init 1.0).

    With 4 registers they interpolate to the exact size with antialiasing, without by DINO's offset 0.1.
    """
    return ViTConfig(
        patch_size=14,
        embed_dim=embed_dim,
        depth=12,
        num_heads=num_heads,
        img_size=518,
        layer_scale=1.0,
        num_register_tokens=4 if registers else 0,
        interpolate_offset=0.0 if registers else 0.1,
        interpolate_antialias=registers,
        whole_patches=True,
    )


@dataclass(frozen=True)
class ViTRelease:
    """An official ViT release: where it is, its architecture, its file layouts, what it is."""

    name: str
    url: str
    config: ViTConfig
    layouts: tuple[Layout, ...]
    recipe: str
    source: str

    @property
    def file_name(self) -> str:
        """The name it is cached under: the URL's file name."""
        return Path(urlparse(self.url).path).name


DINO_RECIPE = "self-distillation (student/teacher, centring, multi-crop) on ImageNet-1k"
DINOV2_RECIPE = "DINO + iBOT + KoLeo self-distillation on LVD-142M, distilled from ViT-g/14"
DINO_SOURCE = "facebookresearch/dino vision_transformer.py, hubconf.py, main_dino.py (full checkpoint)"
DINOV2_SOURCE = "facebookresearch/dinov2 dinov2/models/vision_transformer.py, dinov2/layers, dinov2/hub/backbones.py"

VIT_RELEASES: dict[str, ViTRelease] = {
    release.name: release
    for release in (
        ViTRelease(
            "dino-vits16",
            f"{DINO_URL}/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
            dino(16, 384, 6),
            DINO_LAYOUTS,
            f"{DINO_RECIPE}; k-NN 74.5 %, linear 77.0 %",
            DINO_SOURCE,
        ),
        ViTRelease(
            "dino-vits8",
            f"{DINO_URL}/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth",
            dino(8, 384, 6),
            DINO_LAYOUTS,
            f"{DINO_RECIPE}; k-NN 78.3 %, linear 79.7 %",
            DINO_SOURCE,
        ),
        ViTRelease(
            "dino-vitb16",
            f"{DINO_URL}/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
            dino(16, 768, 12),
            DINO_LAYOUTS,
            f"{DINO_RECIPE}; k-NN 76.1 %, linear 78.2 %",
            DINO_SOURCE,
        ),
        ViTRelease(
            "dino-vitb8",
            f"{DINO_URL}/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth",
            dino(8, 768, 12),
            DINO_LAYOUTS,
            f"{DINO_RECIPE}; k-NN 77.4 %, linear 80.1 %",
            DINO_SOURCE,
        ),
        ViTRelease(
            "dinov2-vits14",
            f"{DINOV2_URL}/dinov2_vits14/dinov2_vits14_pretrain.pth",
            dinov2(384, 6, registers=False),
            DINOV2_LAYOUTS,
            f"{DINOV2_RECIPE}; ImageNet k-NN 79.0 %, linear 81.1 %",
            DINOV2_SOURCE,
        ),
        ViTRelease(
            "dinov2-vitb14",
            f"{DINOV2_URL}/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
            dinov2(768, 12, registers=False),
            DINOV2_LAYOUTS,
            f"{DINOV2_RECIPE}; ImageNet k-NN 82.1 %, linear 84.5 %",
            DINOV2_SOURCE,
        ),
        ViTRelease(
            "dinov2-vits14-reg",
            f"{DINOV2_URL}/dinov2_vits14/dinov2_vits14_reg4_pretrain.pth",
            dinov2(384, 6, registers=True),
            DINOV2_LAYOUTS,
            f"{DINOV2_RECIPE}, 4 registers; ImageNet k-NN 79.1 %, linear 80.9 %",
            DINOV2_SOURCE,
        ),
        ViTRelease(
            "dinov2-vitb14-reg",
            f"{DINOV2_URL}/dinov2_vitb14/dinov2_vitb14_reg4_pretrain.pth",
            dinov2(768, 12, registers=True),
            DINOV2_LAYOUTS,
            f"{DINOV2_RECIPE}, 4 registers; ImageNet k-NN 82.0 %, linear 84.6 %",
            DINOV2_SOURCE,
        ),
    )
}


def load_vit_release(
    name: str,
    weights: str | None = "default",
    checkpoint: str | Path | None = None,
    trust: bool = False,
    weights_dir: str | Path | None = None,
) -> VisionTransformer:
    """The ViT of release ``name``; its forward gives the (B, D) CLS embedding after the final norm.

    Args:
        name: a key of ``VIT_RELEASES``.
        weights: "default" (the release's weights) or None (random init, nothing read).
        checkpoint: a local file in one of the release's layouts, read without running code from
            it (``read_checkpoint``; ``trust=True`` unpickles fully); None: the official URL,
            cached by ``downloads.fetch`` (in ``weights_dir`` if given).
        trust: passed to ``read_checkpoint``.
        weights_dir: the folder of cached downloads.

    Returns:
        The model (in training mode, on the CPU).

    Raises:
        ValueError: ``weights`` is neither "default" nor None.
        CheckpointError: the file is in none of the release's layouts, or its tensors do not fit.
        DownloadError: the download failed.
    """
    release = VIT_RELEASES[name]
    if weights not in ("default", None):
        raise ValueError(f"weights for {name!r} must be 'default' or None, got {weights!r}")
    random_init = checkpoint is None and weights is None
    with torch.device("cpu" if random_init else "meta"):  # weights that are loaded need no initialisation
        model = VisionTransformer(release.config)
    if random_init:
        return model
    model = model.to_empty(device="cpu")
    source = Path(checkpoint) if checkpoint is not None else fetch(release.url, weights_dir)
    load_weights(model, vit_state_dict(release, read_checkpoint(source, trust), source), source, name)
    return model


def vit_state_dict(release: ViTRelease, checkpoint: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """The checkpoint's backbone under the official module names, unused parts dropped by name.

    Raises:
        CheckpointError: the file is in none of the release's layouts.
    """
    layout = find_layout(release.layouts, checkpoint, source, release.name)
    state = checkpoint[layout.container] if layout.container else checkpoint
    return torchvision_names(state, layout.backbone, None, layout.unused, keep_head=False)


__all__ = ["VIT_RELEASES", "ViTRelease", "load_vit_release", "vit_state_dict"]
