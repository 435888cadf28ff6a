"""Saliency explainers sharing one base: a batch in, one [0, 1] map per image out."""

from .base import ActivationExplainer, Explainer, minmax_normalize, upsample_maps
from .eigencam import EigenCAM
from .gradcam import GradCAM
from .lafam import LaFAM
from .registry import EXPLAINERS, explain_func, explainer
from .relax import RELAX

__all__ = [
    "ActivationExplainer",
    "EXPLAINERS",
    "EigenCAM",
    "Explainer",
    "GradCAM",
    "LaFAM",
    "RELAX",
    "explain_func",
    "explainer",
    "minmax_normalize",
    "upsample_maps",
]
