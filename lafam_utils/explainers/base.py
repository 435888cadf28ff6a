"""The base every explainer shares: a batch in, one map per image out, normalised and upsampled."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..compiling import compiled_forward
from ..hooks import LayerSpec, find_layer, layer_output
from ..precision import (
    Precision,
    Resolved,
    check_precision,
    forward_context,
    memory_format,
    resolve_precision,
)
from ..progress import report_line
from .default_layers import AUTO, default_layer
from .tokens import patch_grid

Upsample = Literal["nearest", "bilinear"] | None
UPSAMPLE_MODES = ("nearest", "bilinear", None)


def check_images(x: Any) -> None:
    """Raise a clear error unless ``x`` is a float32 (B, 3, H, W) tensor.

    Raises:
        TypeError: ``x`` is not a tensor, or not float32.
        ValueError: ``x`` is not (B, 3, H, W), or the batch is empty.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"expected images as a torch.Tensor of shape (B, 3, H, W), got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
    if x.dtype != torch.float32:
        raise TypeError(
            f"expected float32 images (32-bit floating-point), got dtype {x.dtype}; convert them with x.float() "
            "(explainers take float32 inputs whatever precision they compute in)"
        )
    if x.shape[0] == 0:
        raise ValueError("expected at least one image, got an empty batch")


