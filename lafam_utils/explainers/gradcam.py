"""Grad-CAM (Selvaraju et al.): class-specific maps from the gradient of the class score."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
from torch import Tensor

from ..hooks import capture, layer_name
from ..precision import tf32_context
from .base import Explainer, feature_map
from .registry import register
from .tokens import check_patch_gradients, patch_grid

Target = int | str | Sequence[int] | Sequence[str] | Tensor | None


def class_indices(target: str | Sequence[str], class_names: Sequence[str] | None) -> int | list[int]:
    """Class names -> indices in ``class_names`` (the model's ``class_names``), with a clear error.

    Args:
        target: one class name, or a sequence of them.
        class_names: the model's class names (None: it has none).

    Returns:
        The index of one name, or a list of indices.

    Raises:
        TypeError: ``class_names`` is None.
        ValueError: a name is not in ``class_names`` (the message lists close matches).
    """
    names = [target] if isinstance(target, str) else list(target)
    if class_names is None:
        raise TypeError(f"target {target!r} names classes, but the model has no class_names; pass class indices")
    index = {name: i for i, name in enumerate(class_names)}
    unknown = [name for name in names if name not in index]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(index), n=3)
        hint = f" (close: {', '.join(close)})" if close else ""
        raise ValueError(f"target class(es) {unknown} not in the model's class_names{hint}")
    found = [index[name] for name in names]
    return found[0] if isinstance(target, str) else found


def resolve_targets(target: Target, logits: Tensor, class_names: Sequence[str] | None = None) -> Tensor:
    """The (B,) class indices to explain: ``target`` checked and broadcast, or the argmax of ``logits``.

    Args:
        target: None (the argmax of ``logits``), a class index, one per image, or class names
            (one, or one per image) looked up in ``class_names``.
        logits: (B, n_classes) the model's output.
        class_names: the model's class names, for names in ``target``.

    Returns:
        (B,) int64 class indices on ``logits``' device.

    Raises:
        TypeError: ``target`` is not of one of these kinds, holds no integers, or names classes
            while ``class_names`` is None.
        ValueError: ``target`` does not hold one class per image, an index is outside
            [0, n_classes), or a name is unknown.
    """
    batch, n_classes = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    if isinstance(target, str) or (isinstance(target, Sequence) and target and all(isinstance(t, str) for t in target)):
        target = class_indices(target, class_names)
    try:
        targets = torch.as_tensor(target, device=logits.device)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"target must be None, a class index, one per image, or class names; got {target!r}"
        ) from None
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got dtype {targets.dtype}")
    if targets.ndim == 0:
        targets = targets.expand(batch)
    if targets.shape != (batch,):
        raise ValueError(
            f"target must be an int or hold one class per image, shape ({batch},); got {tuple(targets.shape)}"
        )
    outside = (targets < 0) | (targets >= n_classes)
    if outside.any():
        raise ValueError(f"target {targets[outside].tolist()} outside the class range [0, {n_classes})")
    return targets.long()


@register
class GradCAM(Explainer):
    """``M = Up(N(ReLU(sum_k w_k A^k)))`` with ``w_k`` the spatial mean of ``d y_c / d A^k``.

    ``explainer(x, target=None)``: ``target`` None explains each image's predicted class (the
    argmax of the model's output), an int or a (B,) tensor of class indices otherwise, or class
    names (one, or one per image) looked up in ``model.class_names``. After each
    call ``explainer.targets`` (B,) holds the explained classes and ``explainer.logits`` (B, n) the
    model's output. The forward runs under ``torch.no_grad()`` up to the layer; only the layers
    after it record a graph, and only ``d y_c / d A`` is computed (``torch.autograd.grad``): no
    parameter ``.grad`` changes, ``requires_grad`` flags are untouched, and it works inside a
    caller's ``torch.no_grad()``. With ``precision="bf16"`` the forward and this backward run in
    bf16, with ``"fp32"`` / ``"tf32"`` both with TF32 off / on; the gradient weighting runs in
    float32. The batch's class scores share one backward
    pass, which keeps images independent when the model is in eval mode (batch norm with running statistics).

    On a Vision Transformer's token layer, ``A`` is its patch tokens as an h x w grid (prefix tokens
    dropped, ``explainers.tokens``) and ``w_k`` their mean gradient: pytorch-grad-cam's ViT recipe
    with a ``reshape_transform``. A layer after which the model reads only its CLS token (a
    classifier's last block) has an exactly zero patch gradient: an error naming a usable layer.

    Args:
        model: a classifier returning (B, n_classes) scores; ``class_names`` for named targets.

    The other arguments are ``Explainer``'s.
    """

    name = "gradcam"
    title = "Grad-CAM"
    needs_labels = True
    uses_gradients = True

    targets: Tensor | None = None
    logits: Tensor | None = None

    def layer_maps(self, x: Tensor, target: Target = None) -> Tensor:
        """Raw (B, h, w) Grad-CAM maps of ``x`` for the classes ``target`` (see the class docstring).

        Raises:
            RuntimeError: the forward pass did not reach ``layer``.
        """
        name = layer_name(self.model, self.layer)
        with torch.no_grad(), self.forward_context(x), capture(self.model, name, start_graph=True) as rec:
            logits = self.model(x)
        if name not in rec.outputs:
            model = type(self.model).__name__
            raise RuntimeError(f"layer {self.layer!r} was not reached by the forward pass of {model}")
        return self.from_graph(logits, rec.outputs[name], target, size=tuple(x.shape[-2:]))

    def from_graph(
        self, logits: Tensor, acts: Tensor, target: Target = None, size: tuple[int, int] | None = None
    ) -> Tensor:
        """Raw (B, h, w) maps from a forward recorded by ``capture(..., start_graph=True)``.

        A forward shared with other explainers of the same model
        (``lafam_utils.explainers.shared_forward``) calls this directly.

        Args:
            logits: the model's output, (B, n_classes) scores.
            acts: the layer's output, the leaf the graph of the later layers starts from.
            target: the classes to explain, as for ``resolve_targets``.
            size: the images' (H, W), which a token layer's patch grid needs.

        Returns:
            The (B, h, w) raw maps; ``targets`` and ``logits`` are set.

        Raises:
            ValueError: ``logits`` are not (B, n_classes) scores, or a token layer's patch gradient
                is exactly zero (``tokens.check_patch_gradients``).
        """
        grid = feature_map(acts.detach(), self.model, self.layer, size)
        if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != acts.shape[0]:
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ValueError(f"Grad-CAM needs a model returning (B, n_classes) scores, got {shape}")
        self.logits = logits.detach().float()
        self.targets = resolve_targets(target, self.logits, getattr(self.model, "class_names", None))
        with torch.enable_grad():  # also inside a caller's no_grad
            score = logits.gather(1, self.targets[:, None]).sum()  # images are independent: one backward
        with tf32_context(self.resolved_precision(acts.device)):
            (grads,) = torch.autograd.grad(score, acts, retain_graph=True)  # a LayerCAM may share the graph
        if acts.ndim == 3:
            check_patch_gradients(grads, self.model, self.layer)
            grads = patch_grid(grads, self.model, self.layer, size)
        return self.weigh(grads.float(), grid.float())

    def weigh(self, grads: Tensor, acts: Tensor) -> Tensor:
        """Raw (B, h, w) maps from the layer's (B, C, h, w) gradient and activations, in float32:
        ``ReLU(sum_k w_k A^k)`` with ``w_k`` the gradient's spatial mean."""
        weights = grads.mean(dim=(2, 3))
        return torch.einsum("bc,bchw->bhw", weights, acts).relu()
