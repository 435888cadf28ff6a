"""LaFAM's relevance redistributed to the pixels with LRP (zennit), and LRP of a class score.

LaFAM's map is the channel mean of a layer's activations, at that layer's resolution (7x7 at
``layer4``). ``LaFAMLRP`` starts Layer-wise Relevance Propagation at that layer with the
relevance ``R^k = A^k / K`` (so the relevance at each position sums over the channels to
LaFAM's channel mean) and propagates it with zennit's rules down to the input pixels, or down to
an earlier layer for a map at that layer's resolution. ``LRP`` starts it at a class score (the
field's supervised high-resolution peer). The rules are zennit's (``composite``, chosen by name);
this module only chooses them, starts the relevance and reads it back.

zennit's canonizers rewrite the model while its hooks are on (batch norms merged into the
convolutions before them, ResNet's residual sums made into modules): every call works on its
own deep copy of the model, so the model itself never holds a hook, a merged weight or a
gradient, also when the call fails. zennit has rules for convolutional and linear layers,
pooling and activations, none for attention or LayerNorm: Vision Transformers are refused.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from zennit import composites as zennit_composites
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.core import Composite
from zennit.torchvision import ResNetCanonizer

from ..datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..hooks import LayerSpec, capture, layer_name
from .base import Explainer
from .default_layers import AUTO, block_names
from .gradcam import Target, resolve_targets
from .registry import has_class_logits, register

Sign = Literal["positive", "absolute", "signed"]
SIGNS = ("positive", "absolute", "signed")
CANONIZERS = ("auto", "resnet", "merge-batchnorm", None)
COMPOSITES = ("EpsilonPlusFlat", "EpsilonGammaBox", "EpsilonPlus", "EpsilonAlpha2Beta1", "EpsilonAlpha2Beta1Flat")
"""zennit's LRP composites offered by name (its class names; its registered snake-case names work too)."""


def composite_class(name: str) -> type[Composite]:
    """zennit's composite class called ``name`` ("EpsilonPlusFlat" or "epsilon_plus_flat"; case, "-", "_" ignored).

    Raises:
        ValueError: ``name`` is none of ``COMPOSITES``.
    """
    key = str(name).lower().replace("_", "").replace("-", "")
    for known in COMPOSITES:
        if known.lower() == key:
            return getattr(zennit_composites, known)
    raise ValueError(f"unknown LRP composite {name!r}; choose one of {', '.join(COMPOSITES)} (zennit's composites)")


def imagenet_box(device: torch.device) -> tuple[Tensor, Tensor]:
    """The lowest and highest values of images in [0, 1] after ImageNet normalisation, (1, 3, 1, 1) each.

    ``EpsilonGammaBox``'s first-layer ZBox rule needs them; every model of the repository takes such images.
    """
    mean = torch.tensor(IMAGENET_MEAN, device=device)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD, device=device)[None, :, None, None]
    return (0.0 - mean) / std, (1.0 - mean) / std


def has_resnet_blocks(model: nn.Module) -> bool:
    """Whether ``model`` holds torchvision's ResNet blocks (``Bottleneck`` or ``BasicBlock``)."""
    return any(isinstance(module, Bottleneck | BasicBlock) for module in model.modules())


def canonizers_for(model: nn.Module, canonizer: str | None) -> list:
    """zennit canonizers for ``model``: "resnet" (``ResNetCanonizer``: batch norms merged, the residual sums
    as modules), "merge-batchnorm" (``SequentialMergeBatchNorm``: each batch norm right after a convolution
    merged into it; what the shapes CNNs' conv-BN-ReLU stages need), "auto" (the first for models with
    torchvision's ResNet blocks, else the second) or None (none).

    Raises:
        ValueError: ``canonizer`` is none of ``CANONIZERS``.
    """
    if canonizer not in CANONIZERS:
        raise ValueError(f"canonizer must be one of {CANONIZERS}, got {canonizer!r}")
    if canonizer == "auto":
        canonizer = "resnet" if has_resnet_blocks(model) else "merge-batchnorm"
    if canonizer == "resnet":
        return [ResNetCanonizer()]
    return [SequentialMergeBatchNorm()] if canonizer == "merge-batchnorm" else []