def check_choice(name: str, value: object, choices: tuple) -> None:
    """Raise a clear error unless ``value`` (the option ``name``) is one of ``choices``.

    Raises:
        ValueError: ``value`` is not one of ``choices``.
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def declares_no_classes(model: nn.Module) -> bool:
    """Whether ``model`` says it has no class scores: its ``class_names`` attribute is None.

    The package's encoders (``lu.load_model`` of a self-supervised model) carry ``class_names =
    None``, its classifiers the list of names; a plain module without the attribute says nothing,
    and a method that needs labels reads its output as class scores.
    """
    return hasattr(model, "class_names") and model.class_names is None


def check_feature_map(acts: Tensor, layer: LayerSpec) -> None:
    """Raise a clear error unless a layer's output is a (B, C, h, w) feature map larger than 1x1.

    Raises:
        ValueError: ``acts`` is not 4-D, or its map is 1x1.
    """
    if acts.ndim != 4:
        raise ValueError(
            f"layer {layer!r} gives output of shape {tuple(acts.shape)}; expected a (B, C, h, w) "
            "feature map from a convolutional layer or (B, N, C) tokens from a Vision Transformer layer"
        )
    if acts.shape[-2:] == (1, 1):
        raise ValueError(
            f"layer {layer!r} gives a 1x1 map, which cannot localise anything: choose a layer with a spatial "
            "map (not a pooling or fully connected layer), or larger images (these are smaller than the "
            "network's stride up to that layer)"
        )


def feature_map(acts: Tensor, model: nn.Module, layer: LayerSpec, size: tuple[int, int] | None) -> Tensor:
    """A layer's output as a checked (B, C, h, w) feature map.

    Args:
        acts: the layer's output: a convolutional layer's (B, C, h, w), kept as it is, or a token
            layer's (B, N, C), whose patch tokens become their grid (``tokens.patch_grid``).
        model: the network, which says a token layer's prefix-token count and patch size.
        layer: the layer, for messages.
        size: the images' (H, W), which a token layer's grid needs.

    Returns:
        The (B, C, h, w) feature map.

    Raises:
        ValueError: the output is no usable feature map (``check_feature_map``, ``tokens.patch_grid``).
    """
    if acts.ndim == 3:
        acts = patch_grid(acts, model, layer, size)
    check_feature_map(acts, layer)
    return acts


def minmax_normalize(maps: Tensor) -> Tensor:
    """Rescale each map of a (B, h, w) batch to [0, 1]; a constant map becomes all zeros.

    Each value is divided by its map's span (not multiplied by the span's reciprocal), so the
    maximum is exactly 1 and the minimum exactly 0 on every machine. A map holding NaN stays NaN.
    """
    flat = maps.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    constant = span == 0
    scaled = (flat - low) / torch.where(constant, 1.0, span)
    return scaled.masked_fill(constant, 0.0).view_as(maps)


def upsample_maps(maps: Tensor, size: tuple[int, int], mode: Upsample) -> Tensor:
    """Resize (B, h, w) maps to ``size`` with nearest or bilinear interpolation; None keeps them."""
    if mode is None or tuple(maps.shape[-2:]) == tuple(size):
        return maps
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(maps[:, None], size=size, mode=mode, **kwargs)[:, 0]


def constructor_signature(cls: type) -> inspect.Signature:
    """The constructor signature of an ``Explainer`` subclass, with the options it passes through.

    A subclass that adds options declares only those and ends its ``__init__`` with ``**options``,
    handed unchanged to its parent; its signature is then its own parameters followed by the
    parent's (keyword-only), so ``inspect.signature``, ``accepted_options`` and the run identity
    see every option. A constructor without ``**options`` is its own whole signature.
    """
    definer, parent = [base for base in cls.__mro__ if "__init__" in vars(base)][:2]
    if definer is not cls:  # the constructor is inherited, and so is its signature
        return inspect.signature(definer)
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
    if not parameters or parameters[-1].kind is not inspect.Parameter.VAR_KEYWORD:
        return inspect.Signature(parameters)
    own = parameters[:-1]
    names = {parameter.name for parameter in own}
    inherited = list(inspect.signature(parent).parameters.values())[1:]  # without the model
    passed = [
        parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for parameter in inherited
        if parameter.name not in names and parameter.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    return inspect.Signature([*own, *passed])


class Explainer(ABC):
    """Base of all explainers: ``explainer(x)`` maps (B, 3, H, W) images to (B, H, W) maps in [0, 1].

    Subclasses implement ``layer_maps`` (raw maps at the layer's resolution); the base normalises
    each map to [0, 1] (min-max per image), upsamples it to the input size (``upsample``:
    ``"nearest"``, ``"bilinear"`` or ``None`` for the layer resolution) and, with ``threshold``,
    sets values below it to 0. Maps are float32 and stay on the device of ``x``.

    ``precision`` (``lafam_utils.precision``): ``"fp32"`` (default; strict IEEE float32, TF32 off
    on CUDA), ``"tf32"`` (TF32 on CUDA; fp32 elsewhere), ``"bf16"`` (the model's forward under
    bf16 autocast, images in channels_last; the model is not modified) or ``"auto"`` (TF32 on a
    CUDA device that has it, bf16 on a CPU with native bf16 arithmetic, else fp32). Subclasses
    run their model calls inside ``self.forward_context(x)`` and compute everything else in float32.

    ``compile=True`` runs the forward passes that go through the whole model without module
    hooks (RELAX's masked images) through ``torch.compile`` (``compiled_forward``: compiled once
    per model object and precision, dynamic shapes off). Forwards that read a layer through hooks
    (LaFAM, EigenCAM, Grad-CAM, RELAX's unmasked reference) stay eager: torch.compile does not
    see hooks added after it compiled a model (``torch._dynamo.config.skip_nnmodule_hook_guards``),
    and a hook that stops the forward with an exception, as LaFAM's does, makes it give up
    compiling the whole frame (checked with torch 2.14). So ``compile`` changes nothing for the
    layer-reading methods. When ``report_compile`` is set (RELAX: ``progress=True``; ``evaluate``
    with progress output), the first compiled call prints one line "compiled <model class> in X s".

    Class attributes: ``name`` (the registry key, ``lu.explainer(name, model)``), ``title`` (the
    display name in tables and figures), ``needs_labels`` (explains a class score: the model must
    return class logits, and ``__call__`` takes ``target``; a model that declares no classes,
    ``class_names`` None as the package's encoders, is refused: see ``declares_no_classes``),
    ``needs_layer`` (False for methods that treat the model as a black box, like RELAX),
    ``uses_gradients`` (the method reads the layer's gradient) and ``reads_residual_stream`` (the
    method is defined on a ViT's block outputs); the last two decide its ``"auto"`` layer on a ViT
    (``auto_layer``).

    Args:
        model: the network to explain.
        layer: the layer whose output the method reads (a name such as ``"layer4"`` or a module);
            ``"auto"`` (default): the model's default layer (``auto_layer``: ``layer4`` on a
            ResNet; on a ViT the selected block's MLP activation, the last block's first norm for
            methods that read gradients, its output for methods defined on the residual stream);
            None for methods that explain the whole model (RELAX).
        upsample: ``"nearest"``, ``"bilinear"`` or None (maps at the layer's resolution).
        threshold: values of the normalised maps below it become 0 (None: none), in [0, 1].
        precision: ``"fp32"``, ``"tf32"``, ``"bf16"`` or ``"auto"``, as above.
        compile: run the forwards without module hooks through ``torch.compile``, as above.

    Raises:
        ValueError: ``precision``, ``upsample`` or ``threshold`` is not one of the values above,
            ``layer`` is not found in ``model`` (``hooks.find_layer``), or the method needs labels
            and the model declares no classes (``declares_no_classes``).
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    needs_labels: ClassVar[bool] = False
    needs_layer: ClassVar[bool] = True
    uses_gradients: ClassVar[bool] = False
    reads_residual_stream: ClassVar[bool] = False
    report_compile: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__signature__ = constructor_signature(cls)

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | None = AUTO,
        upsample: Upsample = "nearest",
        threshold: float | None = None,
        precision: Precision = "fp32",
        compile: bool = False,  # noqa: A002 - the name torch uses
    ) -> None:
        check_precision(precision)
        if self.needs_labels and declares_no_classes(model):
            raise ValueError(
                f"{self.title} explains a class score, but the model ({type(model).__name__}) has no classes: its "
                "class_names is None (an encoder, whose output is an embedding, not class logits). Use a label-free "
                "method (lafam, relax, eigencam, ...), or set model.class_names to read its outputs as class scores"
            )
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1] or be None, got {threshold}")
        self.model = model
        self.layer = self.auto_layer(model) if layer == AUTO else layer
        if self.layer is not None:  # None: methods that explain the whole model (RELAX)
            find_layer(model, self.layer)
        self.upsample = upsample
        self.threshold = threshold
        self.precision = precision
        self.compile = bool(compile)

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        """Whether the method can explain this kind of model at all (a method without ViT rules says no there)."""
        return True

    @classmethod
    def auto_layer(cls, model: nn.Module) -> str:
        """The layer ``layer="auto"`` reads on ``model`` for this method (``default_layers.default_layer``).

        Raises:
            ValueError: the model has no default layer (``default_layer``).
        """
        return default_layer(model, cls.uses_gradients, cls.reads_residual_stream)

    def resolved_precision(self, device: torch.device) -> Resolved:
        """This explainer's precision on ``device`` ("auto" decided there)."""
        return resolve_precision(self.precision, device)

    def prepare(self, x: Tensor) -> Tensor:
        """``x`` in the memory format of this explainer's precision on its device (channels_last for bf16)."""
        return memory_format(x, self.resolved_precision(x.device))

    def forward_context(self, x: Tensor) -> AbstractContextManager:
        """The context the model's forward runs in: bf16 autocast for bf16, TF32 on or off otherwise."""
        return forward_context(self.resolved_precision(x.device), x.device)

    def whole_forward(self, x: Tensor) -> Any:
        """The model's output for ``x``, from its compiled forward with ``compile=True``.

        A forward without hooks, to be run inside ``forward_context``.
        """
        if not self.compile:
            return self.model(x)
        forward = compiled_forward(self.model, self.resolved_precision(x.device))
        first = forward.seconds is None
        output = forward(x)
        if first and self.report_compile:
            report_line(f"compiled {forward.model_name} in {forward.seconds:.1f} s")
        return output

    @abstractmethod
    def layer_maps(self, x: Tensor, **kwargs: Any) -> Tensor:
        """Raw (B, h, w) maps at the layer's resolution, before normalisation.

        Args:
            x: (B, 3, H, W) images, in this precision's memory format (``prepare``).
            **kwargs: the method's call arguments (Grad-CAM's ``target``).

        Returns:
            The (B, h, w) raw maps.
        """

    def __call__(self, x: Tensor, **kwargs: Any) -> Tensor:
        """The maps of the images ``x``: raw maps normalised, upsampled and thresholded (``finish``).

        Args:
            x: (B, 3, H, W) float32 images.
            **kwargs: the method's call arguments (Grad-CAM's ``target``).

        Returns:
            (B, H, W) float32 maps in [0, 1] on ``x``'s device ((B, h, w) with ``upsample=None``).

        Raises:
            TypeError, ValueError: ``x`` is not a non-empty float32 (B, 3, H, W) tensor (``check_images``).
        """
        check_images(x)
        return self.finish(self.layer_maps(self.prepare(x), **kwargs), tuple(x.shape[-2:]))

    def finish(self, raw: Tensor, size: tuple[int, int]) -> Tensor:
        """Raw (B, h, w) maps -> float32 maps in [0, 1]: normalised, upsampled to ``size``, thresholded.

        Args:
            raw: (B, h, w) raw maps (``layer_maps``).
            size: the images' (H, W).

        Returns:
            (B, H, W) float32 maps ((B, h, w) with ``upsample=None``).
        """
        maps = upsample_maps(minmax_normalize(raw.float()), size, self.upsample)
        if self.threshold is not None:
            maps = maps.masked_fill(maps < self.threshold, 0.0)
        return maps

    def activations(self, x: Tensor) -> Tensor:
        """The layer's (B, C, h, w) output for ``x`` (a token layer's patch grid).

        The forward stops at the layer and builds no autograd graph.
        """
        with torch.no_grad(), self.forward_context(x):
            acts = layer_output(self.model, self.layer, x)
        return feature_map(acts, self.model, self.layer, tuple(x.shape[-2:]))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(layer={self.layer!r}, upsample={self.upsample!r}, "
            f"threshold={self.threshold}, precision={self.precision!r}, compile={self.compile})"
        )


class ActivationExplainer(Explainer):
    """An explainer whose raw maps are a function of one layer's output alone (LaFAM, EigenCAM).

    Subclasses implement ``from_activations``; the forward stops at the layer. A forward pass
    shared with other explainers of the same model (``lafam_utils.explainers.shared_forward``) hands the
    layer's output to ``from_activations`` directly.
    """

    @abstractmethod
    def from_activations(self, acts: Tensor) -> Tensor:
        """Raw (B, h, w) maps from the layer's (B, C, h, w) output (any float dtype), in float32."""

    def layer_maps(self, x: Tensor) -> Tensor:
        return self.from_activations(self.activations(x))
