"""The shapes models' networks: ``ShapesNet``, a ResNet-shaped CNN, and ``ShapesViT``, a small ViT.

``ShapesNet`` mirrors a ResNet's stage layout and strides at a fraction of its cost: ``stem`` (1/4),
``layer1`` (1/4), ``layer2`` (1/8), ``layer3`` (1/16), ``layer4`` (1/32), global average pooling
and a linear head. ``layer4`` is the ResNet50 ``layer4`` analogue: 7x7 for 224 inputs, so every
explainer's default layer works unchanged.

``ShapesViT`` is DINO's Vision Transformer (``models.vit``, the official module names: ``blocks.N``,
``norm``, ``cls_token``) at the size of the shapes, with a convolutional stem in place of the
linear 16x16 patch embedding (Xiao et al. 2021, "Early convolutions help transformers see
better"): DINO's plain patch embedding did not learn the shapes within the CNNs' training budget
(docs/vision-transformers.md).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from ..models.vit import VisionTransformer, ViTConfig
from .dataset import SHAPE_CLASSES

Objective = Literal["supervised", "simclr"]
Architecture = Literal["cnn", "vit"]
SHAPES_VIT = ViTConfig(patch_size=16, embed_dim=96, depth=4, num_heads=4)
"""The shapes ViT's transformer: 16-pixel patches (a 14x14 grid at 224), width 96, 4 blocks of 4 heads."""


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class ShapesNet(nn.Module):
    """A ResNet-shaped CNN, pooling and a head, cheap enough to train on a laptop CPU in minutes.

    ``stem`` is two stride-2 3x3 convs (1/4, like ResNet's conv1 + max-pool); ``layer1`` one 3x3
    conv (1/4); ``layer2`` .. ``layer4`` a stride-2 and a plain 3x3 conv each (1/8, 1/16, 1/32);
    every conv is followed by BatchNorm and ReLU.

    Args:
        num_classes: the number of logits of a linear head that ``forward`` returns; with ``None``
            it returns the pooled ``layer4`` features.
        widths: the channels of ``stem``, ``layer1`` .. ``layer4``.

    Raises:
        ValueError: ``widths`` does not give 5 widths.
    """

    def __init__(self, num_classes: int | None = len(SHAPE_CLASSES), widths: tuple[int, ...] = (16, 16, 32, 64, 128)):
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"widths must give 5 stage widths (stem, layer1..layer4), got {widths}")
        self.stem = nn.Sequential(
            *_conv_bn_relu(3, widths[0], stride=2), *_conv_bn_relu(widths[0], widths[0], stride=2)
        )
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
        """(B, 3, H, W) images -> (B, num_classes) logits, or the (B, widths[-1]) pooled features."""
        return self.fc(self.features(x))


def conv_stem(embed_dim: int, widths: tuple[int, ...] = (16, 32, 64)) -> nn.Sequential:
    """Four 4x4 stride-2 convolutions (BatchNorm and ReLU between): (B, 3, H, W) -> (B, embed_dim, H // 16, W // 16).

    Kernel 4, stride 2, padding 1 halves any side rounding down, so the grid is ``H // 16`` x
    ``W // 16``, as for a 16x16 patch embedding (``explainers.tokens.patch_grid_size``).
    """
    layers: list[nn.Module] = []
    for c_in, c_out in zip((3, *widths), widths):
        layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Conv2d(widths[-1], embed_dim, 4, 2, 1))


class ShapesViT(VisionTransformer):
    """DINO's ViT of ``SHAPES_VIT``'s size with a convolutional stem: images -> logits, or the (B, 96) CLS embedding.

    ``patch_embed.proj`` is ``conv_stem`` (total stride 16); the tokens, blocks, final ``norm`` and
    CLS embedding are DINO's. Every image size works: the 14x14 position grid is interpolated as
    DINO's code does.

    Args:
        num_classes: the number of logits of a linear head on the CLS embedding; with ``None``
            ``forward`` returns the embedding.
    """

    def __init__(self, num_classes: int | None = len(SHAPE_CLASSES)) -> None:
        super().__init__(SHAPES_VIT)
        self.patch_embed.proj = conv_stem(SHAPES_VIT.embed_dim)
        if num_classes:
            self.head = nn.Linear(SHAPES_VIT.embed_dim, num_classes)
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)
        self.embedding_dim = SHAPES_VIT.embed_dim


def new_shapes_model(objective: Objective, architecture: Architecture = "cnn") -> ShapesNet | ShapesViT:
    """A random-init classifier (with ``class_names``) or encoder (``class_names`` None) of ``architecture``.

    Raises:
        ValueError: ``architecture`` is neither "cnn" nor "vit".
    """
    if architecture not in ("cnn", "vit"):
        raise ValueError(f"architecture must be 'cnn' or 'vit', got {architecture!r}")
    network = ShapesNet if architecture == "cnn" else ShapesViT
    model = network(len(SHAPE_CLASSES) if objective == "supervised" else None)
    model.class_names = list(SHAPE_CLASSES) if objective == "supervised" else None
    return model


__all__ = ["Architecture", "Objective", "SHAPES_VIT", "ShapesNet", "ShapesViT", "conv_stem", "new_shapes_model"]
