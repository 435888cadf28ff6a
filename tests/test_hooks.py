import pytest
import torch
from torch import nn

from lafam_utils.hooks import capture, find_layer, layer_output


def hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())


def test_records_several_layers_by_name_and_module(resnet50, images):
    with capture(resnet50, ["layer4", resnet50.layer3[5].conv3]) as rec, torch.no_grad():
        resnet50(images)
    assert set(rec.outputs) == {"layer4", "layer3.5.conv3"}
    assert rec.outputs["layer4"].shape == (3, 2048, 4, 5)
    assert rec.outputs["layer3.5.conv3"].shape[1] == 1024
    assert hooks_left(resnet50) == 0


def test_stop_skips_the_rest_of_the_model(resnet50, images):
    called = []
    handle = resnet50.fc.register_forward_hook(lambda *a: called.append(1))
    try:
        out = layer_output(resnet50, "layer2", images)
    finally:
        handle.remove()
    assert out.shape[1] == 512 and not called
    assert hooks_left(resnet50) == 0


def test_hooks_removed_when_forward_raises(resnet50):
    with pytest.raises(RuntimeError):
        with capture(resnet50, "layer4"):
            resnet50(torch.randn(1, 5, 32, 32))  # wrong channel count
    assert hooks_left(resnet50) == 0


def test_gradient_of_the_output_is_recorded(resnet50, images):
    x = images[:1].clone().requires_grad_(True)
    with capture(resnet50, "layer4", gradients=True) as rec:
        logits = resnet50(x)
    logits[0, 3].backward()
    acts, grad = rec.outputs["layer4"], rec.gradients["layer4"]
    expected = torch.autograd.grad(resnet50(x)[0, 3], x)[0]  # same graph reached through the input
    assert grad.shape == acts.shape and grad.abs().sum() > 0
    assert x.grad is not None and torch.allclose(x.grad, expected, atol=1e-6)
    resnet50.zero_grad(set_to_none=True)
    assert hooks_left(resnet50) == 0


def test_unknown_layer_lists_close_matches(resnet50):
    with pytest.raises(KeyError, match="layer4"):
        find_layer(resnet50, "layr4")
    with pytest.raises(ValueError, match="not part of"):
        find_layer(resnet50, nn.Conv2d(3, 3, 1))
    with pytest.raises(TypeError):
        find_layer(resnet50, 4)
