"""The paper's setup in one place: its models, their weights and embeddings, its pairs, metrics and datasets.

Karjauv & Albayrak compare LaFAM with Grad-CAM on a supervised ResNet50 and with RELAX on the
self-supervised SimCLR and SwAV ResNet50s, all at ``layer4``, on ImageNet-S and PASCAL VOC 2012.
Names only: the modules that load, explain and score read these.
"""

from __future__ import annotations

from collections.abc import Sequence

Pair = tuple[str, str]
"""A (model name, method name) pair: one column of the comparison."""

PAPER_WEIGHTS = {"resnet50": "IMAGENET1K_V1"}
"""torchvision weights of the supervised classifier (torchvision's own default is V2)."""
PAPER_EMBEDDINGS = {"simclr": "backbone", "swav": "projection"}
"""The embedding the paper's RELAX explained: SimCLR's pooled backbone, SwAV's normalised projection."""
PAPER_PAIRS: tuple[Pair, ...] = (
    ("resnet50", "gradcam"),
    ("resnet50", "lafam"),
    ("simclr", "relax"),
    ("simclr", "lafam"),
    ("swav", "relax"),
    ("swav", "lafam"),
)
PAPER_METRIC_ORDER = (
    "Pointing-Game",
    "Sparseness",
    "Relevance Mass Accuracy",
    "Relevance Rank Accuracy",
    "Top-K Intersection",
    "AUC",
)
"""The paper's table columns, in its order."""
PAPER_DATASETS = ("imagenet-s", "voc")
"""Datasets the paper publishes numbers for."""
DATASET_MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "synthetic": ("shapes-supervised", ("shapes-simclr",)),
    "voc": ("resnet50", ("simclr", "swav")),
    "imagenet-s": ("resnet50", ("simclr", "swav")),
}
"""dataset -> (classifier explained with Grad-CAM and LaFAM, encoders explained with RELAX and LaFAM)."""


def dataset_models(
    dataset: str, classifier: str | None = None, encoders: Sequence[str] | None = None
) -> tuple[str, tuple[str, ...]]:
    """The dataset's (classifier, encoders) as in the paper; a name given here replaces the default.

    Raises:
        ValueError: ``dataset`` is not one of ``DATASET_MODELS``.
    """
    if dataset not in DATASET_MODELS:
        raise ValueError(f"dataset must be one of {sorted(DATASET_MODELS)}, got {dataset!r}")
    default_classifier, default_encoders = DATASET_MODELS[dataset]
    return classifier or default_classifier, tuple(encoders) if encoders else default_encoders


def model_method_pairs(classifier: str, encoders: Sequence[str]) -> list[Pair]:
    """The paper's columns: (classifier, gradcam), (classifier, lafam), then (encoder, relax), (encoder, lafam)."""
    pairs = [(classifier, "gradcam"), (classifier, "lafam")]
    for encoder in encoders:
        pairs += [(encoder, "relax"), (encoder, "lafam")]
    return pairs


__all__ = [
    "DATASET_MODELS",
    "PAPER_DATASETS",
    "PAPER_EMBEDDINGS",
    "PAPER_METRIC_ORDER",
    "PAPER_PAIRS",
    "PAPER_WEIGHTS",
    "Pair",
    "dataset_models",
    "model_method_pairs",
]
