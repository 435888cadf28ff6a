"""Cases 11-12: the label-free peers beside LaFAM and against pytorch-grad-cam's implementations.

11: FEM, KPCA-CAM, DFF and the random baseline (and EigenCAM) on a random-init ResNet50's layer4,
each with its images/s beside LaFAM's and its time against pytorch-grad-cam 1.5.7's class of the
same name, in one interleaved run. pytorch-grad-cam's classes run the whole network (they read
its output for the targets) and work image by image in NumPy; its ``dff`` factorises the batch
jointly (one NMF, ours one per image, batched); its ``RandomCAM`` is another method (random
channel weights, with a backward pass). 12: REPEAT against the official code's shape, a per-image
loop over repeats of a per-image RELAX loop over mask batches (no library ships REPEAT).
pytorch-grad-cam is imported only when the case is built.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

import lafam_utils as lu
from lafam_utils.explainers.repeat import probability_of_importance

from . import Case, Comparison, Contenders, Settings, image_size, images, resnet50
from .relax import encoder, relax_plain_loop

PEERS = ("FEM", "KPCA-CAM", "DFF", "Random")


def pytorch_grad_cam_contenders(model: nn.Module, x: Tensor) -> dict[str, Callable[[], object]]:
    """pytorch-grad-cam's FEM, KPCA_CAM, DeepFeatureFactorization and RandomCAM on ``model.layer4``,
    each attaching its hooks only for its own call."""
    from pytorch_grad_cam import FEM, KPCA_CAM, RandomCAM
    from pytorch_grad_cam.feature_factorization.deep_feature_factorization import DeepFeatureFactorization

    def cam(cls: type) -> Callable[[], object]:
        def call() -> object:
            with cls(model=model, target_layers=[model.layer4]) as peer:
                return peer(input_tensor=x, targets=None)

        return call

    def dff() -> object:
        peer = DeepFeatureFactorization(model=model, target_layer=model.layer4)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scikit-learn's ConvergenceWarning at max_iter=200
                return peer(x, n_components=5)
        finally:
            peer.activations_and_grads.release()

    return {
        "pytorch-grad-cam FEM": cam(FEM),
        "pytorch-grad-cam KPCA-CAM": cam(KPCA_CAM),
        "pytorch-grad-cam DFF": dff,
        "pytorch-grad-cam Random": cam(RandomCAM),
    }


def _layer_contenders(batch: int, settings: Settings, notes: dict[str, object]) -> Contenders:
    model = resnet50(settings.device)
    x = images(batch, settings.device, image_size(settings))
    ours = {name: lu.explainer(name, model) for name in ("LaFAM", "EigenCAM", *PEERS)}
    peers = pytorch_grad_cam_contenders(model, x)
    fem = lu.explainer("fem", model, upsample="bilinear", variant="pytorch-grad-cam")(x)
    difference = np.abs(lu.explainers.minmax_normalize(fem).cpu().numpy() - peers["pytorch-grad-cam FEM"]())
    notes["max |FEM (variant pytorch-grad-cam) map - pytorch-grad-cam FEM map|"] = f"{difference.max():.1e}"
    return {**{name: (lambda e=explainer: e(x)) for name, explainer in ours.items()}, **peers}


def official_repeat_loop(enc: nn.Module, x: Tensor, n_repeats: int, n_masks: int, batch_size: int) -> Tensor:
    """REPEAT the official way: image by image, ``n_repeats`` RELAX loops, each thresholded at its mean
    (``relax_plain_loop`` draws the same masks in every repeat: the work, not the maps, is what is timed)."""
    maps = []
    for image in x:
        runs = [relax_plain_loop(enc, image[None], n_masks, batch_size)[0] for _ in range(n_repeats)]
        maps.append(probability_of_importance(torch.stack(runs)[:, None])[0])
    return torch.stack(maps)


def _repeat_contenders(n_images: int, n_repeats: int, n_masks: int, settings: Settings) -> Contenders:
    enc = encoder(settings.device)
    x = images(n_images, settings.device, image_size(settings))
    # the paper's 7x7 grid, as the official-shape loop's masks: the same work on both sides
    repeat = lu.explainer("repeat", enc, n_repeats=n_repeats, n_masks=n_masks, batch_size=n_masks, variant="paper")
    lafam = lu.LaFAM(enc)
    return {
        "REPEAT": lambda: repeat(x),
        "LaFAM": lambda: lafam(x),
        "official-shape loop": lambda: official_repeat_loop(enc, x, n_repeats, n_masks, n_masks),
    }


def cases(settings: Settings) -> list[Case]:
    batch = 2 if settings.tiny else (32 if settings.cuda else 8)
    n_images, n_repeats, n_masks = (1, 2, 4) if settings.tiny else (2 if settings.cuda else 1, 2, 32)
    notes: dict[str, object] = {}
    layer_comparisons = [Comparison(name, "LaFAM", f"{name} / LaFAM") for name in ("EigenCAM", *PEERS)]
    layer_comparisons += [Comparison(name, f"pytorch-grad-cam {name}", f"{name} / pytorch-grad-cam") for name in PEERS]
    return [
        Case(
            id="peers-layer",
            title=f"Label-free peers on layer4, batch {batch}",
            build=lambda: _layer_contenders(batch, settings, notes),
            comparisons=layer_comparisons,
            items=batch,
            rounds=3,
            notes=notes,
        ),
        Case(
            id="peers-repeat",
            title=f"REPEAT, {n_repeats} repeats x {n_masks} masks, {n_images} image(s)",
            build=lambda: _repeat_contenders(n_images, n_repeats, n_masks, settings),
            comparisons=[
                Comparison("REPEAT", "LaFAM", "REPEAT / LaFAM"),
                Comparison("REPEAT", "official-shape loop", "REPEAT / official-shape loop"),
            ],
            items=n_images,
            rounds=2,
        ),
    ]
