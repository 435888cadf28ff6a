"""Record a layer's output (and, on request, the gradient flowing into it) by dotted name.

``capture`` is a context manager that registers forward hooks on entry and always removes them
on exit, also when the forward raises. With ``stop=True`` the forward is cut short once every
requested layer has produced its output, so the layers after it are never computed. With
``start_graph=True`` the autograd graph starts at the layer: run the forward under
``torch.no_grad()`` and only the layers after it record a graph (what Grad-CAM needs).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from types import TracebackType

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

LayerSpec = str | nn.Module


class _StopForward(Exception):  # noqa: N818 - a control-flow signal (as StopIteration), not an error
    """Raised inside a forward hook to skip the rest of the model; swallowed by ``capture``."""


def find_layer(model: nn.Module, layer: LayerSpec) -> nn.Module:
    """Return the submodule named by a dotted path (``"layer3.5.conv3"``) or the module itself.

    Raises:
        ValueError: a module given is not part of ``model``.
        TypeError: ``layer`` is neither a str nor an ``nn.Module``.
        KeyError: ``model`` has no layer of that name (the message lists close matches and the top-level layers).
    """
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ValueError(f"{type(layer).__name__} module is not part of {type(model).__name__}")
        return layer
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a dotted name or an nn.Module, got {type(layer).__name__}")
    names = [name for name, _ in model.named_modules() if name]
    try:
        return model.get_submodule(layer)
    except AttributeError:
        close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise KeyError(
            f"{type(model).__name__} has no layer {layer!r}.{hint} "
            f"Top-level layers: {', '.join(n for n in names if '.' not in n)}."
        ) from None


def layer_name(model: nn.Module, layer: LayerSpec) -> str:
    """The dotted name of ``layer`` inside ``model``.

    Raises:
        KeyError: ``model`` has no layer of that name.
        ValueError: a module given is not part of ``model``.
        TypeError: ``layer`` is neither a str nor an ``nn.Module``.
    """
    if isinstance(layer, str):
        find_layer(model, layer)
        return layer
    module = find_layer(model, layer)
    return next(name for name, m in model.named_modules() if m is module)


class capture:  # noqa: N801 - used as a function-like context manager
    """Record the outputs of ``layers`` while the block runs a forward pass.

    >>> with capture(model, "layer4", stop=True) as rec:
    ...     model(x)
    >>> acts = rec.outputs["layer4"]

    Args:
        model: the network.
        layers: one layer or several, each a dotted name or a submodule.
        gradients: also record, in ``rec.gradients``, the gradient flowing into each output during
            a later backward pass.
        stop: end the forward once all outputs are recorded.
        start_graph: record each output as a fresh autograd leaf and switch grad mode on from there,
            so under ``torch.no_grad()`` only the later layers build a graph and
            ``torch.autograd.grad(score, rec.outputs[name])`` is cheap; the grad mode is restored on exit.

    Attributes:
        outputs: dotted name -> the layer's output of the last forward.
        gradients: dotted name -> the gradient flowing into that output.

    Raises:
        ValueError: no layer is given, or a module given is not part of ``model``.
        KeyError: ``model`` has no layer of a name given.
        TypeError: a layer is neither a str nor an ``nn.Module``, or (in the forward) a layer's
            output is not a tensor.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSpec | Iterable[LayerSpec],
        *,
        gradients: bool = False,
        stop: bool = False,
        start_graph: bool = False,
    ) -> None:
        specs = [layers] if isinstance(layers, (str, nn.Module)) else list(layers)
        if not specs:
            raise ValueError("capture needs at least one layer")
        self.model = model
        self.modules = {layer_name(model, s): find_layer(model, s) for s in specs}
        self.gradients_requested = gradients
        self.stop = stop
        self.start_graph = start_graph
        self.outputs: dict[str, Tensor] = {}
        self.gradients: dict[str, Tensor] = {}
        self._handles: list[RemovableHandle] = []

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor | None:
            if not isinstance(output, Tensor):
                raise TypeError(f"layer {name!r} returned {type(output).__name__}, expected a Tensor")
            if self.start_graph:
                torch.set_grad_enabled(True)
                output = output.detach().requires_grad_()
            self.outputs[name] = output
            if self.gradients_requested and output.requires_grad:
                output.register_hook(lambda grad: self.gradients.__setitem__(name, grad))
            if self.stop and len(self.outputs) == len(self.modules):
                raise _StopForward
            # a non-leaf copy goes on, so in-place ops after the layer (``out += identity``) stay legal
            return output.clone() if self.start_graph else None

        return hook

    def __enter__(self) -> capture:
        self.outputs.clear()
        self.gradients.clear()
        self._grad_mode = torch.is_grad_enabled()
        try:
            for name, module in self.modules.items():
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._remove()
        torch.set_grad_enabled(self._grad_mode)
        return exc_type is _StopForward

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def layer_output(model: nn.Module, layer: LayerSpec, x: Tensor) -> Tensor:
    """Run ``model`` on ``x`` up to ``layer`` (the rest is skipped) and return that layer's output.

    Raises:
        RuntimeError: the forward pass does not reach ``layer``.
    """
    with capture(model, layer, stop=True) as rec:
        model(x)
    (output,) = rec.outputs.values() or (None,)
    if output is None:
        raise RuntimeError(f"layer {layer!r} was not reached by the forward pass of {type(model).__name__}")
    return output


__all__ = ["capture", "find_layer", "layer_name", "layer_output"]
