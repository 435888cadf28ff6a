"""Saliency explainers sharing one base: a batch in, one [0, 1] map per image out."""

from .base import Explainer, minmax_normalize, upsample_maps
from .lafam import LaFAM

__all__ = ["Explainer", "LaFAM", "minmax_normalize", "upsample_maps"]
