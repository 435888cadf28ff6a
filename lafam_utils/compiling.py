"""``torch.compile`` for the forwards that run without module hooks, compiled once per model and precision.

Beside ``precision``: the compiled forward is specialised on the global state a precision sets
(autocast, the TF32 flags), so the cache is keyed by the resolved precision.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import torch
from torch import Tensor, nn

from .precision import Resolved


class CompiledForward:
    """A model's forward compiled by ``torch.compile`` (dynamic shapes off) on its first call.

    The compiled function reaches the model through a weak reference, so a cached compiled
    forward does not keep its model alive. ``seconds`` is the first call's time (tracing and
    compiling included; a new input shape recompiles, at torch's own cost, unreported).

    Args:
        model: the network whose forward is compiled.
    """

    def __init__(self, model: nn.Module) -> None:
        reference = weakref.ref(model)

        def forward(x: Tensor) -> Any:
            return reference()(x)

        self.model_name = type(model).__name__
        self.function = torch.compile(forward, dynamic=False)
        self.seconds: float | None = None

    def __call__(self, x: Tensor) -> Any:
        if self.seconds is not None:
            return self.function(x)
        start = time.perf_counter()
        output = self.function(x)
        self.seconds = time.perf_counter() - start
        return output


_COMPILED: weakref.WeakKeyDictionary[nn.Module, dict[str, CompiledForward]] = weakref.WeakKeyDictionary()


def compiled_forward(model: nn.Module, precision: Resolved) -> CompiledForward:
    """``model``'s compiled forward for ``precision``, made once per model object and precision.

    Args:
        model: the network; its forward must run without module hooks (see ``Explainer``).
        precision: the resolved precision the forward runs in (its global state is part of what
            torch.compile specialises on).

    Returns:
        The cached ``CompiledForward``.
    """
    per_model = _COMPILED.setdefault(model, {})
    if precision not in per_model:
        per_model[precision] = CompiledForward(model)
    return per_model[precision]
