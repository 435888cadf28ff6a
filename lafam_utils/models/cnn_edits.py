"""A function-preserving edit of a ReLU CNN classifier: its ``layer4`` channels rescaled.

ReLU is positively homogeneous (``relu(c z) = c relu(z)`` for ``c > 0``) and a batch norm's affine
parameters scale its output. So channel ``k`` of ``layer4``'s output can be multiplied by any
``c_k > 0`` -- scaling the last batch norm of the stage (in a ResNet: of every block, the first
block's downsample too, and dividing each later block's first convolution's input weights by
``c_k``) -- and the linear head's column ``k`` divided by ``c_k``: no logit changes (up to float
rounding). Grad-CAM's map is unchanged (its channel weight scales by ``1 / c_k``, the activation by
``c_k``); a channel mean, LaFAM's map, is not. ``layer4_channel_scale_edit`` makes that edit.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torchvision.models.resnet import ResNet

from ..shapes.network import ShapesNet


def _scale_output(batch_norm: nn.BatchNorm2d, scales: Tensor) -> None:
    batch_norm.weight.mul_(scales)
    batch_norm.bias.mul_(scales)


@torch.no_grad()
def layer4_channel_scale_edit(model: nn.Module, scales: Tensor) -> nn.Module:
    """A copy of ``model`` whose ``layer4`` output channel ``k`` is ``scales[k]`` times the original's
    and whose logits are the original's; ``model`` itself is not changed.

    Args:
        model: a torchvision ResNet or a ``ShapesNet`` classifier (a linear ``fc`` head), in eval mode.
        scales: (C,) positive factors, one per ``layer4`` output channel.

    Raises:
        ValueError: ``model`` is neither, has no linear head, or a first ``layer4`` block without a
            downsample; ``scales`` is not C positive finite numbers.
    """
    if not isinstance(model, ResNet | ShapesNet) or not isinstance(getattr(model, "fc", None), nn.Linear):
        raise ValueError(
            f"the edit needs a torchvision ResNet or a ShapesNet with a linear fc head, got {type(model).__name__}"
        )
    channels = model.fc.in_features
    scales = torch.as_tensor(scales, dtype=torch.float32)
    if scales.shape != (channels,) or not bool(torch.isfinite(scales).all() and (scales > 0).all()):
        raise ValueError(f"scales must be {channels} positive finite numbers (one per layer4 channel), got {scales}")
    edited = copy.deepcopy(model)
    scales = scales.to(edited.fc.weight.device)
    if isinstance(edited, ShapesNet):
        _scale_output(edited.layer4[4], scales)  # conv, bn, relu, conv, bn, relu: the second batch norm
    else:
        for index, block in enumerate(edited.layer4):
            _scale_output(block.bn3 if hasattr(block, "bn3") else block.bn2, scales)
            if index == 0:
                if block.downsample is None:
                    raise ValueError("the first layer4 block has no downsample: its identity path cannot be scaled")
                _scale_output(block.downsample[1], scales)
            else:
                block.conv1.weight.div_(scales.view(1, -1, 1, 1))
    edited.fc.weight.div_(scales.view(1, -1))
    return edited


__all__ = ["layer4_channel_scale_edit"]