def relevance_map(relevance: Tensor, sign: Sign) -> Tensor:
    """(B, C, h, w) relevance -> (B, h, w) map: summed over the channels (the colour channels at the input), then
    clipped at 0 (``"positive"``), made absolute (``"absolute"``) or kept as it is (``"signed"``; the min-max
    normalisation then maps the most negative value to 0)."""
    summed = relevance.float().sum(dim=1)
    if sign == "positive":
        return summed.clamp_min(0.0)
    return summed.abs() if sign == "absolute" else summed


class ZennitExplainer(Explainer):
    """The base of the LRP explainers: zennit's rules chosen by name, the relevance read at the input or a layer.

    Subclasses implement ``start_relevance``: the forward pass of the model copy (with zennit's hooks on) and the
    relevance it starts from. ``relevance(x)`` gives the raw propagated relevance (B, C, h, w); the map is its sum
    over the channels with the sign handling ``sign`` (``relevance_map``).

    Args:
        model: the network to explain.
        layer: the layer where the relevance starts (``"auto"``: the model's default layer).
        composite: zennit's composite by name (``COMPOSITES``): ``"EpsilonGammaBox"`` (default: gamma on the
            convolutions, epsilon on linear layers, the ZBox rule on the first layer; chosen over
            ``"EpsilonPlusFlat"``, z+ on the convolutions and the flat rule on the first layer, on a selection
            split by ``benchmarks/high_resolution.py``), ...
        composite_options: keyword arguments of the composite (e.g. ``{"epsilon": 1e-9}``, ``{"gamma": 0.5}``);
            ``EpsilonGammaBox``'s ``low`` and ``high`` default to ``imagenet_box``.
        canonizer: ``"auto"``, ``"resnet"``, ``"merge-batchnorm"`` or None (``canonizers_for``).
        to_layer: None (default): the relevance at the input pixels, summed over the colour channels; or an
            earlier layer's name: the relevance at its output, summed over its channels (a map at its resolution).
        sign: ``"positive"`` (default: negative relevance clipped at 0), ``"absolute"`` or ``"signed"``.
        **options: ``Explainer``'s other arguments (``upsample``, ``threshold``, ``precision``, ``compile``).

    Raises:
        ValueError: an option is not one of the values above, the model is a Vision Transformer, or
            ``to_layer`` is not in the model.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | None = AUTO,
        composite: str = "EpsilonGammaBox",
        composite_options: Mapping[str, Any] | None = None,
        canonizer: str | None = "auto",
        to_layer: str | None = None,
        sign: Sign = "positive",
        **options: Any,
    ) -> None:
        refuse_transformers(model, type(self).__name__)
        super().__init__(model, layer, **options)
        composite_class(composite)
        canonizers_for(model, canonizer)
        if sign not in SIGNS:
            raise ValueError(f"sign must be one of {SIGNS}, got {sign!r}")
        if to_layer is not None:
            layer_name(model, to_layer)
        self.composite = composite
        self.composite_options = dict(composite_options or {})
        self.canonizer = canonizer
        self.to_layer = to_layer
        self.sign = sign

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        """zennit's rules cover convolutional networks, not Vision Transformers."""
        return not block_names(model)

    def build_composite(self, model: nn.Module, device: torch.device) -> Composite:
        """The zennit composite for ``model`` (the copy) with its canonizers and options."""
        cls = composite_class(self.composite)
        options = dict(self.composite_options)
        if cls is zennit_composites.EpsilonGammaBox:
            low, high = imagenet_box(device)
            options = {"low": low, "high": high, **options}
        return cls(canonizers=canonizers_for(model, self.canonizer), **options)

    @abstractmethod
    def start_relevance(self, model: nn.Module, x: Tensor, **kwargs: Any) -> tuple[Tensor, Tensor]:
        """Run the forward of ``model`` (a copy with zennit's hooks) on ``x``: (the tensor the relevance starts
        at, the relevance there). Called with grad mode on; ``x`` or an earlier layer's output requires grad."""

    def relevance(self, x: Tensor, **kwargs: Any) -> Tensor:
        """The raw relevance (B, C, h, w) at the input (C = 3) or at ``to_layer``, before the channel sum.

        Args:
            x: (B, 3, H, W) images, in this precision's memory format.
            **kwargs: the method's call arguments (``LRP``'s ``target``).

        Raises:
            RuntimeError: ``to_layer`` is not reached before the relevance starts (it is not an earlier layer).
            ValueError: ``to_layer``'s output is no (B, C, h, w) feature map.
        """
        model = copy.deepcopy(self.model)  # zennit's canonizers and hooks act on a private copy
        composite = self.build_composite(model, x.device)
        # with to_layer, the graph starts there (``capture(start_graph=True)`` switches grad mode on)
        with (
            torch.set_grad_enabled(self.to_layer is None),
            self.forward_context(x),
            composite.context(model) as modified,
        ):
            if self.to_layer is None:
                bottom = x.detach().requires_grad_()
                start, relevance = self.start_relevance(modified, bottom, **kwargs)
            else:
                with capture(modified, self.to_layer, start_graph=True) as rec:
                    start, relevance = self.start_relevance(modified, x.detach(), **kwargs)
                if self.to_layer not in rec.outputs:
                    raise RuntimeError(
                        f"to_layer {self.to_layer!r} is not an earlier layer than where the relevance starts "
                        f"({self.start_name()}): the forward pass did not reach it before"
                    )
                bottom = rec.outputs[self.to_layer]
            (propagated,) = torch.autograd.grad(start, bottom, grad_outputs=relevance.to(start.dtype))
        if propagated.ndim != 4:
            raise ValueError(
                f"to_layer {self.to_layer!r} gives output of shape {tuple(propagated.shape)}; expected a (B, C, h, w) "
                "feature map of a convolutional layer"
            )
        return propagated.detach().float()

    def start_name(self) -> str:
        """Where the relevance starts, for messages."""
        return repr(self.layer)

    def layer_maps(self, x: Tensor, **kwargs: Any) -> Tensor:
        return relevance_map(self.relevance(x, **kwargs), self.sign)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(layer={self.layer!r}, composite={self.composite!r}, canonizer={self.canonizer!r}, "
            f"to_layer={self.to_layer!r}, sign={self.sign!r}, upsample={self.upsample!r}, precision={self.precision!r})"
        )


