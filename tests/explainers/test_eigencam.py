import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_grad_cam import EigenCAM as ReferenceEigenCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
from torch import nn

import lafam_utils as lu
from lafam_utils.explainers import minmax_normalize
from lafam_utils.explainers.eigencam import top_eigenpair

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cases.eigencam import eigencam_svd


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


def test_pytorch_grad_cam_sign_equals_pytorch_grad_cam(resnet50, images):
    maps = lu.EigenCAM(resnet50, upsample="bilinear", sign="pytorch-grad-cam")(images)
    reference = ReferenceEigenCAM(resnet50, [resnet50.layer4])(images, targets=None)
    assert maps.shape == reference.shape == (3, 97, 130)
    assert np.abs(minmax_normalize(maps).numpy() - reference).max() < 1e-4


def test_pytorch_grad_cam_sign_follows_numpys_svd_where_the_rules_differ():
    # 16 random activation sets: NumPy's SVD orients several of them against the channel mean and
    # against the largest score (5 and 10 of 16 on the machine that wrote this); the option follows it
    acts = torch.randn(16, 6, 3, 4, generator=torch.Generator().manual_seed(0))
    expected = minmax_normalize(torch.from_numpy(np.maximum(get_2d_projection(acts.numpy()), 0)))
    raw = lu.EigenCAM(identity_model(), sign="pytorch-grad-cam").from_activations(acts)
    assert (minmax_normalize(raw) - expected).abs().max() < 1e-4


def test_bad_sign_says_what_was_expected(resnet50):
    with pytest.raises(ValueError, match="sign must be one of"):
        lu.EigenCAM(resnet50, sign="positive")


@pytest.mark.parametrize("sign", ["channel-mean", "max-abs"])
def test_sign_rules_by_hand(sign):
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
        if sign == "channel-mean":
            flip = torch.corrcoef(torch.stack([projection.flatten(), x.mean(dim=0).flatten().double()]))[0, 1] < 0
        else:
            flip = projection.flatten()[projection.abs().argmax()] < 0
        if flip:
            projection = -projection
        expected = minmax_normalize(projection.relu()[None].float())
        maps = lu.EigenCAM(identity_model(), upsample=None, sign=sign)(x[None])
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


