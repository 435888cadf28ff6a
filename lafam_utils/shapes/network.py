"""``ShapesNet``: a ResNet-shaped CNN small enough to train on a CPU in minutes.

It mirrors a ResNet's stage layout and strides at a fraction of its cost: ``stem`` (1/4),
``layer1`` (1/4), ``layer2`` (1/8), ``layer3`` (1/16), ``layer4`` (1/32), global average pooling
and a linear head. ``layer4`` is the ResNet50 ``layer4`` analogue: 7x7 for 224 inputs, so every
explainer's default layer works unchanged.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from .dataset import SHAPE_CLASSES

Objective = Literal["supervised", "simclr"]


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
        """(B, 3, H, W) images -> (B, num_classes) logits, or the (B, widths[-1]) pooled features."""
        return self.fc(self.features(x))


def new_shapes_model(objective: Objective) -> ShapesNet:
    """A random-init classifier (with ``class_names``) or encoder (``class_names`` None)."""
    model = ShapesNet(len(SHAPE_CLASSES) if objective == "supervised" else None)
    model.class_names = list(SHAPE_CLASSES) if objective == "supervised" else None
    return model


__all__ = ["Objective", "ShapesNet", "new_shapes_model"]
