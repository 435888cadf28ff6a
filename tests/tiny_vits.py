"""Tiny Vision Transformers for the explainer tests, and the hand computations they are checked against."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

from lafam_utils.models.vit import VisionTransformer, ViTConfig

PATCH = 8


def tiny_dino(registers: int = 4, seed: int = 0) -> VisionTransformer:
    """A DINOv2-style ViT (patch 8, width 32, depth 2, 2 heads, LayerScale, ``registers`` registers)
    with weights large enough that its attention is far from uniform."""
    torch.manual_seed(seed)
    config = ViTConfig(PATCH, 32, 2, 2, img_size=32, layer_scale=1.0, num_register_tokens=registers)
    return randomised(VisionTransformer(config))


def tiny_torchvision(seed: int = 0) -> TorchvisionViT:
    """torchvision's ViT at 32x32 (patch 8, width 32, depth 2, 10 classes), its zero-initialised head randomised."""
    torch.manual_seed(seed)
    model = TorchvisionViT(
        image_size=32, patch_size=PATCH, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
    )
    return randomised(model)


def randomised(model: nn.Module) -> nn.Module:
    """Every Linear weight drawn with std 1.5 / sqrt(fan_in), norm weights and LayerScale around 1
    (a unit LayerNorm would make every token's channel mean its bias' mean), biases and tokens
    with std 0.5 / 1; in eval mode."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim == 2 and "." in name:
                parameter.normal_(0, 1.5 / parameter.shape[1] ** 0.5)
            elif parameter.ndim == 1 and name.endswith(("weight", "gamma")):
                parameter.normal_(1.0, 0.3)
            elif name.endswith("bias"):
                parameter.normal_(0, 0.5)
            elif "token" in name or "pos" in name:
                parameter.normal_(0, 1.0)
    return model.eval()


def layer_output(model: nn.Module, layer: str, x: Tensor) -> Tensor:
    """A layer's output from a plain forward hook."""
    store: list[Tensor] = []
    handle = model.get_submodule(layer).register_forward_hook(lambda module, inputs, output: store.append(output))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return store[0]


def normalise(maps: Tensor) -> Tensor:
    """Per-image min-max to [0, 1]; a constant map becomes zeros."""
    flat = maps.flatten(1)
    low, high = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    span = torch.where(high > low, high - low, 1.0)
    return ((flat - low) / span).view_as(maps)


def patches(tokens: Tensor, prefix: int, size: tuple[int, int], patch: int = PATCH) -> Tensor:
    """(B, N, C) tokens -> (B, h, w, C): the prefix dropped, the rest row by row."""
    return tokens[:, prefix:].reshape(len(tokens), size[0] // patch, size[1] // patch, tokens.shape[2])


def lafam_by_hand(model: nn.Module, layer: str, x: Tensor, prefix: int) -> Tensor:
    """Channel mean of the patch tokens, normalised, nearest-upsampled to the images' size."""
    grid = patches(layer_output(model, layer, x), prefix, x.shape[-2:])
    return F.interpolate(normalise(grid.mean(dim=3))[:, None], size=x.shape[-2:], mode="nearest")[:, 0]


def mlp_activation_by_hand(model: nn.Module, block: str, x: Tensor) -> Tensor:
    """A block's MLP activation from its second norm's output: ``GELU(fc1(norm2(x)))`` (torchvision:
    ``ln_2``, ``mlp.0``), with the first linear layer's weights applied by hand."""
    torchvision = isinstance(model, TorchvisionViT)
    normed = layer_output(model, f"{block}.{'ln_2' if torchvision else 'norm2'}", x)
    fc1 = model.get_submodule(f"{block}.mlp.{'0' if torchvision else 'fc1'}")
    return F.gelu(F.linear(normed, fc1.weight, fc1.bias))


def activation_lafam_by_hand(model: nn.Module, block: str, x: Tensor, prefix: int) -> Tensor:
    """LaFAM at a block's MLP activation (``mlp_activation_by_hand``): the patches' channel mean,
    normalised, nearest-upsampled."""
    grid = patches(mlp_activation_by_hand(model, block, x), prefix, x.shape[-2:])
    return F.interpolate(normalise(grid.mean(dim=3))[:, None], size=x.shape[-2:], mode="nearest")[:, 0]


def centred_norm_by_hand(model: nn.Module, layer: str, x: Tensor, prefix: int) -> Tensor:
    """Each patch token's L2 norm after its channel mean is subtracted, normalised, at the patch grid."""
    grid = patches(layer_output(model, layer, x), prefix, x.shape[-2:]).double()
    return normalise((grid - grid.mean(dim=3, keepdim=True)).norm(dim=3)).float()


def gradcam_by_hand(
    model: nn.Module, layer: str, x: Tensor, prefix: int, patch: int = PATCH, target: int | None = None
) -> tuple[Tensor, Tensor]:
    """pytorch-grad-cam's ViT recipe: weights = the patch tokens' mean gradient of the class score
    (``target``, None: the predicted class), map = ReLU of the weighted channel sum, normalised;
    and the explained classes."""
    store: list[Tensor] = []

    def keep(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        output.retain_grad()
        store.append(output)

    handle = model.get_submodule(layer).register_forward_hook(keep)
    try:
        with torch.enable_grad():
            scores = model(x)
            targets = scores.argmax(dim=1) if target is None else torch.full((len(x),), target)
            scores.gather(1, targets[:, None]).sum().backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    acts, grads = (patches(tokens, prefix, x.shape[-2:], patch) for tokens in (store[0].detach(), store[0].grad))
    weights = grads.mean(dim=(1, 2))
    return normalise((acts * weights[:, None, None]).sum(dim=3).relu()), targets


def eigencam_by_hand(model: nn.Module, layer: str, x: Tensor, prefix: int) -> Tensor:
    """The centred patch tokens projected on the top eigenvector of their covariance (float64),
    signed to correlate with the channel mean, ReLU, normalised."""
    grid = patches(layer_output(model, layer, x), prefix, x.shape[-2:]).double()
    samples = grid.flatten(1, 2)
    centred = samples - samples.mean(dim=1, keepdim=True)
    _, vectors = torch.linalg.eigh(centred.transpose(1, 2) @ centred)
    projection = (centred @ vectors[:, :, -1:])[:, :, 0]
    channel_mean = samples.mean(dim=2)
    sign = torch.sign((projection * (channel_mean - channel_mean.mean(dim=1, keepdim=True))).sum(dim=1))
    return normalise((sign[:, None] * projection).relu().view(grid.shape[:3])).float()


def cls_attention_by_hand(model: VisionTransformer, x: Tensor) -> Tensor:
    """The last block's attention probabilities from CLS to the patches, (B, heads, h, w), from its
    ``norm1`` output and its ``qkv`` weights, as DINO's ``Attention.forward`` computes them."""
    last = len(model.blocks) - 1
    normed = layer_output(model, f"blocks.{last}.norm1", x)
    attention = model.blocks[last].attn
    batch, count, dim = normed.shape
    heads = attention.num_heads
    qkv = F.linear(normed, attention.qkv.weight, attention.qkv.bias).reshape(batch, count, 3, heads, dim // heads)
    q, k, _ = qkv.permute(2, 0, 3, 1, 4)
    probabilities = ((q @ k.transpose(-2, -1)) * (dim // heads) ** -0.5).softmax(dim=-1)
    cls_to_patches = probabilities[:, :, 0, model.num_prefix_tokens :]
    return cls_to_patches.reshape(batch, heads, x.shape[-2] // PATCH, x.shape[-1] // PATCH)
