"""One forward pass of a model shared by all its explainers: the maps equal separate calls' maps.

LaFAM and EigenCAM read a layer's output, Grad-CAM reads the same output and back-propagates
through the layers after it, and RELAX needs the unmasked images' embeddings, the model's
output. ``explain_together`` runs the model once on a batch, recording every layer read (the
graph starts at Grad-CAM's layer, as in ``GradCAM`` itself) and the output where one is needed,
then hands each explainer what it reads. Each map is computed by the same operations, in the
same precision, as a separate call of that explainer, so it is bit-identical to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor, nn

from ..hooks import capture, find_layer, layer_name
from ..precision import forward_context, memory_format
from .base import ActivationExplainer, Explainer, check_images, feature_map
from .gradcam import GradCAM
from .relax import RELAX

Key = TypeVar("Key", bound=Hashable)


@dataclass
class SharedMaps:
    """The result of ``explain_together``.

    Attributes:
        maps: each explainer's (B, H, W) maps, by its key.
        seconds: the seconds attributed to each explainer, by its key.
        output: the model's output, or None (the forward stopped at the layers).
    """

    maps: dict[Hashable, Tensor]
    seconds: dict[Hashable, float]
    output: Tensor | None


def shareable(explainer: object) -> bool:
    """Whether ``explainer`` can take part in a shared forward.

    It can when it is a LaFAM, EigenCAM, Grad-CAM, RELAX or a subclass that keeps their way of
    computing maps from the forward pass.
    """
    kinds = (
        (ActivationExplainer, ActivationExplainer.layer_maps),
        (GradCAM, GradCAM.layer_maps),
        (RELAX, RELAX.layer_maps),
    )
    return any(isinstance(explainer, kind) and type(explainer).layer_maps is method for kind, method in kinds)


def explain_together(
    explainers: Mapping[Key, Explainer],
    x: Tensor,
    *,
    need_output: bool = False,
    synchronize: Callable[[], None] = lambda: None,
) -> SharedMaps:
    """The maps of ``explainers`` (all of one model) for the batch ``x``, from one forward pass.

    Every explainer must be ``shareable``, explain the same model, resolve to the same precision
    on ``x``'s device, and Grad-CAMs must share one layer (the graph starts there). Grad-CAM
    explains each image's predicted class. ``need_output`` runs the whole model even for layer
    readers alone (e.g. for predictions) and returns its output.

    Seconds: each explainer is charged the shared forward up to what it reads (its layer for
    LaFAM and EigenCAM, the whole forward for Grad-CAM and RELAX) plus its own work after it
    (Grad-CAM's backward, RELAX's masked forwards), i.e. about what a separate call would cost;
    the charges of one batch therefore add up to more than its wall time.

    Args:
        explainers: the explainers by key.
        x: (B, 3, H, W) float32 images.
        need_output: run the whole model and return its output.
        synchronize: waits for the device (e.g. ``torch.cuda.synchronize``) before each clock reading.

    Returns:
        ``SharedMaps``: (B, H, W) maps and seconds by key, in the order of ``explainers``.

    Raises:
        TypeError, ValueError: ``x`` is not a non-empty float32 (B, 3, H, W) tensor.
        ValueError: no explainers, explainers of different models or precisions, or Grad-CAMs of
            different layers.
        TypeError: an explainer is not ``shareable``.
        RuntimeError: the forward pass did not reach a layer that is read.
    """
    check_images(x)
    if not explainers:
        raise ValueError("expected at least one explainer")
    unshareable = [key for key, explainer in explainers.items() if not shareable(explainer)]
    if unshareable:
        raise TypeError(f"explainers {unshareable} cannot share a forward (only LaFAM, EigenCAM, Grad-CAM, RELAX)")
    model = next(iter(explainers.values())).model
    if any(explainer.model is not model for explainer in explainers.values()):
        raise ValueError("explainers sharing a forward must explain the same model")
    precisions = {explainer.resolved_precision(x.device) for explainer in explainers.values()}
    if len(precisions) > 1:
        raise ValueError(f"explainers sharing a forward must use one precision, got {sorted(precisions)}")
    (precision,) = precisions
    readers = {k: e for k, e in explainers.items() if isinstance(e, ActivationExplainer)}
    gradcams = {k: e for k, e in explainers.items() if isinstance(e, GradCAM)}
    relaxes = {k: e for k, e in explainers.items() if isinstance(e, RELAX)}
    graph_layers = {layer_name(model, e.layer) for e in gradcams.values()}
    if len(graph_layers) > 1:
        raise ValueError(f"Grad-CAMs sharing a forward must explain one layer, got {sorted(graph_layers)}")
    reader_layers = {k: layer_name(model, e.layer) for k, e in readers.items()}
    plain_layers = sorted(set(reader_layers.values()) - graph_layers)
    whole_model = bool(gradcams or relaxes or need_output)

    size = tuple(x.shape[-2:])
    xp = memory_format(x, precision)
    reached: dict[str, float] = {}
    synchronize()
    start = time.perf_counter()
    output = None
    with ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        stack.enter_context(forward_context(precision, x.device))
        for name in set(reader_layers.values()):  # hooks run in order: the clocks before a stop
            stack.enter_context(_arrival_clock(find_layer(model, name), name, reached, synchronize))
        graph = stack.enter_context(capture(model, sorted(graph_layers), start_graph=True)) if graph_layers else None
        plain = stack.enter_context(capture(model, plain_layers, stop=not whole_model)) if plain_layers else None
        output = model(xp)
    synchronize()
    forward_seconds = time.perf_counter() - start
    recorded = {**(plain.outputs if plain else {}), **(graph.outputs if graph else {})}
    missing = sorted((set(reader_layers.values()) | graph_layers) - set(recorded))
    if missing:
        raise RuntimeError(f"layers {missing} were not reached by the forward pass of {type(model).__name__}")

    maps: dict[Hashable, Tensor] = {}
    seconds: dict[Hashable, float] = {}

    def timed(key: Hashable, explainer: Explainer, raw_maps: Callable[[], Tensor], charged: float) -> None:
        synchronize()
        begin = time.perf_counter()
        maps[key] = explainer.finish(raw_maps(), size)
        synchronize()
        seconds[key] = charged + time.perf_counter() - begin

    for key, explainer in gradcams.items():
        acts = graph.outputs[layer_name(model, explainer.layer)]
        timed(key, explainer, lambda e=explainer, a=acts: e.from_graph(output, a, size=size), forward_seconds)
    for key, explainer in relaxes.items():
        reference = RELAX.as_embeddings(output, len(x))
        timed(key, explainer, lambda e=explainer, r=reference: e.from_reference(xp, r), forward_seconds)
    for key, explainer in readers.items():
        layer = reader_layers[key]
        acts = feature_map(recorded[layer], model, explainer.layer, size)
        with torch.no_grad():
            timed(key, explainer, lambda e=explainer, a=acts: e.from_activations(a), reached[layer] - start)
    ordered = {key: maps[key] for key in explainers}
    result = output.detach() if whole_model and isinstance(output, Tensor) else None
    return SharedMaps(ordered, {key: seconds[key] for key in explainers}, result)


class _arrival_clock:  # noqa: N801 - a function-like context manager
    """Record in ``reached[name]`` when ``module`` produced its output (after ``synchronize``)."""

    def __init__(self, module: nn.Module, name: str, reached: dict[str, float], synchronize: Callable[[], None]):
        self.module, self.name, self.reached, self.synchronize = module, name, reached, synchronize

    def __enter__(self) -> None:
        def hook(*_: object) -> None:
            self.synchronize()
            self.reached[self.name] = time.perf_counter()

        self.handle = self.module.register_forward_hook(hook)

    def __exit__(self, *_: object) -> None:
        self.handle.remove()


__all__ = ["SharedMaps", "explain_together", "shareable"]
