"""The interactive explorer of notebook 01: one image, one model, one method, one map at a time.

``Explorer(data, models)`` is an ipywidgets box: controls for the image, model, method, layer,
upsampling and threshold, a status line with a progress bar, and exactly one figure (a PNG
``Image`` widget that each view replaces). Sliders act on release, so a drag computes once.
While a map is computed the controls are disabled, the status names the work and the bar
follows it (RELAX reports each forward of masked images). Maps are cached per (image, model,
method, layer, upsampling), so going back to a view is instant; the threshold only redraws.
The methods are the registered ones (``lu.explainers.EXPLAINERS``, your own included) or those
given; a method that explains a class score (Grad-CAM) is offered only for models with class
logits (``model.class_names``), the layer only for methods that read a layer (not RELAX).
``figure()`` gives the current view as a Matplotlib figure, e.g. to save it with ``Session.save``.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..explainers import EXPLAINERS, accepted_options, applies_to, explainer, explainer_class, has_class_logits
from ..explainers.default_layers import AUTO, model_layers
from ..precision import Precision
from ..report.figures import overlay
from ..report.titles import method_title, model_title, pair_title

UPSAMPLE_CHOICES = ("nearest", "bilinear", "none")
FIGURE_SIZE = (4.5, 4.8)
FIGURE_DPI = 100

MapKey = tuple[int, str, str, str | None, str]
"""(image index, model, method, layer or None for layer-free methods, upsampling) of a cached map."""


def layer_choices(model: nn.Module, first: str) -> list[str]:
    """The layer control's options: ``first`` ("auto": each method's default layer), then the model's
    stages or blocks (``default_layers.model_layers``)."""
    return list(dict.fromkeys([first, *model_layers(model)]))


class Explorer(widgets.VBox):
    """Controls, a status line with a progress bar, and one figure of the chosen map.

    ``data`` yields items with "image" (3, H, W), "mask" (H, W), "labels" and "id"; ``models``
    maps names to modules on ``device``; maps are computed at ``precision`` ("fp32" | "bf16" |
    "auto", as every explainer). ``hits`` and ``computed`` count cache hits and maps
    computed; ``views`` counts the figures drawn.

    Args:
        data: items with "image" (3, H, W), "mask" (H, W), "labels" and "id".
        models: modules by name, on ``device``.
        device: where the maps are computed.
        layer: the layer first chosen for layer-based methods (``"auto"``: each method's default
            layer on each model, ``layer4`` on a ResNet, the last block on a ViT).
        relax_masks: RELAX's masks per image.
        seed: the seed of the random methods.
        precision: the explainers' precision.
        methods: the methods offered (None: all registered).

    Raises:
        ValueError: ``data`` or ``models`` is empty, or ``precision`` is invalid.
    """

    def __init__(
        self,
        data: Dataset,
        models: Mapping[str, nn.Module],
        *,
        device: str | torch.device = "cpu",
        layer: str = AUTO,
        relax_masks: int = 2048,
        seed: int = 0,
        precision: Precision = "fp32",
        methods: Sequence[str] | None = None,
    ) -> None:
        if len(data) == 0:
            raise ValueError("the explorer needs a dataset with at least one image")
        if not models:
            raise ValueError("the explorer needs at least one model, got an empty mapping")
        self.data, self.models, self.device = data, dict(models), torch.device(device)
        self.default_layer, self.relax_masks, self.seed, self.precision = layer, relax_masks, seed, precision
        names = methods if methods is not None else list(EXPLAINERS)
        self.methods = [explainer_class(m).name for m in names]
        self.cache: dict[MapKey, Tensor] = {}
        self.predictions: dict[tuple[int, str], str] = {}
        self.hits = self.computed = self.views = 0
        self._syncing = False

        first = next(iter(self.models))
        self.index = widgets.IntSlider(0, min=0, max=len(data) - 1, description="image", continuous_update=False)
        self.model = widgets.Dropdown(options=list(self.models), value=first, description="model")
        self.method = widgets.Dropdown(options=self.method_choices(first), value="lafam", description="method")
        self.layer = widgets.Dropdown(
            options=layer_choices(self.models[first], layer), value=layer, description="layer"
        )
        self.upsample = widgets.Dropdown(options=UPSAMPLE_CHOICES, value="nearest", description="upsample")
        self.threshold = widgets.FloatSlider(
            0.0, min=0.0, max=1.0, step=0.05, description="threshold", continuous_update=False
        )
        self.controls = [self.index, self.model, self.method, self.layer, self.upsample, self.threshold]
        self.bar = widgets.FloatProgress(0.0, min=0.0, max=1.0, layout=widgets.Layout(width="240px"))
        self.status = widgets.Label()
        self.image = widgets.Image(format="png", layout=widgets.Layout(width=f"{FIGURE_SIZE[0] * FIGURE_DPI:.0f}px"))
        grid = widgets.GridBox(self.controls, layout=widgets.Layout(grid_template_columns="repeat(3, 320px)"))
        super().__init__([grid, widgets.HBox([self.bar, self.status]), self.image])
        self.add_class("lafam-explorer")
        self.status.add_class("lafam-explorer-status")
        self.bar.add_class("lafam-explorer-progress")
        for control in self.controls:
            control.observe(self._on_change, names="value")
        self._sync_controls()
        self.refresh()

    def method_choices(self, model_name: str) -> list[str]:
        """The methods offered for a model: those it can be explained with.

        A method that explains a class score needs class logits; a layer-free one (RELAX, the
        attention map) must accept the model when built on it (its constructor checks it).
        """
        model = self.models[model_name]
        return [method for method in self.methods if applies_to(method, model)]

    @staticmethod
    def reads_layer(method: str) -> bool:
        """Whether ``method`` explains a layer (the layer control applies)."""
        return explainer_class(method).needs_layer

    def key(self) -> MapKey:
        """The cache key of the current view."""
        layer = self.layer.value if self.reads_layer(self.method.value) else None
        return (self.index.value, self.model.value, self.method.value, layer, self.upsample.value)

    def _on_change(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        self._sync_controls()
        self.refresh()

    @contextmanager
    def _quiet(self) -> Iterator[None]:
        """Change controls without triggering a recomputation per change."""
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False

    def _sync_controls(self) -> None:
        """Offer the current model's methods and layers; disable the layer for layer-free methods."""
        model_name = self.model.value
        with self._quiet():
            methods = self.method_choices(model_name)
            if list(self.method.options) != methods:
                current = self.method.value
                self.method.options = methods
                self.method.value = current if current in methods else "lafam"
            layers = layer_choices(self.models[model_name], self.default_layer)
            if list(self.layer.options) != layers:
                current = self.layer.value
                self.layer.options = layers
                self.layer.value = current if current in layers else self.default_layer
        self._enable()

    def _enable(self) -> None:
        for control in self.controls:
            control.disabled = control is self.layer and not self.reads_layer(self.method.value)

    def _report(self, done: int, total: int) -> None:
        self.bar.value = done / total

    def explain(self, key: MapKey) -> Tensor:
        """The (H, W) map of ``key``, from the cache or computed (with the busy state shown)."""
        index, model_name, method, layer, upsample = key
        what = f"{method_title(method)} of {model_title(model_name)} on image {index}"
        if key in self.cache:
            self.hits += 1
            self.status.value = f"{what}: from the cache"
            return self.cache[key]
        options: dict[str, Any] = {"layer": layer} if layer is not None else {}
        settings = {"n_masks": self.relax_masks, "seed": self.seed, "on_progress": self._report}
        options.update(accepted_options(method, settings))
        upsampling = None if upsample == "none" else upsample
        explain = explainer(method, self.models[model_name], upsample=upsampling, precision=self.precision, **options)
        image = self.data[index]["image"][None].to(self.device)
        for control in self.controls:
            control.disabled = True
        self.bar.value, self.bar.bar_style = 0.0, "info"
        self.status.value = f"computing {what} …"
        start = time.perf_counter()
        try:
            saliency = explain(image)[0].cpu()
        except Exception as error:
            self.status.value = f"{what} failed: {error}"
            self.bar.bar_style = "danger"
            raise
        finally:
            self._enable()
        self.bar.value, self.bar.bar_style = 1.0, "success"
        self.status.value = f"{what}: {time.perf_counter() - start:.2f} s"
        self.cache[key] = saliency
        self.computed += 1
        return saliency

    def prediction(self, index: int, model_name: str) -> str | None:
        """The model's predicted class name for image ``index``; None for models without class logits."""
        model = self.models[model_name]
        if not has_class_logits(model):
            return None
        if (index, model_name) not in self.predictions:
            with torch.no_grad():
                logits = model(self.data[index]["image"][None].to(self.device))
            self.predictions[index, model_name] = model.class_names[int(logits.argmax(dim=1))]
        return self.predictions[index, model_name]

    def title(self) -> str:
        """Which image (id, true labels, the classifier's prediction) and which map."""
        index, model_name, method, layer, _ = self.key()
        item = self.data[index]
        labels = ", ".join(item["labels"]) or "none"
        predicted = self.prediction(index, model_name)
        image_line = f"image {index} · {item['id']} · true: {labels}"
        if predicted is not None:
            image_line += f" · pred: {predicted}"
        if layer == AUTO:
            layer = explainer_class(method).auto_layer(self.models[model_name])
        return f"{image_line}\n{pair_title(model_name, method)} · {layer or 'input'}"

    def figure(self) -> Figure:
        """The current view as a Matplotlib figure (not shown by pyplot; save or close it yourself)."""
        key = self.key()
        saliency = self.explain(key)
        if self.threshold.value > 0:
            saliency = saliency.masked_fill(saliency < self.threshold.value, 0.0)
        item = self.data[key[0]]
        fig = Figure(figsize=FIGURE_SIZE)
        ax = fig.subplots()
        overlay(ax, item["image"], saliency, item["mask"].bool())
        ax.set_title(self.title(), fontsize=8)
        fig.tight_layout()
        return fig

    def refresh(self) -> None:
        """Draw the current view into the one figure of the explorer."""
        fig = self.figure()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=FIGURE_DPI)
        self.image.value = buffer.getvalue()
        self.views += 1

    def __repr__(self) -> str:
        index, model_name, method, layer, upsample = self.key()
        return (
            f"Explorer(image={index}, model={model_name!r}, method={method!r}, layer={layer!r}, "
            f"upsample={upsample!r})"
        )


__all__ = ["Explorer", "layer_choices"]
