"""Cases 9-10: ``lu.evaluate`` with one forward per model per batch.

9: (resnet50, gradcam) + (resnet50, lafam) evaluated together (one shared forward per batch)
against the two pairs evaluated one after the other. 10: the paper's six pairs end to end on
224x224 synthetic items (random-init ResNet50 / SimCLR / SwAV, RELAX with ``--relax-masks``
masks, default 2048), ``lu.evaluate`` at fp32 and bf16 against the reference evaluation's
per-image loop: fp32, one image at a time, Captum's LayerGradCam, LaFAM, RELAX per image over
mask batches, Quantus called per metric per image (Captum and Quantus are imported by the
reference loop only).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping

import torch
from torch import Tensor, nn

import lafam_utils as lu
from lafam_utils.explainers import minmax_normalize, upsample_maps
from lafam_utils.paper import PAPER_PAIRS

from . import Case, Comparison, Contenders, Settings, image_size, probe_masks
from .relax import relax_plain_loop

MASKS_PER_FORWARD = 64  # the reference loop's RELAX batch, as lu.RELAX's default at 224x224


def paper_models(device: str) -> dict[str, nn.Module]:
    """Random-init ResNet50 (a classifier with class names), SimCLR and SwAV encoders."""
    torch.manual_seed(0)
    return {name: lu.load_model(name, weights=None).eval().to(device) for name in ("resnet50", "simclr", "swav")}


def synthetic_items(n: int, size: int) -> list[dict]:
    """``n`` single-object synthetic items, rendered once so no contender pays for drawing them."""
    data = lu.SyntheticShapes(n=n, split="single", seed=0, size=size)
    return [data[i] for i in range(n)]


def run_evaluate(items: list[dict], pairs, models: Mapping[str, nn.Module], settings: Settings, **options) -> None:
    """``lu.evaluate`` of ``items`` (already in memory: no loading processes) into a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="lafam-bench-") as folder:
        lu.evaluate(items, pairs, results_dir=folder, models=models, batch_size=len(items), device=settings.device,
                    dataset_name="synthetic", progress=False, **{"num_workers": 0, **options})


def reference_loop(models: Mapping[str, nn.Module], x: Tensor, masks: Tensor, n_masks: int, k: int) -> None:
    """The paper's six pairs the reference way: one image at a time, fp32, Captum, Quantus per image."""
    from captum.attr import LayerGradCam

    classifier = models["resnet50"]
    captum = LayerGradCam(classifier, classifier.layer4)
    size = tuple(x.shape[-2:])
    for i in range(len(x)):
        image, mask = x[i : i + 1], masks[i : i + 1]
        with torch.no_grad():
            target = classifier(image).argmax(dim=1)
        cam = captum.attribute(image, target=target, relu_attributions=True)[:, 0].detach()
        maps = [upsample_maps(minmax_normalize(cam), size, "nearest"), lu.LaFAM(classifier)(image)]
        for name in ("simclr", "swav"):
            relax = relax_plain_loop(models[name], image, n_masks, MASKS_PER_FORWARD)
            maps += [upsample_maps(minmax_normalize(relax), size, "nearest"), lu.LaFAM(models[name])(image)]
        for saliency in maps:
            lu.metrics.compute(saliency, mask, backend="quantus", k=k)


def _shared_pair_contenders(n: int, settings: Settings) -> Contenders:
    models = {"resnet50": paper_models(settings.device)["resnet50"]}
    items = synthetic_items(n, image_size(settings))
    pairs = [("resnet50", "gradcam"), ("resnet50", "lafam")]
    return {
        "together": lambda: run_evaluate(items, pairs, models, settings),
        "separately": lambda: [run_evaluate(items, [pair], models, settings) for pair in pairs],
        "together, bf16": lambda: run_evaluate(items, pairs, models, settings, precision="bf16"),
    }


def _paper_contenders(n: int, n_masks: int, settings: Settings) -> Contenders:
    models = paper_models(settings.device)
    size = image_size(settings)
    items = synthetic_items(n, size)
    x = torch.stack([item["image"] for item in items]).to(settings.device)
    masks = torch.stack([item["mask"] for item in items]).to(settings.device)
    k = min(1000, size * size)
    relax = {"relax": {"n_masks": n_masks}}
    return {
        "reference per-image loop": lambda: reference_loop(models, x, masks, n_masks, k),
        "evaluate fp32": lambda: run_evaluate(items, PAPER_PAIRS, models, settings, explainer_kwargs=relax, k=k),
        "evaluate bf16": lambda: run_evaluate(items, PAPER_PAIRS, models, settings, explainer_kwargs=relax, k=k,
                                              precision="bf16"),
    }


def cases(settings: Settings) -> list[Case]:
    n_shared = 2 if settings.tiny else 16
    n_paper, n_masks = (1, 4) if settings.tiny else (1, settings.relax_masks)
    masks = probe_masks(settings, n_masks)
    return [
        Case(
            id="shared-resnet50",
            title=f"evaluate (resnet50, gradcam) + (resnet50, lafam), {n_shared} images",
            build=lambda: _shared_pair_contenders(n_shared, settings),
            comparisons=[
                Comparison("together", "separately", "two pairs together / separately", 0.6),
                Comparison("together, bf16", "separately", "together in bf16 / separately in fp32"),
            ],
            items=n_shared,
            rounds=3,
        ),
        Case(
            id="end-to-end-paper",
            title=f"End to end, the paper's six pairs (RELAX {n_masks} masks), {n_paper} image",
            build=lambda: _paper_contenders(n_paper, masks, settings),
            comparisons=[
                Comparison("reference per-image loop", "evaluate fp32", "speed-up of evaluate, fp32", 3, ">="),
                Comparison("reference per-image loop", "evaluate bf16", "speed-up of evaluate, bf16", 3, ">="),
            ],
            items=n_paper,
            rounds=1,
            warmup=0,
            targets_note=(
                f"RELAX's 2 x {n_masks} encoder passes per image are most of the time on both sides (the "
                "reference loop makes the same passes, 64 masks at a time); sharing removes only the other "
                "pairs' few passes, and bf16 speeds up the passes themselves; one round, so a change of the "
                "machine's load during the case moves the ratio"
            ),
        ),
    ]