def refuse_transformers(model: nn.Module, method: str) -> None:
    """Refuse a Vision Transformer (``blocks.N`` / ``encoder.layers``): zennit has no rules for attention or LayerNorm.

    Raises:
        ValueError: ``model`` has a ViT's blocks.
    """
    if block_names(model):
        raise ValueError(
            f"{method} propagates relevance with zennit's LRP rules, which cover convolutional networks only: zennit "
            f"has no rules for attention or LayerNorm, so {type(model).__name__} (a Vision Transformer) is not "
            "supported"
        )


@register
class LaFAMLRP(ZennitExplainer):
    """LaFAM's channel-mean relevance at ``layer`` redistributed to the input pixels (or to ``to_layer``) with LRP.

    The relevance at ``layer`` is ``A^k / K`` for each of its K channels: it sums over the channels to LaFAM's
    channel mean at each position. zennit's ``composite`` propagates it down; a conservative composite keeps its
    total (up to the relevance that biases absorb, which includes the biases of batch norms merged into the
    convolutions). No labels, no class score: like LaFAM, one map per image from the layer's activations.

    Args:
        model: the network to explain.
        layer: the layer where the relevance starts (``"auto"``: the model's default layer, ``layer4`` on a ResNet).
        composite: as for ``ZennitExplainer``.
        composite_options: as for ``ZennitExplainer``.
        canonizer: as for ``ZennitExplainer``.
        to_layer: as for ``ZennitExplainer``.
        sign: as for ``ZennitExplainer``.
        **options: ``Explainer``'s other arguments (``upsample``, ``threshold``, ``precision``, ``compile``).
    """

    name = "lafam-lrp"
    title = "LaFAM-LRP"

    def start_relevance(self, model: nn.Module, x: Tensor, **kwargs: Any) -> tuple[Tensor, Tensor]:
        name = layer_name(model, self.layer)
        with capture(model, name, stop=True) as rec:
            model(x)
        if name not in rec.outputs:
            raise RuntimeError(f"layer {self.layer!r} was not reached by the forward pass of {type(model).__name__}")
        acts = rec.outputs[name]
        if acts.ndim != 4:
            shape = tuple(acts.shape)
            raise ValueError(f"layer {self.layer!r} gives output of shape {shape}; expected a (B, C, h, w) map")
        return acts, acts.detach().float() / acts.shape[1]


