import numpy as np
import pytest
import torch
from peer_helpers import identity_model, layer4_activations, normalised
from pytorch_grad_cam import KPCA_CAM as ReferenceKPCACAM  # noqa: N811 - KPCA_CAM is a class, not a constant
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_kernel

import lafam_utils as lu
from lafam_utils.explainers import minmax_normalize

RBF_GAMMA = 1e-6  # squared distances here are ~1.3e6: at the default 1/C the kernel is I, no first component


def oriented(projections: np.ndarray, acts: np.ndarray) -> np.ndarray:
    """scikit-learn's kernel-PCA scores with EigenCAM's sign: positively correlated with the channel mean."""
    channel_mean = acts.mean(axis=1).reshape(len(acts), -1)
    flat = projections.reshape(len(acts), -1)
    agreement = (flat * (channel_mean - channel_mean.mean(axis=1, keepdims=True))).sum(axis=1)
    return np.where(agreement < 0, -1.0, 1.0)[:, None, None] * projections


def test_registered_with_its_title(resnet50):
    built = lu.explainer("KPCA-CAM", resnet50, kernel="rbf", gamma=0.5)
    assert type(built) is lu.explainers.KPCACAM and built.title == "KPCA-CAM"
    assert (built.kernel, built.gamma, built.coef0) == ("rbf", 0.5, 1.0)
    with pytest.raises(ValueError, match="kernel must be one of"):
        lu.explainer("kpca-cam", resnet50, kernel="laplacian")


@pytest.mark.parametrize(
    ("kernel", "gamma"), [("sigmoid", None), ("rbf", RBF_GAMMA), ("poly", None), ("linear", None), ("cosine", None)]
)
def test_equals_scikit_learn_kernel_pca_with_the_channel_mean_sign(resnet50, images, kernel, gamma):
    maps = lu.explainer("kpca-cam", resnet50, kernel=kernel, gamma=gamma, upsample=None)(images)
    acts = layer4_activations(resnet50, images)
    expected = normalised(oriented(get_2d_projection_kernel(acts, kernel, gamma), acts))
    assert maps.shape == (3, 4, 5)
    assert np.abs(maps.numpy() - expected).max() < 1e-4


@pytest.mark.parametrize(
    ("kernel", "gamma"), [("sigmoid", None), ("rbf", RBF_GAMMA), ("poly", None), ("linear", None), ("cosine", None)]
)
def test_pytorch_grad_cam_sign_equals_scikit_learn_kernel_pca(resnet50, images, kernel, gamma):
    explainer = lu.explainer("kpca-cam", resnet50, kernel=kernel, gamma=gamma, upsample=None, sign="pytorch-grad-cam")
    acts = layer4_activations(resnet50, images)
    expected = normalised(get_2d_projection_kernel(acts, kernel, gamma))
    assert np.abs(explainer(images).numpy() - expected).max() < 1e-4


def test_pytorch_grad_cam_sign_equals_pytorch_grad_cam_after_its_resize(resnet50, images):
    maps = lu.explainer("kpca-cam", resnet50, upsample="bilinear", sign="pytorch-grad-cam")(images)
    with ReferenceKPCACAM(resnet50, [resnet50.layer4]) as reference:
        expected = reference(images, targets=None)
    assert np.abs(minmax_normalize(maps).numpy() - expected).max() < 1e-4
    with pytest.raises(ValueError, match="sign must be one of"):
        lu.explainer("kpca-cam", resnet50, sign="max-abs")


def test_equals_pytorch_grad_cam_after_its_resize_up_to_its_sign(resnet50, images):
    maps = lu.explainer("kpca-cam", resnet50, upsample="bilinear")(images)
    with ReferenceKPCACAM(resnet50, [resnet50.layer4]) as reference:
        expected = reference(images, targets=None)
    flipped = -get_2d_projection_kernel(layer4_activations(resnet50, images))
    flipped = scale_cam_image(scale_cam_image(np.maximum(flipped, 0), (130, 97)))
    renormalised = minmax_normalize(maps).numpy()  # pytorch-grad-cam min-max normalises after resizing too
    matches = [
        min(np.abs(ours - theirs).max(), np.abs(ours - theirs_flipped).max())
        for ours, theirs, theirs_flipped in zip(renormalised, expected, flipped)
    ]
    assert max(matches) < 1e-4


def test_sign_follows_the_channel_mean():
    # with the linear kernel, kernel PCA is PCA: the scores are the first left singular vector times its value
    x = torch.rand(4, 6, 3, 5, generator=torch.Generator().manual_seed(3))
    for acts in (x, -x):
        samples = acts.flatten(2).transpose(1, 2).double()
        u, s, _ = torch.linalg.svd(samples - samples.mean(dim=1, keepdim=True), full_matrices=False)
        scores = u[:, :, 0] * s[:, :1]
        channel_mean = samples.mean(dim=2)
        agreement = (scores * (channel_mean - channel_mean.mean(dim=1, keepdim=True))).sum(dim=1)
        expected = (torch.where(agreement < 0, -1.0, 1.0)[:, None] * scores).relu().view(4, 3, 5).float()
        raw = lu.explainer("kpca-cam", identity_model(), kernel="linear").from_activations(acts)
        assert torch.allclose(raw, expected, atol=1e-5)
        assert (raw.flatten(1) > 0).any(dim=1).all()


def test_batch_of_one_odd_sizes_and_no_graph(resnet50, images):
    explainer = lu.explainer("kpca-cam", resnet50)
    batch = explainer(images.requires_grad_(True))
    assert batch.shape == (3, 97, 130) and not batch.requires_grad
    single = torch.cat([explainer(images[i : i + 1]) for i in range(3)])
    assert torch.allclose(batch, single, atol=1e-4)


@pytest.mark.parametrize("kernel", ["sigmoid", "rbf", "poly", "linear", "cosine"])
def test_constant_activations_give_zero_maps(kernel):
    maps = lu.explainer("kpca-cam", identity_model(), kernel=kernel, upsample=None)(torch.full((2, 3, 5, 7), 0.3))
    assert maps.shape == (2, 5, 7)
    assert torch.equal(maps, torch.zeros_like(maps))