def svd_maps(acts: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The batched-SVD EigenCAM (the package's code before the Gram matrix), normalised like the maps."""
    return minmax_normalize(eigencam_svd(acts, dtype).float())


def gram_maps(acts: torch.Tensor) -> torch.Tensor:
    return minmax_normalize(lu.EigenCAM(identity_model(), upsample=None).from_activations(acts))


def test_gram_matrix_maps_equal_the_svd_on_random_activations():
    acts = torch.randn(32, 256, 7, 7, generator=torch.Generator().manual_seed(0)).relu()
    # float64: the float32 SVD itself is off by up to 4e-4 where the top two singular values are close
    assert (gram_maps(acts) - svd_maps(acts, torch.float64)).abs().max() < 1e-4


def test_gram_matrix_maps_equal_the_svd_on_resnet50_layer4(resnet50):
    x = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        acts = lu.hooks.layer_output(resnet50, "layer4", x)
    assert acts.shape == (4, 2048, 7, 7)
    assert (gram_maps(acts) - svd_maps(acts)).abs().max() < 1e-4
    assert (gram_maps(acts) - svd_maps(acts, torch.float64)).abs().max() < 1e-4


@pytest.mark.parametrize("shape", [(1, 2048, 7, 7), (1, 3, 5, 7), (2, 5, 3, 11), (3, 64, 1, 9), (5, 40, 6, 6)])
def test_gram_matrix_maps_equal_the_svd_for_odd_sizes(shape):
    # fewer channels than positions (3 x 35, 5 x 33) takes the channels' Gram matrix
    acts = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    assert (gram_maps(acts) - svd_maps(acts, torch.float64)).abs().max() < 1e-4


def test_a_constant_map_beside_others_is_zero_and_leaves_them_alone():
    acts = torch.randn(3, 16, 4, 5, generator=torch.Generator().manual_seed(4))
    acts[1] = 7.25
    maps = gram_maps(acts)
    assert torch.equal(maps[1], torch.zeros(4, 5))
    assert (maps - svd_maps(acts, torch.float64)).abs().max() < 1e-4
    wide = torch.full((2, 3, 6, 7), -0.3)  # the channels' Gram matrix, too
    assert torch.equal(gram_maps(wide), torch.zeros(2, 6, 7))


def spectrum(gap: float, positions: int = 49, channels: int = 128, seed: int = 0) -> torch.Tensor:
    """(1, C, 7, 7) activations whose centred samples have singular values 1, 1 - gap, 0.5, 0.25, 0.1."""
    generator = torch.Generator().manual_seed(seed)
    left = torch.randn(positions, 5, generator=generator, dtype=torch.float64)
    left -= left.mean(dim=0)  # orthogonal to the constant vector: centring keeps the spectrum
    left = torch.linalg.qr(left).Q
    right = torch.linalg.qr(torch.randn(channels, 5, generator=generator, dtype=torch.float64)).Q
    values = torch.tensor([1.0, 1.0 - gap, 0.5, 0.25, 0.1], dtype=torch.float64)
    samples = left @ torch.diag(values) @ right.T + torch.rand(channels, generator=generator, dtype=torch.float64)
    return samples.T.reshape(1, channels, 7, 7).float()


@pytest.mark.parametrize("gap", [1e-2, 1e-3])
def test_near_degenerate_spectra_keep_the_first_component(gap):
    for seed in range(4):
        acts = spectrum(gap, seed=seed)
        assert (gram_maps(acts) - svd_maps(acts, torch.float64)).abs().max() < 1e-4


def test_the_gpu_estimate_gives_the_cpu_eigenpairs():
    """``method="squaring"`` (batched products only, the default off the CPU) against LAPACK's eigenvalue (the
    CPU default) and float64 ``eigh``: random, near-degenerate, rank-one and zero Gram matrices."""
    from lafam_utils.explainers.eigencam import gram_statistics, top_eigenpair

    acts = torch.cat([torch.randn(8, 256, 7, 7, generator=torch.Generator().manual_seed(5)).relu(),
                      *(spectrum(gap, channels=256, seed=seed) for gap in (1e-2, 1e-3, 1e-4) for seed in range(2)),
                      torch.ones(1, 256, 7, 7) * torch.arange(49.0).reshape(1, 1, 7, 7),  # rank one
                      torch.full((1, 256, 7, 7), 0.5)])  # zero after centring
    gram = gram_statistics(acts.float().flatten(2))[0]
    values, vectors = torch.linalg.eigh(gram.double())
    for method in ("eigvalsh", "squaring"):
        value, vector = top_eigenpair(gram, method)
        assert value.device == gram.device and vector.shape == gram.shape[:2]
        torch.testing.assert_close(value.double(), values[:, -1].clamp_min(0), rtol=1e-5, atol=1e-3)
        cosine = (vector.double() * vectors[..., -1]).sum(dim=1).abs()
        assert (cosine[:-1] > 1 - 1e-5).all() and torch.isfinite(vector).all()  # the zero matrix has no direction
    assert torch.equal(top_eigenpair(gram)[0], top_eigenpair(gram, "eigvalsh")[0])  # the CPU's default


def test_maps_from_the_gpu_estimate_equal_the_svd(monkeypatch, resnet50):
    from lafam_utils.explainers import eigencam

    monkeypatch.setattr(eigencam, "top_eigenpair", lambda gram: top_eigenpair(gram, "squaring"))
    acts = torch.randn(32, 256, 7, 7, generator=torch.Generator().manual_seed(0)).relu()
    assert (gram_maps(acts) - svd_maps(acts, torch.float64)).abs().max() < 1e-4
    for gap in (1e-2, 1e-3):
        for seed in range(4):
            acts = spectrum(gap, seed=seed)
            assert (gram_maps(acts) - svd_maps(acts, torch.float64)).abs().max() < 1e-4
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        bf16 = lu.EigenCAM(resnet50, precision="bf16")(x)  # bf16 activations, float32 Gram matrices
    assert bf16.dtype == torch.float32 and bf16.shape == (2, 64, 64) and torch.isfinite(bf16).all()