@register
class LRP(ZennitExplainer):
    """LRP of a class score (Bach et al. 2015) with zennit: the relevance starts as 1 at the explained class.

    ``explainer(x, target=None)``: ``target`` as for Grad-CAM (None: each image's predicted class). The relevance
    at the output is the one-hot vector of the class (zennit's usual start; starting from the class's logit instead
    scales each map by that logit, which the min-max normalisation removes where the logit is positive). For
    classifiers only: a model without ``class_names`` (an encoder) is refused. After each call
    ``explainer.targets`` holds the explained classes.

    Args:
        model: a classifier returning (B, n_classes) scores, with ``class_names``.
        layer: None (the relevance starts at the model's output).
        **options: ``ZennitExplainer``'s arguments (``composite``, ``composite_options``, ``canonizer``,
            ``to_layer``, ``sign``) and ``Explainer``'s (``upsample``, ``threshold``, ``precision``, ``compile``).

    Raises:
        ValueError: ``layer`` is given, ``model`` has no ``class_names`` (it is no classifier), or as for
            ``ZennitExplainer``.
    """

    name = "lrp"
    title = "LRP"
    needs_labels = True
    needs_layer = False

    targets: Tensor | None = None

    def __init__(self, model: nn.Module, layer: None = None, **options: Any) -> None:
        if layer is not None:
            raise ValueError(f"LRP starts at the class score, not at a layer (got layer={layer!r}); to_layer= gives "
                             "the map at an earlier layer")
        if not has_class_logits(model):
            raise ValueError(
                f"LRP explains a class score: {type(model).__name__} has no class_names, so it is no classifier "
                "(an encoder's embedding has no class to explain); use lafam-lrp for label-free maps"
            )
        super().__init__(model, None, **options)

    def start_name(self) -> str:
        return "the class score"

    def start_relevance(self, model: nn.Module, x: Tensor, target: Target = None) -> tuple[Tensor, Tensor]:
        logits = model(x)
        if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != x.shape[0]:
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ValueError(f"LRP needs a model returning (B, n_classes) scores, got {shape}")
        self.targets = resolve_targets(target, logits.detach(), getattr(self.model, "class_names", None))
        one_hot = torch.zeros_like(logits, dtype=torch.float32).scatter_(1, self.targets[:, None], 1.0)
        return logits, one_hot


__all__ = [
    "CANONIZERS",
    "COMPOSITES",
    "LRP",
    "LaFAMLRP",
    "ZennitExplainer",
    "canonizers_for",
    "composite_class",
    "imagenet_box",
    "relevance_map",
]
