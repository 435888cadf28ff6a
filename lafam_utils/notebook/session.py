"""One call sets up a notebook: ``run = lu.notebook.setup(globals())``.

``setup`` reads the notebook's parameters (``Params``; the values papermill injected, else the
defaults), imports the ``plugins``, seeds torch and returns a ``Session``: the models (each loaded
on first use, so a notebook loads only what it uses), the comparison's (model, method) pairs, the
output folders, and the few steps the notebooks share (open a subset, build explainers, evaluate,
label figure rows, save a figure).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..datasets.opening import open_dataset
from ..explainers import accepted_options, applies_to, explainer, explainer_class
from ..models.predictions import predict
from ..models.registry import check_weight_settings, load_model, model_options
from ..paper import Pair, dataset_models, model_method_pairs
from ..report.figures import save_figure
from ..report.titles import pair_title
from .params import Params
from .paths import repo_path


class LazyModels(Mapping[str, nn.Module]):
    """The notebook's models by name, each loaded (with the run's weight settings) on first access."""

    def __init__(self, names: Sequence[str], load: Callable[[str], nn.Module]) -> None:
        self.names = list(dict.fromkeys(names))
        self._load = load
        self._loaded: dict[str, nn.Module] = {}

    def __getitem__(self, name: str) -> nn.Module:
        if name not in self.names:
            raise KeyError(
                f"{name!r} is not one of this run's models {self.names}; Session.model(name) loads any model"
            )
        return self.load(name)

    def load(self, name: str) -> nn.Module:
        """Model ``name`` (any name ``lu.load_model`` knows), loaded once."""
        if name not in self._loaded:
            self._loaded[name] = self._load(name)
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def loaded(self) -> list[str]:
        """The names loaded so far."""
        return list(self._loaded)


class Session:
    """What a notebook works with: parameters, models, pairs, data, folders.

    Attributes:
        params: the run's ``Params``.
        classifier, encoders: the models of the comparison (the dataset's defaults unless given).
        models: ``LazyModels`` over the classifier and the encoders.
        paper_pairs: the paper's (model, method) pairs for these models (the figures' columns).
        pairs: the compared pairs: the paper's, with each of ``params.methods`` added on every model
            it applies to (the tables' columns; reading it loads the models to check that).
        figures, results: the output folders (absolute paths).
        device: a ``torch.device``.
    """

    def __init__(self, params: Params) -> None:
        self.params = params
        self.device = torch.device(params.device)
        self.classifier, self.encoders = dataset_models(params.dataset, params.classifier, params.encoders)
        self.figures, self.results = repo_path(params.figures_dir), repo_path(params.results_dir)
        self.data_root = repo_path(params.data_root) if params.data_root else None
        self.images_root = repo_path(params.images_root) if params.images_root else None
        checkpoints = {name: repo_path(file) for name, file in (params.checkpoints or {}).items()}
        weights_dir = repo_path(params.weights_dir) if params.weights_dir else None
        check_weight_settings([self.classifier, *self.encoders], params.random_init, checkpoints, weights_dir)

        def load(name: str) -> nn.Module:
            options = model_options(name, params.random_init, checkpoints, weights_dir)
            return load_model(name, **options).to(self.device).eval()

        self.models = LazyModels([self.classifier, *self.encoders], load)
        self.paper_pairs = model_method_pairs(self.classifier, self.encoders)
        comparison_pairs(self.classifier, self.encoders, params.methods)  # unknown methods fail here

    @cached_property
    def pairs(self) -> list[Pair]:
        """The paper's pairs, then ``params.methods`` on each model they apply to (``applies_to``)."""
        return self.paper_pairs_with(self.params.methods)

    def paper_pairs_with(self, methods: Sequence[str]) -> list[Pair]:
        """The paper's pairs, then ``methods`` on each model they apply to (loads the models to check that)."""
        return comparison_pairs(
            self.classifier, self.encoders, methods, lambda model, method: applies_to(method, self.models[model])
        )

    def model(self, name: str) -> nn.Module:
        """Any model by name, loaded once with the run's weight settings (e.g. a negative control)."""
        return self.models.load(name)

    def dataset(self, subset: str = "paper", n_images: int | None = None) -> Dataset:
        """``subset`` ("paper" | "multi" | "hard") of the run's dataset, ``n_images`` of them
        (``params.n_eval`` if None)."""
        p = self.params
        n = p.n_eval if n_images is None else n_images
        return open_dataset(p.dataset, subset, self.data_root, self.images_root, n, p.seed, p.image_size)

    def method_options(self, method: str, progress: bool = False, relax_masks: int | None = None) -> dict[str, Any]:
        """The run's settings that ``method``'s constructor takes: RELAX's masks (``relax_masks``, else
        the run's) and seed, and a progress bar."""
        masks = self.params.relax_masks if relax_masks is None else relax_masks
        return accepted_options(method, {"n_masks": masks, "seed": self.params.seed, "progress": progress})

    def factory(
        self, method: str, upsample: str | None = "nearest", relax_masks: int | None = None
    ) -> Callable[[nn.Module], Any]:
        """``method``'s explainer for any model, at the run's precision and settings (``method_options``)."""
        options = self.method_options(method, relax_masks=relax_masks)
        return lambda model: explainer(method, model, upsample=upsample, precision=self.params.precision, **options)

    def explainers(
        self, pairs: Sequence[Pair] | None = None, upsample: str | None = "nearest", progress: bool = False
    ) -> dict[Pair, Callable[[Tensor], Tensor]]:
        """One explainer per pair (default: ``self.pairs``) at the run's precision."""
        return {
            (model, method): explainer(
                method, self.models.load(model), upsample=upsample, precision=self.params.precision,
                **self.method_options(method, progress),
            )
            for model, method in (self.pairs if pairs is None else pairs)
        }

    def pairs_with(self, methods: Sequence[str]) -> list[Pair]:
        """``self.pairs`` with ``methods`` added on each model they apply to (e.g. the random map)."""
        extra = [method for method in methods if method not in self.params.methods]
        return self.paper_pairs_with([*self.params.methods, *extra])

    def sanity_options(self) -> dict[str, dict[str, Any]]:
        """The options of the randomisation checks and faithfulness metrics from the run's parameters."""
        p = self.params
        return {
            "MPRT": {"depth": p.sanity_depth},
            "sMPRT": {"samples": p.smooth_samples},
            "ROAD": {"percentages": list(p.road_percentages)},
            "Deletion": {"steps": p.perturbation_steps},
            "Insertion": {"steps": p.perturbation_steps},
        }

    def evaluate(
        self,
        data: Dataset,
        pairs: Sequence[Pair] | None = None,
        name: str = "paper",
        metrics: Sequence[str] | None = None,
        metric_options: Mapping[str, Mapping[str, Any]] | None = None,
        relax_masks: int | None = None,
    ) -> Any:
        """``lu.evaluate`` of ``pairs`` (default ``self.pairs``) on ``data`` with the run's settings,
        kept under ``results/<dataset>_<name>/``; returns the results table.

        ``metrics`` and ``metric_options`` go to ``lu.evaluate`` (None: the six localisation
        metrics); ``relax_masks`` replaces the run's RELAX masks.
        """
        from ..evaluation import evaluate

        pairs = self.pairs if pairs is None else list(pairs)
        methods = dict.fromkeys(method for _, method in pairs)
        options = {method: self.method_options(method, relax_masks=relax_masks) for method in methods}
        p = self.params
        return evaluate(
            data, pairs, results_dir=self.results / f"{p.dataset}_{name}", batch_size=p.batch_size,
            device=self.device, models=self.models, explainer_kwargs={m: o for m, o in options.items() if o},
            dataset_name=p.dataset, progress=True, precision=p.precision, metrics=metrics,
            metric_options=metric_options,
        )

    def titled(self, by_pair: Mapping[Pair, Any], separator: str = " ") -> dict[str, Any]:
        """``by_pair`` keyed by display titles ("Shapes supervised Grad-CAM"; ``separator="\\n"`` for figure
        columns)."""
        return {pair_title(*pair, separator=separator): value for pair, value in by_pair.items()}

    def explorer(self, data: Dataset, layer: str = "auto") -> Any:
        """The interactive ``Explorer`` over ``data`` with this run's models and settings."""
        from .explorer import Explorer

        p = self.params
        return Explorer(
            data,
            self.models,
            device=self.device,
            layer=layer,
            relax_masks=p.relax_masks,
            seed=p.seed,
            precision=p.precision,
        )

    def row_labels(self, batch: Mapping[str, Any]) -> list[str]:
        """Figure row labels "true: <labels>\\npred: <the classifier's prediction>" for a stacked batch."""
        classifier = self.models[self.classifier]
        predicted = predict(classifier, batch["image"], self.params.batch_size).tolist()
        return [
            f"true: {', '.join(labels)}\npred: {classifier.class_names[p]}"
            for labels, p in zip(batch["labels"], predicted)
        ]

    def save(self, fig: Figure, name: str) -> list[Path]:
        """Save ``fig`` as ``<name>_<dataset>.png`` and ``.pdf`` in the figures folder."""
        return save_figure(fig, f"{name}_{self.params.dataset}", self.figures)

    def __repr__(self) -> str:
        return (
            f"Session(dataset={self.params.dataset!r}, classifier={self.classifier!r}, encoders={list(self.encoders)}, "
            f"pairs={len(self.pairs)}, device={str(self.device)!r})"
        )


def comparison_pairs(
    classifier: str,
    encoders: Sequence[str],
    methods: Sequence[str] = (),
    applies: Callable[[str, str], bool] | None = None,
) -> list[Pair]:
    """The paper's pairs, with each extra method after them on each model it applies to.

    A method that explains a class score (``needs_labels``) runs on the classifier only; a
    label-free one on the classifier and every encoder; with ``applies`` (model name, method)
    only where it also says so (the attention map only on ViTs that expose their attention).
    Pairs are grouped by model.

    Raises:
        ValueError: a method is not registered (the message lists the known ones).
    """
    extra = [explainer_class(method) for method in methods]
    pairs = model_method_pairs(classifier, encoders)
    for model in [classifier, *encoders]:
        at = max(i for i, (m, _) in enumerate(pairs) if m == model) + 1
        added = [
            (model, cls.name)
            for cls in extra
            if (model == classifier or not cls.needs_labels) and (applies is None or applies(model, cls.name))
        ]
        pairs[at:at] = [pair for pair in added if pair not in pairs]
    return pairs


def load_plugins(plugins: Sequence[str]) -> None:
    """Import each plugin: a ``.py`` file (relative paths from the repository root) or a module name.

    Raises:
        FileNotFoundError: a plugin file does not exist.
        ModuleNotFoundError: a module name cannot be imported.
    """
    for plugin in plugins:
        if plugin.endswith(".py"):
            path = repo_path(plugin)
            if not path.is_file():
                raise FileNotFoundError(f"plugin {plugin!r}: {path} does not exist; expected a Python file")
            spec = importlib.util.spec_from_file_location(f"lafam_plugin_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            importlib.import_module(plugin)


def setup(namespace: Mapping[str, Any]) -> Session:
    """Set up a notebook from its namespace (``globals()``): the parameters found there over the defaults.

    Imports the plugins, seeds torch with ``seed`` and prints which models the run compares.

    Raises:
        TypeError, ValueError: a parameter has a wrong type or value, or ``methods`` names an
            unregistered method.
    """
    params = Params.from_mapping({name: namespace[name] for name in Params.names() if name in namespace})
    load_plugins(params.plugins)
    torch.manual_seed(params.seed)
    session = Session(params)
    print(f"dataset {params.dataset}: classifier {session.classifier}, encoders {', '.join(session.encoders)}")
    return session


__all__ = ["LazyModels", "Session", "comparison_pairs", "load_plugins", "setup"]
