"""The notebooks' parameters, defined once: names, defaults, meaning, and checks.

Every numbered notebook takes the same parameters. A parameter set (``notebooks/params/*.yaml``)
overrides some of them; a name that is not a field of ``Params``, or a value of the wrong type,
is an error that lists the valid names. Relative paths are taken from the repository root.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Union, get_args, get_origin

from ..paper import DATASET_MODELS
from ..precision import check_precision


def _param(default: Any, meaning: str) -> Any:
    return field(default=default, metadata={"meaning": meaning})


@dataclass(frozen=True)
class Params:
    """One notebook run's settings; ``Params.meaning(name)`` says what a parameter does."""

    dataset: str = _param("synthetic", '"synthetic" | "voc" | "imagenet-s"')
    data_root: str | None = _param(
        None, "voc: the folder holding VOCdevkit/; imagenet-s: the folder holding validation-segmentation/"
    )
    images_root: str | None = _param(None, "imagenet-s only: the folder of the ImageNet validation images")
    classifier: str | None = _param(None, "None: the dataset's default, shapes-supervised (synthetic) or resnet50")
    encoders: list[str] | None = _param(
        None, 'None: the dataset\'s default, ["shapes-simclr"] (synthetic) or ["simclr", "swav"]'
    )
    methods: list[str] = _param(
        ("eigencam", "fem", "random", "lafam-lrp", "lafam-fused"),
        "registered methods compared beside the paper's pairs in the tables, on the classifier (and, label-free "
        "ones, on every encoder); [] for the paper's pairs alone",
    )
    plugins: list[str] = _param(
        (),
        "Python files (relative to the repository root) or module names imported first, e.g. to register your "
        "own method",
    )
    checkpoints: dict[str, str] | None = _param(
        None, '{model name: local weights file}, e.g. {"simclr": "weights/simclr_imagenet.ckpt"}'
    )
    weights_dir: str | None = _param(None, "a folder holding the published weight files under their download names")
    random_init: bool = _param(False, "True: models with random weights, nothing trained or loaded (smoke runs)")
    n_images: int = _param(4, "images per figure")
    n_eval: int | None = _param(64, "images scored by the quantitative parts (None: the whole subset)")
    image_size: int = _param(224, "synthetic images only; real images are always 224 x 224")
    relax_masks: int = _param(256, "RELAX masks per image (the paper: 2048)")
    sanity_images: int | None = _param(
        8, "images scored by notebook 06, the randomisation checks and faithfulness (None: n_eval)"
    )
    sanity_relax_masks: int | None = _param(
        16, "RELAX masks per image in notebook 06, whose checks explain each image many times (None: relax_masks)"
    )
    sanity_depth: int | None = _param(
        1,
        "MPRT's cascade in notebook 06: a step per module group at this depth of the module tree (1: the "
        "model's children), None: per layer (Quantus)",
    )
    smooth_samples: int = _param(5, "sMPRT's noisy copies per image in notebook 06 (Hedström et al.: 50)")
    perturbation_steps: int = _param(
        16, "deletion and insertion steps in notebook 06 (RISE: 224, of 224 pixels each at 224 x 224)"
    )
    road_percentages: list[int] = _param(
        (20, 50, 80), "the percentages of pixels ROAD imputes in notebook 06 (Rong et al.: 10, 20, ..., 90)"
    )
    seed: int = _param(0, "seeds torch, the synthetic images, the draw of real images and RELAX's masks")
    device: str = _param("cpu", '"cpu" | "cuda" | "cuda:1" ...')
    batch_size: int = _param(16, "images per batch of the evaluation")
    precision: str = _param("fp32", '"fp32" | "tf32" | "bf16" | "auto" (docs/performance.md)')
    figures_dir: str = _param("figures", "where the figures go (PNG and PDF)")
    results_dir: str = _param("results", "where evaluation runs and tables go")

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, tuple):  # the immutable defaults of list fields
                object.__setattr__(self, item.name, list(value))
                value = list(value)
            if not _matches(value, hints[item.name]):
                raise TypeError(f"parameter {item.name} must be {_describe(hints[item.name])}, got {value!r}")
        if self.dataset not in DATASET_MODELS:
            raise ValueError(f"parameter dataset must be one of {sorted(DATASET_MODELS)}, got {self.dataset!r}")
        check_precision(self.precision)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "the parameters") -> Params:
        """``Params`` with ``values`` over the defaults.

        Raises:
            ValueError: ``values`` names a parameter ``Params`` does not have (the message lists the valid ones).
            TypeError: a value has the wrong type.
        """
        valid = cls.names()
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValueError(
                f"{source} names unknown parameter(s) {', '.join(unknown)}; the notebooks take: {', '.join(valid)}"
            )
        return cls(**values)

    @classmethod
    def names(cls) -> list[str]:
        """The parameter names, in definition order."""
        return [item.name for item in fields(cls)]

    @classmethod
    def meaning(cls, name: str) -> str:
        """What parameter ``name`` does."""
        return next(item.metadata["meaning"] for item in fields(cls) if item.name == name)


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits a type hint made of None, bool, int, str, list[...], dict[...] and unions."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, option) for option in get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(_matches(v, get_args(hint)[0]) for v in value)
    if origin is dict:
        key, item = get_args(hint)
        return isinstance(value, dict) and all(_matches(k, key) and _matches(v, item) for k, v in value.items())
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("NoneType", "None")


__all__ = ["Params"]
