"""Saliency explainers sharing one base: a batch in, one [0, 1] map per image out.

Each method is a short subclass of ``Explainer`` (or ``ActivationExplainer``) that registers by
name with ``@register``; importing this package registers the built-in ones.
"""

from .attention import CLSAttention
from .base import ActivationExplainer, Explainer, minmax_normalize, upsample_maps
from .default_layers import default_layer
from .dff import DFF
from .eigencam import EigenCAM
from .fem import FEM
from .gradcam import GradCAM
from .kpca_cam import KPCACAM
from .lafam import LaFAM
from .lafam_centred_norm import LaFAMCentredNorm
from .lafam_fused import LaFAMFused
from .lafam_magnitude import LaFAMMagnitude
from .layercam import LayerCAM
from .lrp import LRP, LaFAMLRP
from .random_cam import RandomCAM
from .registry import (
    EXPLAINERS,
    accepted_options,
    applies_to,
    explain_func,
    explainer,
    explainer_class,
    has_class_logits,
    method_title,
    register,
)
from .relax import RELAX
from .repeat import REPEAT

__all__ = [
    "ActivationExplainer",
    "CLSAttention",
    "DFF",
    "EXPLAINERS",
    "EigenCAM",
    "Explainer",
    "FEM",
    "GradCAM",
    "KPCACAM",
    "LaFAM",
    "LaFAMFused",
    "LaFAMLRP",
    "LaFAMCentredNorm",
    "LaFAMMagnitude",
    "LRP",
    "LayerCAM",
    "RELAX",
    "REPEAT",
    "RandomCAM",
    "accepted_options",
    "applies_to",
    "default_layer",
    "explain_func",
    "explainer",
    "explainer_class",
    "has_class_logits",
    "method_title",
    "minmax_normalize",
    "register",
    "upsample_maps",
]
