import math
import warnings

import numpy as np
import pytest
import torch
from peer_helpers import identity_model, layer4_activations
from pytorch_grad_cam.feature_factorization.deep_feature_factorization import DeepFeatureFactorization, dff
from sklearn.decomposition import NMF

import lafam_utils as lu
from lafam_utils.explainers import DFF, minmax_normalize
from lafam_utils.explainers.dff import nmf

K = 5
PGC = "pytorch-grad-cam"


def sklearn_start(matrix: np.ndarray, k: int = K, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn 1.9's ``NMF(init="random", random_state=seed)`` start for one float32 matrix."""
    rng = np.random.RandomState(seed)
    avg = np.sqrt(matrix.mean() / k)
    h = np.abs(avg * rng.standard_normal((k, matrix.shape[1])).astype(matrix.dtype))
    w = np.abs(avg * rng.standard_normal((matrix.shape[0], k)).astype(matrix.dtype))
    return w, h


class SklearnStartDFF(DFF):
    """DFF started where scikit-learn starts (NumPy's RandomState(0)), to compare the solvers."""

    def initial_factors(self, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w, h = zip(*(sklearn_start(matrix, self.n_components) for matrix in data.numpy()))
        return torch.from_numpy(np.stack(w)), torch.from_numpy(np.stack(h))


def reference_factors(acts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pytorch-grad-cam's ``dff``: concepts (C, k) and raw concept maps (B, k, h, w) of the batch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's ConvergenceWarning at max_iter
        return dff(acts.copy(), n_components=K)


def relative_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def collins_nmf(matrix: torch.Tensor, k: int, seed: int, max_iter: int = 200, tol: float = 1e-4):
    """Collins et al.'s NMF (edocollins/DFF nmf.py, cuda=False) for one (P, C) matrix, written out:
    start from the global generator seeded with ``seed``, multiplicative updates of W then H, the
    error tested every 10 iterations."""
    torch.manual_seed(seed)
    scale = math.sqrt(matrix.mean() / k)
    w, h = (torch.randn(matrix.shape[0], k) * scale).abs(), (torch.randn(k, matrix.shape[1]) * scale).abs()
    at_start = previous = torch.linalg.norm(matrix - w @ h)
    for n_iter in range(max_iter):
        denominator = w @ (h @ h.T)
        w = w * ((matrix @ h.T) / torch.where(denominator == 0, 1e-7, denominator))
        denominator = (w.T @ w) @ h
        h = h * ((w.T @ matrix) / torch.where(denominator == 0, 1e-7, denominator))
        if n_iter % 10 == 0:
            error = torch.linalg.norm(matrix - w @ h)
            if (previous - error) / at_start < tol:
                break
            previous = error
    return w, h, n_iter + 1


def test_registered_with_its_title(resnet50):
    built = lu.explainer("DFF", resnet50, n_components=3, joint=True)
    assert type(built) is DFF and built.title == "DFF" and (built.n_components, built.joint) == (3, True)
    assert built.variant == "paper"
    with pytest.raises(ValueError, match="n_components"):
        lu.explainer("dff", resnet50, n_components=0)
    with pytest.raises(ValueError, match="variant must be one of"):
        lu.explainer("dff", resnet50, variant="sklearn")
    with pytest.raises(RuntimeError, match="call the explainer"):
        built.concept_images((8, 8))


def test_joint_equals_pytorch_grad_cam_from_the_same_start(resnet50, images):
    explainer = SklearnStartDFF(resnet50, n_components=K, joint=True, upsample="bilinear", variant=PGC)
    explainer(images)
    concepts, maps = reference_factors(layer4_activations(resnet50, images))
    assert explainer.concept_maps.shape == (3, K, 4, 5)
    assert relative_error(explainer.concept_maps.numpy(), maps) < 1e-4
    assert relative_error(explainer.concepts[0].numpy(), concepts) < 1e-4
    assert torch.equal(explainer.concepts[0], explainer.concepts[2])  # one set of concepts for the batch
    reference = DeepFeatureFactorization(resnet50, resnet50.layer4)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, resized = reference(images, n_components=K)
    finally:
        reference.activations_and_grads.release()
    # pytorch-grad-cam min-max normalises each concept map and resizes it with cv2 (bilinear)
    assert np.abs(explainer.concept_images((97, 130)).numpy() - np.stack(resized)).max() < 1e-4


def test_per_image_equals_pytorch_grad_cam_on_each_image(resnet50, images):
    explainer = SklearnStartDFF(resnet50, n_components=K, upsample=None, variant=PGC)
    maps = explainer(images)
    acts = layer4_activations(resnet50, images)
    for i in range(3):
        concepts, concept_maps = reference_factors(acts[i : i + 1])
        assert relative_error(explainer.concept_maps[i].numpy(), concept_maps[0]) < 1e-4
        assert relative_error(explainer.concepts[i].numpy(), concepts) < 1e-4
        chosen = concept_maps[0, int(explainer.selected[i])]
        expected = minmax_normalize(torch.from_numpy(chosen)[None])[0]
        assert torch.allclose(maps[i], expected, atol=1e-4)


def test_stops_at_the_same_iteration_as_scikit_learn():
    # exact rank-3 matrices converge before max_iter at tol=1e-3 (at 1e-4 one of these stops one iteration
    # apart: the violation ratio lands within float32 rounding of tol, summed in another order there)
    generator = torch.Generator().manual_seed(4)
    planted = torch.rand(4, 12, 3, generator=generator) @ torch.rand(4, 3, 30, generator=generator)
    starts = [sklearn_start(matrix, k=3) for matrix in planted.numpy()]
    w, h, n_iter = nmf(planted, *(torch.from_numpy(np.stack(f)) for f in zip(*starts)), tol=1e-3)
    for i, (matrix, (w0, h0)) in enumerate(zip(planted.numpy(), starts)):
        model = NMF(n_components=3, init="custom", solver="cd", max_iter=200, tol=1e-3)
        w_ref = model.fit_transform(matrix, W=w0.copy(), H=h0.copy())
        assert model.n_iter_ < 200 and int(n_iter[i]) == model.n_iter_
        assert relative_error(w[i].numpy(), w_ref) < 1e-4 and relative_error(h[i].numpy(), model.components_) < 1e-4
    assert len(set(n_iter.tolist())) > 1  # each matrix stopped on its own


@pytest.mark.parametrize("joint", [False, True])
def test_paper_variant_equals_collins_et_als_solver(resnet50, images, joint):
    explainer = lu.explainer("dff", resnet50, joint=joint, seed=3, upsample=None)
    maps = explainer(images)
    acts = torch.from_numpy(layer4_activations(resnet50, images))  # (3, 2048, 4, 5), after a ReLU
    matrices = [acts.permute(0, 2, 3, 1).reshape(-1, 2048)] if joint else [a.flatten(1).T for a in acts]
    for i, matrix in enumerate(matrices):
        heat, profiles, n_iter = collins_nmf(matrix, K, seed=3)
        ours = explainer.concept_maps.flatten(2).transpose(1, 2).reshape(-1, K) if joint else None
        ours = ours if joint else explainer.concept_maps[i].flatten(1).T
        assert relative_error(ours.numpy(), heat.numpy()) < 1e-3
        assert relative_error(explainer.concepts[i].T.numpy(), profiles.numpy()) < 1e-3
        assert int(explainer.n_iter[i]) == n_iter
    chosen = explainer.concept_maps[torch.arange(3), explainer.selected]
    assert torch.allclose(maps, minmax_normalize(chosen), atol=1e-6)


def test_paper_variant_stops_where_collins_et_als_solver_stops():
    # exact rank-3 matrices: the error stops falling by tol of its start between two tests, at different iterations
    generator = torch.Generator().manual_seed(4)
    planted = torch.rand(4, 30, 3, generator=generator) @ torch.rand(4, 3, 12, generator=generator)
    explainer = lu.explainer("dff", identity_model(), n_components=3, seed=1, tol=1e-2)
    explainer.from_activations(planted.transpose(1, 2).reshape(4, 12, 5, 6))
    stops = [collins_nmf(matrix, 3, seed=1, tol=1e-2)[2] for matrix in planted]
    assert explainer.n_iter.tolist() == stops and max(stops) < 200 and len(set(stops)) > 1


def test_paper_variant_keeps_zero_entries_where_the_literal_updates_give_nan():
    # on this image a factor entry reaches exactly 0 while its denominator is a subnormal float32 number:
    # Collins et al.'s code multiplies 0 by an infinite ratio (NaN on CPUs that keep subnormals)
    model = lu.load_model("shapes-supervised")
    data = lu.SyntheticShapes(n=14, split="single", seed=1)
    acts = torch.from_numpy(layer4_activations(model, data[13]["image"][None]))
    explainer = lu.explainer("dff", model)
    assert torch.isfinite(explainer.from_activations(acts)).all()
    assert torch.isfinite(explainer.concept_maps).all() and torch.isfinite(explainer.concepts).all()


def test_paper_variant_refuses_negative_activations():
    with pytest.raises(ValueError, match="non-negative.*down to -1"):
        lu.explainer("dff", identity_model())(torch.full((1, 3, 4, 4), -1.0))
    lu.explainer("dff", identity_model(), variant=PGC)(torch.full((1, 3, 4, 4), -1.0))  # shifted by the minimum


@pytest.mark.parametrize("variant", ["paper", PGC])
def test_recovers_planted_concepts_and_shows_the_one_with_most_mass(variant):
    # two concepts with disjoint channels and disjoint halves of a 4x6 map; the second carries 3x the mass
    # (from a random start coordinate descent can lose a concept on such a tiny problem: with data seeds
    # 0..5 and starts 0..4, 8 of 30 runs end with both components on one half; these data recover from all 5)
    generator = torch.Generator().manual_seed(1)
    maps = torch.zeros(2, 4, 6)
    maps[0, :, :3] = torch.rand(4, 3, generator=generator) + 0.5
    maps[1, :, 3:] = 3 * torch.rand(4, 3, generator=generator) + 0.5
    profiles = torch.zeros(8, 2)
    profiles[:4, 0], profiles[4:, 1] = 1.0, 1.0
    acts = (profiles @ maps.flatten(1)).view(1, 8, 4, 6)
    explainer = lu.explainer(
        "dff", identity_model(), n_components=2, upsample=None, max_iter=2000, tol=1e-8, variant=variant
    )
    found = explainer.from_activations(acts)
    assert torch.allclose(minmax_normalize(found), minmax_normalize(maps[1:]), atol=1e-3)
    other = explainer.concept_maps[0, 1 - int(explainer.selected[0])]
    assert torch.allclose(minmax_normalize(other[None]), minmax_normalize(maps[:1]), atol=1e-3)


@pytest.mark.parametrize("variant", ["paper", PGC])
def test_per_image_maps_do_not_depend_on_the_batch(resnet50, images, variant):
    explainer = lu.explainer("dff", resnet50, variant=variant)
    batch = explainer(images)
    assert batch.shape == (3, 97, 130) and explainer.n_iter.shape == (3,)
    single = torch.cat([explainer(images[i : i + 1]) for i in range(3)])
    assert torch.allclose(batch, single, atol=1e-4)


def test_constant_activations_give_zero_maps_after_the_offset():
    # (without the offset, the paper's factorisation of a constant matrix splits it among the concepts at random)
    explainer = lu.explainer("dff", identity_model(), upsample=None, variant=PGC)
    maps = explainer(torch.full((2, 3, 5, 7), 0.3))
    assert maps.shape == (2, 5, 7)
    assert torch.equal(maps, torch.zeros_like(maps))
    assert explainer.n_iter.tolist() == [1, 1] and torch.isfinite(explainer.concepts).all()


def test_explain_concepts_puts_the_strongest_concept_first():
    torch.manual_seed(0)
    model = torch.nn.Sequential()
    model.add_module("layer4", torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, stride=4, padding=1), torch.nn.ReLU()))
    x = torch.randn(3, 3, 29, 35)
    dff = DFF(model.eval(), n_components=3)
    concepts = dff.explain_concepts(x)
    assert concepts.shape == (3, 3, 29, 35)
    torch.testing.assert_close(concepts[:, 0], dff(x))
    all_concepts = dff.concept_images((29, 35))
    torch.testing.assert_close(concepts.sort(dim=1).values, all_concepts.sort(dim=1).values)  # the same maps, reordered
