"""A tiny dataset, models and metric function for the evaluation tests; also a script for subprocess runs.

``python tests/evaluation_toy.py RESULTS_DIR [--delay SECONDS] [--log FILE] [--items-log FILE] [--go FILE]
[--workers N]`` evaluates the toy dataset (also under ``torchrun``; ``--workers``: loading processes); ``--delay``
slows every item down so a test can kill the run half-way; ``--log`` appends one line per explainer call (pid,
explainer, model, hash of the images) so a test can tell whether two processes did the same work;
``--items-log`` one line per item read (pid, index), so a test knows the loading processes; ``--go`` creates
``FILE.<pid>.ready`` once imported and waits for ``FILE`` to exist, so that several processes start
evaluating together.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

SIZE = 32
CLASS_NAMES = ("circle", "square", "triangle")
PAIRS = [("toynet", "gradlike"), ("toynet", "lafam"), ("toyenc", "lafam")]


class ToyDataset:
    """``n`` random images with a square object mask; ``broken`` indices raise in ``__getitem__``.

    ``log``: a file that gets one line ``pid index`` per item read; ``exit_in_worker``: indices whose
    reading ends the process when it is a loading process (not the main one).
    """

    name = "toy"

    def __init__(self, n: int = 10, broken: tuple[int, ...] = (), delay: float = 0.0, log: str | None = None,
                 exit_in_worker: tuple[int, ...] = ()) -> None:
        self.n, self.broken, self.delay = n, set(broken), delay
        self.log, self.exit_in_worker = log, set(exit_in_worker)

    def __len__(self) -> int:
        return self.n

    def item_id(self, index: int) -> str:
        return f"img{index:03d}"

    def __getitem__(self, index: int) -> dict:
        if index in self.exit_in_worker and multiprocessing.parent_process() is not None:
            os._exit(3)
        if self.log:
            with open(self.log, "a") as file:
                file.write(f"{os.getpid()} {index}\n")
        time.sleep(self.delay)
        if index in self.broken:
            raise OSError(f"image file {index} is truncated")
        g = torch.Generator().manual_seed(index)
        image = torch.randn(3, SIZE, SIZE, generator=g)
        top, left = torch.randint(0, SIZE // 2, (2,), generator=g).tolist()
        mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
        mask[top : top + SIZE // 3, left : left + SIZE // 3] = True
        image[:, mask] += 2.0
        return {"image": image, "mask": mask, "labels": (CLASS_NAMES[index % 3],), "id": self.item_id(index)}


class ToyNet(nn.Module):
    """A small CNN with a ``layer4`` feature map and, when ``classes`` is given, a classifier head."""

    def __init__(self, classes: tuple[str, ...] | None = None, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.layer4 = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())
        self.head = nn.Linear(8, len(classes) if classes else 4)
        if classes:
            self.class_names = classes

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layer4(x).mean(dim=(2, 3)))


def toy_models() -> dict[str, nn.Module]:
    return {"toynet": ToyNet(CLASS_NAMES, seed=0), "toyenc": ToyNet(None, seed=1)}


class GradLike:
    """A second explainer: the channel maximum instead of the mean, min-max normalised, upsampled."""

    def __init__(self, model: nn.Module, scale: float = 1.0) -> None:
        from lafam_utils.explainers import minmax_normalize, upsample_maps
        from lafam_utils.hooks import layer_output

        self.model, self.scale = model, scale
        self._normalize, self._upsample, self._layer_output = minmax_normalize, upsample_maps, layer_output

    def __call__(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            acts = self._layer_output(self.model, "layer4", x).amax(dim=1) * self.scale
        return self._upsample(self._normalize(acts), tuple(x.shape[-2:]), "nearest")


def toy_explainers() -> dict:
    from lafam_utils.explainers import LaFAM

    return {"gradlike": GradLike, "lafam": lambda model, **kw: LaFAM(model, **kw)}


def toy_metrics(maps: Tensor, masks: Tensor, k: int = 1000, backend: str = "torch", metrics=None) -> dict[str, Tensor]:
    """Simple stand-in scores with the six metric names (values differ per image and per method)."""
    inside = (maps * masks).flatten(1).sum(1)
    total = maps.flatten(1).sum(1)
    mass = inside / total
    peak = masks.flatten(1).gather(1, maps.flatten(1).argmax(1, keepdim=True))[:, 0].double()
    values = {
        "Pointing-Game": peak,
        "Top-K Intersection": mass * 0.5,
        "Sparseness": maps.flatten(1).std(1),
        "AUC": maps.flatten(1).mean(1),
        "Relevance Rank Accuracy": mass**2,
        "Relevance Mass Accuracy": mass,
    }
    return {name: values[name] for name in (metrics or values)}


def run(results_dir: str | Path, dataset: ToyDataset, **kwargs):
    import lafam_utils as lu

    options = dict(
        batch_size=3, models=toy_models(), explainers=toy_explainers(), metric_fn=toy_metrics, progress=False
    )
    return lu.evaluate(dataset, PAIRS, results_dir=results_dir, **{**options, **kwargs})


def logged(factories: dict, log: str) -> dict:
    """``factories`` whose explainers append ``pid name model sha256(x)`` to ``log`` on every call
    (the model as the sum of its first weight tensor)."""

    def wrap(name, factory):
        def build(model, **kwargs):
            explain = factory(model, **kwargs)
            model_key = f"{float(next(model.parameters()).detach().sum()):.6f}"

            def call(x):
                with open(log, "a") as file:
                    file.write(f"{os.getpid()} {name} {model_key} {hashlib.sha256(x.numpy().tobytes()).hexdigest()}\n")
                return explain(x)

            return call

        return build

    return {name: wrap(name, factory) for name, factory in factories.items()}


if __name__ == "__main__":
    options = dict(zip(sys.argv[2::2], sys.argv[3::2]))
    extra = {"explainers": logged(toy_explainers(), options["--log"])} if "--log" in options else {}
    if "--workers" in options:
        extra["num_workers"] = int(options["--workers"])
    if "--go" in options:
        Path(f"{options['--go']}.{os.getpid()}.ready").touch()
        while not Path(options["--go"]).exists():
            time.sleep(0.01)
    dataset = ToyDataset(n=10, broken=(4,), delay=float(options.get("--delay", 0.0)), log=options.get("--items-log"))
    run(sys.argv[1], dataset, **extra)
