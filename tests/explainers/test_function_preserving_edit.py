"""The premise of a map that explains a ViT: an edit that leaves the model's function unchanged must not move it.

The edit (``models.vit_edits.mean_direction_edit``) adds ``(u . x_t) * 1`` to every token after
the first block, along the direction each LayerNorm removes: the outputs stay, LaFAM's channel
mean of the residual stream (and the mean of magnitudes) moves, the default layer's map stays.
"""

from __future__ import annotations

import pytest
import torch
from tiny_vits import tiny_dino, tiny_torchvision
from torch import nn

import lafam_utils as lu
from lafam_utils.models.vit_edits import mean_direction_edit

EDITED_BLOCK = {"dino": "blocks.0", "torchvision": "encoder.layers.encoder_layer_0"}
LAST_BLOCK = {"dino": "blocks.1", "torchvision": "encoder.layers.encoder_layer_1"}
MODELS = {"dino": lambda: tiny_dino(registers=4), "torchvision": tiny_torchvision}


def maps_with_and_without_the_edit(model: nn.Module, kind: str, method: str, **options) -> tuple[torch.Tensor, ...]:
    x = torch.rand(3, 3, 32, 40 if kind == "dino" else 32, generator=torch.Generator().manual_seed(2))
    explainer = lu.explainer(method, model, upsample=None, **options)
    direction = torch.randn(32, generator=torch.Generator().manual_seed(3)) / 32**0.5
    plain = explainer(x)
    with mean_direction_edit(model, EDITED_BLOCK[kind], direction):
        edited = explainer(x)
    return plain, edited


@pytest.mark.parametrize("kind", MODELS)
def test_the_edit_leaves_the_outputs(kind):
    model = MODELS[kind]()
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    direction = torch.randn(32, generator=torch.Generator().manual_seed(3)) / 32**0.5
    with torch.no_grad():
        plain = model(x)
        with mean_direction_edit(model, EDITED_BLOCK[kind], direction):
            edited = model(x)
            stream = lu.hooks.layer_output(model, LAST_BLOCK[kind], x)
        unedited_stream = lu.hooks.layer_output(model, LAST_BLOCK[kind], x)
    assert (stream - unedited_stream).abs().amax() > 0.5  # the residual stream did change
    torch.testing.assert_close(edited, plain, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", MODELS)
def test_the_residual_stream_maps_move_and_the_default_and_centred_maps_do_not(kind):
    model = MODELS[kind]()
    for method, layer in (("lafam", LAST_BLOCK[kind]), ("lafam-magnitude", "auto"), ("eigencam", LAST_BLOCK[kind])):
        plain, edited = maps_with_and_without_the_edit(model, kind, method, layer=layer)
        assert (edited - plain).abs().amax() > 0.2, method
    for method in ("lafam", "lafam-centred-norm", "eigencam"):  # continuous maps (FEM's threshold can flip on rounding)
        plain, edited = maps_with_and_without_the_edit(model, kind, method)
        torch.testing.assert_close(edited, plain, rtol=0, atol=1e-4, msg=method)


def test_the_edit_checks_the_direction_and_removes_its_hook():
    model = tiny_dino()
    with pytest.raises(ValueError, match=r"\(B, N, C\) tokens of C = 7 channels"):
        with mean_direction_edit(model, "blocks.0", torch.ones(7)):
            model(torch.rand(1, 3, 32, 32))
    assert not model.blocks[0]._forward_hooks
