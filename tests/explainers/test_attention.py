"""The "attention" explainer: the last block's CLS attention to the patch tokens, equal to its hand
computation from the block's ``norm1`` output and ``qkv`` weights (``tiny_vits``)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from tiny_vits import (
    PATCH,
    cls_attention_by_hand,
    layer_output,
    normalise,
    tiny_dino,
    tiny_torchvision,
)

import lafam_utils as lu
from lafam_utils.explainers import CLSAttention, explainer_class
from lafam_utils.models.vit_releases import VIT_RELEASES

SIZES = [(1, 32, 32), (2, 37, 45), (3, 8, 56)]


def batch(size: tuple[int, int, int], seed: int = 1) -> torch.Tensor:
    return torch.randn(size[0], 3, *size[1:], generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("registers", [0, 4])
@pytest.mark.parametrize("size", SIZES)
def test_mean_over_heads_of_the_cls_attention_to_the_patches(registers, size):
    vit = tiny_dino(registers=registers)
    x = batch(size)
    explainer = lu.explainer("attention", vit, upsample=None)
    maps = explainer(x)
    by_hand = cls_attention_by_hand(vit, x)
    assert maps.shape == (size[0], size[1] // PATCH, size[2] // PATCH)
    torch.testing.assert_close(explainer.head_maps, by_hand, rtol=0, atol=1e-6)
    torch.testing.assert_close(maps, normalise(by_hand.mean(dim=1)), rtol=0, atol=1e-5)
    assert by_hand.sum(dim=(2, 3)).lt(1).all()  # the CLS and register tokens' share is left out


def test_one_head_on_request_and_the_base_behaviour():
    vit = tiny_dino()
    x = batch((2, 37, 45))
    by_hand = cls_attention_by_hand(vit, x)
    head = lu.explainer("attention", vit, head=1, upsample=None)(x)
    torch.testing.assert_close(head, normalise(by_hand[:, 1]), rtol=0, atol=1e-5)
    upsampled = lu.explainer("attention", vit, threshold=0.5)(x)
    expected = F.interpolate(normalise(by_hand.mean(dim=1))[:, None], size=(37, 45), mode="nearest")[:, 0]
    torch.testing.assert_close(upsampled, expected.masked_fill(expected < 0.5, 0.0), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="head 2 does not exist: 'blocks.1.attn' has 2 heads"):
        lu.explainer("attention", vit, head=2)(x)
    with pytest.raises(ValueError, match="head must be None"):
        lu.explainer("attention", vit, head=-1)


def test_another_blocks_attention_by_name():
    vit = tiny_dino()
    x = batch((1, 32, 32))
    first = lu.explainer("attention", vit, layer="blocks.0.attn", upsample=None)
    first(x)
    normed = layer_output(vit, "blocks.0.norm1", x)
    qkv = F.linear(normed, vit.blocks[0].attn.qkv.weight, vit.blocks[0].attn.qkv.bias).reshape(1, 21, 3, 2, 16)
    q, k, _ = qkv.permute(2, 0, 3, 1, 4)
    probabilities = ((q @ k.transpose(-2, -1)) * 16**-0.5).softmax(dim=-1)
    torch.testing.assert_close(first.head_maps, probabilities[:, :, 0, 5:].reshape(1, 2, 4, 4), rtol=0, atol=1e-6)


def test_one_forward_stopped_after_the_attention():
    vit = tiny_dino()
    calls = []
    handles = [vit.blocks[1].mlp.register_forward_hook(lambda *_: calls.append("mlp")),
               vit.patch_embed.register_forward_hook(lambda *_: calls.append("embed"))]
    try:
        lu.explainer("attention", vit)(batch((2, 32, 32)))
    finally:
        for handle in handles:
            handle.remove()
    assert calls == ["embed"]


def test_registered_label_free_without_a_layer_choice():
    cls = explainer_class("attention")
    assert cls is CLSAttention and cls.title == "Attention"
    assert not cls.needs_labels and not cls.needs_layer


@pytest.mark.parametrize(("name", "size"), [("dino-vits16", (1, 32, 48)), ("dinov2-vits14-reg", (2, 28, 42))])
def test_the_dino_releases(name, size):
    model = lu.load_model(name, weights=None)
    explainer = lu.explainer("attention", model)
    maps = explainer(batch(size))
    patch = VIT_RELEASES[name].config.patch_size
    assert maps.shape == (size[0], *size[1:])
    assert explainer.layer == "blocks.11.attn"
    assert explainer.head_maps.shape == (size[0], model.config.num_heads, size[1] // patch, size[2] // patch)


def test_models_whose_attention_cannot_be_read_are_clear_errors():
    with pytest.raises(ValueError, match="cannot be read from VisionTransformer.*attn_drop"):
        lu.explainer("attention", tiny_torchvision())
    with pytest.raises(ValueError, match="cannot be read from ResNet"):
        lu.explainer("attention", lu.load_model("resnet18", weights=None))
    vit = copy.deepcopy(tiny_dino())
    attention = vit.blocks[1].attn

    def fused(x: torch.Tensor) -> torch.Tensor:
        batch_, count, dim = x.shape
        q, k, v = attention.qkv(x).reshape(batch_, count, 3, 2, dim // 2).permute(2, 0, 3, 1, 4)
        return attention.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch_, count, dim))

    attention.forward = fused
    with pytest.raises(RuntimeError, match="'blocks.1.attn.attn_drop' was not called.*fused attention"):
        lu.explainer("attention", vit)(batch((1, 32, 32)))
    del attention.attn_drop
    with pytest.raises(ValueError, match="'blocks.1.attn' of VisionTransformer has no attn_drop"):
        lu.explainer("attention", vit)


def test_bf16():
    vit = tiny_dino()
    x = batch((2, 37, 45))
    fp32 = lu.explainer("attention", vit, upsample=None)(x)
    bf16 = lu.explainer("attention", vit, upsample=None, precision="bf16")(x)
    assert bf16.dtype == torch.float32 and (bf16 - fp32).abs().max() < 0.1
