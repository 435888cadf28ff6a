import numpy as np
import torch
from pytorch_grad_cam import EigenCAM as ReferenceEigenCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
from torch import nn

import lafam_utils as lu
from lafam_utils.explainers import minmax_normalize


def identity_model() -> nn.Module:
    model = nn.Sequential()
    model.add_module("layer4", nn.Identity())
    return model


def test_equals_pytorch_grad_cam_up_to_its_svd_sign(resnet50, images):
    maps = lu.EigenCAM(resnet50, upsample="bilinear")(images)
    reference = ReferenceEigenCAM(resnet50, [resnet50.layer4])(images, targets=None)
    with torch.no_grad():
        acts = lu.hooks.layer_output(resnet50, "layer4", images).numpy()
    flipped = scale_cam_image(scale_cam_image(np.maximum(-get_2d_projection(acts), 0), (130, 97)))
    renormalised = minmax_normalize(maps).numpy()  # pytorch-grad-cam min-max normalises after resizing too
    for ours, theirs, theirs_flipped in zip(renormalised, reference, flipped):
        assert np.allclose(ours, theirs, atol=1e-4) or np.allclose(ours, theirs_flipped, atol=1e-4)


def test_sign_follows_the_channel_mean():
    # three channels over 2x3 positions; the first principal component is written out by hand
    acts = torch.tensor(
        [
            [[1.0, 2.0, 9.0], [1.0, 3.0, 8.0]],
            [[0.5, 1.0, 4.0], [0.0, 1.5, 5.0]],
            [[2.0, 2.0, 2.5], [2.0, 2.0, 2.0]],
        ]
    )
    for x in (acts, -acts):
        samples = x.flatten(1).T.double()
        centred = samples - samples.mean(dim=0)
        _, vectors = torch.linalg.eigh(centred.T @ centred)
        projection = (centred @ vectors[:, -1]).view(2, 3)
        if torch.corrcoef(torch.stack([projection.flatten(), x.mean(dim=0).flatten().double()]))[0, 1] < 0:
            projection = -projection
        expected = minmax_normalize(projection.relu()[None].float())
        maps = lu.EigenCAM(identity_model(), upsample=None)(x[None])
        assert torch.allclose(maps, expected, atol=1e-5)


def test_no_graph_batch_of_one_and_shape(resnet50, images):
    explainer = lu.EigenCAM(resnet50)
    batch = explainer(images.requires_grad_(True))
    assert batch.shape == (3, 97, 130) and not batch.requires_grad
    assert all(p.grad is None for p in resnet50.parameters())
    single = torch.cat([explainer(images[i : i + 1]) for i in range(3)])
    assert torch.allclose(batch, single, atol=1e-4)


def test_constant_activations_give_zero_maps():
    maps = lu.EigenCAM(identity_model(), upsample=None)(torch.full((2, 3, 5, 7), 0.3))
    assert maps.shape == (2, 5, 7)
    assert torch.equal(maps, torch.zeros_like(maps))
