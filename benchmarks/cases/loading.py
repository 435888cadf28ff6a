"""Case 12: ``evaluate`` of LaFAM + Grad-CAM from JPEGs on disk, batches loaded in this process or by
worker processes (``num_workers``), against the same explainers and metrics on images already in
memory: the share of the run the explaining takes. The GPU version (gpu-jpeg) uses the same parts.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

import lafam_utils as lu
from lafam_utils.evaluation.evaluator import default_workers
from lafam_utils.explainers.shared_forward import explain_together
from lafam_utils.datasets.transforms import preprocess_image

from . import Case, Comparison, Contenders, Settings, image_size, resnet50

JPEG_SIZE = (500, 375)  # a typical VOC photo
PAIRS = [("resnet50", "gradcam"), ("resnet50", "lafam")]


class JpegFolder:
    """The ``*.jpg`` files of a folder, decoded and preprocessed as the VOC loader does (centre square,
    resize, ImageNet normalisation); the mask is a centred box. Defined at module level so worker
    processes can unpickle it."""

    name = "jpegs"

    def __init__(self, folder: str | Path, side: int) -> None:
        self.paths = sorted(Path(folder).glob("*.jpg"))
        self.side = side

    def __len__(self) -> int:
        return len(self.paths)

    def item_id(self, index: int) -> str:
        return self.paths[index].stem

    def __getitem__(self, index: int) -> dict:
        with Image.open(self.paths[index]) as image:
            x = preprocess_image(image, self.side)
        mask = torch.zeros(self.side, self.side, dtype=torch.bool)
        quarter = self.side // 4
        mask[quarter:-quarter, quarter:-quarter] = True
        return {"image": x, "mask": mask, "labels": ("object",), "id": self.item_id(index)}


def write_jpegs(folder: Path, count: int, seed: int = 0) -> None:
    """``count`` photo-like JPEGs of ``JPEG_SIZE``: smooth colour fields with mild noise, quality 90."""
    rng = np.random.default_rng(seed)
    width, height = JPEG_SIZE
    for index in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (height // 25, width // 25, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize(JPEG_SIZE, Image.Resampling.BILINEAR), dtype=np.int16)
        pixels = np.clip(smooth + rng.integers(-12, 13, smooth.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:05d}.jpg", quality=90)


def jpeg_contenders(
    settings: Settings, model: nn.Module, count: int, batch: int, side: int, workers: int, precision: str = "bf16"
) -> Contenders:
    """``evaluate`` of ``PAIRS`` on ``count`` JPEGs written to a temporary folder (removed with the
    contenders): loading here and in ``workers`` processes; and the same explainers (one shared
    forward per batch) and torch metrics on the decoded images already on the device."""
    folder = tempfile.TemporaryDirectory(prefix="lafam-bench-jpegs-")
    write_jpegs(Path(folder.name), count)
    options = {"batch_size": batch, "precision": precision, "k": min(1000, side**2)}

    def evaluate(num_workers: int) -> Callable[[], None]:
        def call() -> None:
            with tempfile.TemporaryDirectory(prefix="lafam-bench-") as results:
                lu.evaluate(JpegFolder(folder.name, side), PAIRS, results_dir=results, models={"resnet50": model},
                            device=settings.device, progress=False, num_workers=num_workers, **options)

        return call

    dataset = JpegFolder(folder.name, side)
    items = [dataset[i] for i in range(len(dataset))]
    chunks = [items[start : start + batch] for start in range(0, len(items), batch)]
    batches = [[torch.stack([item[key] for item in chunk]).to(settings.device) for key in ("image", "mask")]
               for chunk in chunks]
    explainers = {pair: lu.explainer(pair[1], model, precision=precision) for pair in PAIRS}

    def in_memory() -> None:
        for x, masks in batches:
            for maps in explain_together(explainers, x, need_output=True).maps.values():
                lu.metrics.compute(maps, masks, k=options["k"])

    return {"evaluate, in this process": evaluate(0), f"evaluate, {workers} workers": evaluate(workers),
            "explainers and metrics on decoded images": in_memory}


def comparisons(workers: int) -> list[Comparison]:
    """The device-busy share of each ``evaluate`` (time explaining and scoring decoded images / its time),
    and the workers' speed-up."""
    return [
        Comparison("explainers and metrics on decoded images", f"evaluate, {workers} workers",
                   "device-busy share of evaluate with workers", op=">="),
        Comparison("explainers and metrics on decoded images", "evaluate, in this process",
                   "device-busy share of evaluate loading here", op=">="),
        Comparison("evaluate, in this process", f"evaluate, {workers} workers", "speed-up of worker loading", op=">="),
    ]


def cases(settings: Settings) -> list[Case]:
    count, batch = (8, 4) if settings.tiny else (64, 16)
    workers = max(2, default_workers())
    return [
        Case(
            id="loading",
            title=f"evaluate LaFAM + Grad-CAM (fp32) from {count} JPEGs of {JPEG_SIZE[0]}x{JPEG_SIZE[1]}, "
                  f"batch {batch}",
            build=lambda: jpeg_contenders(settings, resnet50(settings.device), count, batch, image_size(settings),
                                          workers, precision="fp32"),
            comparisons=comparisons(workers),
            items=count,
            rounds=1,
            targets_note="each evaluate call starts its workers (spawn), in its time; workers help where cores are "
                         "free",
        )
    ]
