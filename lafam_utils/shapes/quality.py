"""How good a shapes model is, measured on held-out synthetic images (never the training seeds).

- ``classification_accuracy``: a classifier's accuracy on one split.
- ``linear_probe_accuracy``: how well the frozen pooled ``layer4`` embedding encodes the shape
  class: a multinomial logistic regression on standardised features of ``"single"`` images of one
  seed, tested on images of another.
- ``localisation``: an explainer's mean metrics (``lafam_utils.metrics``) against the object masks.
- ``model_quality``: all of these for a named model, the numbers the README and ``make models`` report.

The evaluation seeds (0, 1, 2, ...) are far from the training seeds (``2**20 + seed``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import metrics
from ..explainers import RELAX, LaFAM
from .dataset import SHAPE_CLASSES, SyntheticShapes

EVAL_SEED, PROBE_TRAIN_SEED, PROBE_TEST_SEED = 0, 1, 2
LOCALISATION_METRICS = ("Pointing-Game", "AUC", "Relevance Rank Accuracy", "Sparseness")


def _batches(dataset: SyntheticShapes, batch_size: int = 50):
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        yield (
            torch.stack([it["image"] for it in items]),
            torch.stack([it["mask"] for it in items]),
            torch.tensor([it["label_ids"][0] for it in items]),
        )


@torch.no_grad()
def pooled_features(model: nn.Module, dataset: SyntheticShapes) -> tuple[Tensor, Tensor]:
    """The embedding before the head (``model.features``: a CNN's pooled ``layer4``, a ViT's CLS) of every
    image, and its class ids."""
    features, labels = zip(*((model.features(x), y) for x, _, y in _batches(dataset)))
    return torch.cat(features), torch.cat(labels)


@torch.no_grad()
def classification_accuracy(model: nn.Module, dataset: SyntheticShapes) -> float:
    """The share of images whose predicted class (argmax of the logits) is the object's class."""
    hits = [(model(x).argmax(1) == y).sum().item() for x, _, y in _batches(dataset)]
    return sum(hits) / len(dataset)


def fit_linear_probe(features: Tensor, labels: Tensor, weight_decay: float = 1e-3, steps: int = 300) -> nn.Module:
    """A multinomial logistic regression over the shape classes, with the features' standardisation folded in.

    It is fitted by full-batch L-BFGS in float64 with an L2 penalty: deterministic, no sampling.

    Args:
        features: (N, D) features.
        labels: (N,) class ids in ``SHAPE_CLASSES``.
        weight_decay: the L2 penalty's weight.
        steps: L-BFGS iterations at most.

    Returns:
        A float64 ``nn.Linear`` from raw (N, D) features to (N, 6) logits, one per ``SHAPE_CLASSES``.
    """
    x = features.double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x = (x - mean) / std
    linear = nn.Linear(x.shape[1], len(SHAPE_CLASSES)).double()
    nn.init.zeros_(linear.weight), nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(x), labels) + weight_decay * linear.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        probe = nn.Linear(x.shape[1], len(SHAPE_CLASSES)).double()
        probe.weight.copy_(linear.weight / std)
        probe.bias.copy_(linear.bias - (linear.weight * mean / std).sum(1))
    return probe


def linear_probe_accuracy(
    model: nn.Module, n_train: int = 600, n_test: int = 600, size: int = 224,
    train_seed: int = PROBE_TRAIN_SEED, test_seed: int = PROBE_TEST_SEED,
) -> float:
    """Accuracy of a linear probe of the frozen pooled embedding on held-out ``"single"`` images; chance is 1/6.

    The probe is fitted on ``n_train`` images of seed ``train_seed`` and tested on ``n_test`` images
    of seed ``test_seed``, all of side ``size``.
    """
    train = pooled_features(model, SyntheticShapes(n_train, "single", train_seed, size))
    test_features, test_labels = pooled_features(model, SyntheticShapes(n_test, "single", test_seed, size))
    probe = fit_linear_probe(*train)
    with torch.no_grad():
        return (probe(test_features.double()).argmax(1) == test_labels).double().mean().item()


def localisation(
    explainer: Any,
    dataset: SyntheticShapes,
    names: tuple[str, ...] = LOCALISATION_METRICS,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """The mean of each metric of ``explainer``'s maps against the object masks over ``dataset``.

    Args:
        explainer: (B, 3, H, W) images -> (B, H, W) maps.
        dataset: the images and their masks.
        names: the metrics (names of ``lafam_utils.metrics.METRICS``).
        device: where the explainer runs.

    Returns:
        Metric name -> its mean over the images (NaN scores left out).
    """
    scores: dict[str, list[Tensor]] = {name: [] for name in names}
    for x, masks, _ in _batches(dataset, batch_size=20):
        with torch.no_grad():
            maps = explainer(x.to(device))
        for name, values in metrics.compute(maps, masks.to(device), metrics=names).items():
            scores[name].append(values)
    return {name: torch.cat(values).nanmean().item() for name, values in scores.items()}


def model_quality(
    model: nn.Module, n_images: int = 300, relax_images: int = 40, relax_masks: int = 256, size: int = 224,
) -> dict[str, float]:
    """The benchmark's numbers for a shapes model, all on held-out images.

    Classifiers (``model.class_names`` set): accuracy on ``n_images`` ``"single"`` images (seed 0)
    and the misclassification rate on as many ``"hard"`` ones. Every model: the linear-probe
    accuracy and LaFAM's metrics on the ``"single"`` images; encoders also RELAX's
    (``relax_masks`` masks on a 7x7 grid, seed 0) on the first ``relax_images`` (0: skip).
    """
    single = SyntheticShapes(n_images, "single", EVAL_SEED, size)
    quality: dict[str, float] = {}
    if getattr(model, "class_names", None):
        quality["accuracy"] = classification_accuracy(model, single)
        quality["hard misclassified"] = 1 - classification_accuracy(
            model, SyntheticShapes(n_images, "hard", EVAL_SEED, size)
        )
    quality["linear probe"] = linear_probe_accuracy(model, size=size)
    quality.update({f"LaFAM {k}": v for k, v in localisation(LaFAM(model), single).items()})
    if relax_images and not getattr(model, "class_names", None):
        subset = SyntheticShapes(min(relax_images, n_images), "single", EVAL_SEED, size)
        relax = RELAX(model, n_masks=relax_masks, cells=7, p=0.5, seed=0)
        quality.update({f"RELAX {k}": v for k, v in localisation(relax, subset).items()})
    return quality


__all__ = [
    "classification_accuracy",
    "fit_linear_probe",
    "linear_probe_accuracy",
    "localisation",
    "model_quality",
    "pooled_features",
]
