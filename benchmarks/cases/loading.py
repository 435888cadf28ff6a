"""Loading cases: ``evaluate`` fed by the loading pool (``lafam_utils.evaluation.loading``).

- loading-slow-read: items that take 100 ms each to read (a network file system, say), LaFAM on
  the shapes CNN: loaded in this process against 4 workers of the pool, one ``evaluate`` call
  (the pool already started) and three calls in a row (the pool started by the first of them);
- loading-jpeg: LaFAM + Grad-CAM ``evaluate`` from VOC-format JPEGs on disk: Pillow in this
  process, Pillow in workers, torchvision decoding on the device (here the CPU) in this process
  and with workers, against the same explainers and metrics on decoded images (the device-busy
  share). The GPU version (gpu-jpeg) uses the same parts.
"""

from __future__ import annotations

import atexit
import multiprocessing.forkserver
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

import lafam_utils as lu
from lafam_utils.datasets.voc import VOC2012
from lafam_utils.evaluation import loading
from lafam_utils.explainers.shared_forward import explain_together

from . import Case, Comparison, Contenders, Settings, image_size, resnet50

JPEG_SIZE = (500, 375)  # a typical VOC photo
PAIRS = [("resnet50", "gradcam"), ("resnet50", "lafam")]
SLOW_PAIRS = [("shapes-supervised", "lafam")]
SLOW_WORKERS = 4
SLOW_TARGET = 0.4  # 4 workers: at most this share of the in-process time


class SlowRead:
    """Synthetic shapes whose every item takes ``seconds`` to read (a sleep: waiting, not computing).

    Defined at module level so loading processes can unpickle it; the shapes are drawn per item.
    """

    name = "slow-read"

    def __init__(self, n: int, seconds: float, size: int) -> None:
        self.shapes, self.seconds = lu.SyntheticShapes(n, split="single", seed=0, size=size), seconds

    def __len__(self) -> int:
        return len(self.shapes)

    def __repr__(self) -> str:
        return f"SlowRead({self.shapes!r}, seconds={self.seconds})"

    def __getitem__(self, index: int) -> dict:
        time.sleep(self.seconds)
        return self.shapes[index]


def slow_read_contenders(settings: Settings, notes: dict[str, object], calls: int) -> Contenders:
    """``calls`` ``evaluate`` calls in a row, loading here and with ``SLOW_WORKERS`` workers of the pool.

    With ``calls=1`` the pool is started by the untimed warm-up round; with more, each timed
    round closes it and stops the fork server first, so the calls pay one cold start, which
    ``notes`` records.
    """
    count, seconds, batch, size = (8, 0.01, 4, 64) if settings.tiny else (96, 0.1, 16, 128)
    workers = 2 if settings.tiny else SLOW_WORKERS
    torch.manual_seed(0)
    models = {"shapes-supervised": lu.load_model("shapes-supervised").eval().to(settings.device)}

    def evaluate(num_workers: int) -> Callable[[], None]:
        def call() -> None:
            if num_workers and calls > 1:  # a cold start: the pool and the server that forks its processes
                loading.close_loading_pool()
                stop_forkserver()
            pools = set()
            for _ in range(calls):
                with tempfile.TemporaryDirectory(prefix="lafam-bench-") as results:
                    lu.evaluate(SlowRead(count, seconds, size), SLOW_PAIRS, results_dir=results, models=models,
                                batch_size=batch, device=settings.device, progress=False, num_workers=num_workers)
                pools.add(id(loading.current_pool()))
            if num_workers and calls > 1:
                notes["pool starts in the three calls"] = len(pools)
                notes["pool start (s)"] = round(loading.current_pool().start_seconds or float("nan"), 2)

        return call

    return {"in this process": evaluate(0), f"{workers} workers": evaluate(workers)}


def stop_forkserver() -> None:
    """Stop multiprocessing's fork server (private API, for timing a cold start), if one runs."""
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    if server is not None:
        server._stop()


def write_voc_jpegs(
    root: Path,
    count: int,
    seed: int = 0,
    sizes: Sequence[tuple[int, int]] = (JPEG_SIZE,),
    qualities: Sequence[int] = (90,),
) -> None:
    """A VOC 2012 tree of ``count`` photo-like JPEGs, the i-th of (width, height) ``sizes[i % len]``
    and quality ``qualities[i % len]``, each palette mask holding one box of aeroplane, bicycle, bird
    or boat (the paper's subset) at a random place."""
    voc = root / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128]
    ids = [f"2008_{index:06d}" for index in range(count)]
    for index, item_id in enumerate(ids):
        width, height = sizes[index % len(sizes)]
        coarse = Image.fromarray(rng.integers(0, 256, (max(2, height // 25), max(2, width // 25), 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BILINEAR), dtype=np.int16)
        pixels = np.clip(smooth + rng.integers(-12, 13, smooth.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(voc / "JPEGImages" / f"{item_id}.jpg", quality=qualities[index % len(qualities)])
        labels = np.zeros((height, width), np.uint8)
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        labels[top : top + height // 3, left : left + width // 3] = rng.integers(1, 5)
        mask = Image.fromarray(labels, mode="P")
        mask.putpalette(palette + [0] * (768 - len(palette)))
        mask.save(voc / "SegmentationClass" / f"{item_id}.png")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("".join(f"{i}\n" for i in ids))


def jpeg_contenders(
    settings: Settings, model: nn.Module, count: int, batch: int, side: int, workers: int, precision: str = "bf16"
) -> Contenders:
    """``evaluate`` of ``PAIRS`` on ``count`` JPEGs in a temporary VOC tree (removed at exit): Pillow
    here and in ``workers`` processes, torchvision on the device here and with workers; and the same
    explainers (one shared forward per batch) and torch metrics on the decoded images already on the
    device. ``side``: the images' side after resizing."""
    folder = Path(tempfile.mkdtemp(prefix="lafam-bench-jpegs-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    write_voc_jpegs(folder, count)
    dataset = VOC2012(folder, subset=None, size=side, cache_dir=folder / "cache")
    options = {"batch_size": batch, "precision": precision, "k": min(1000, side**2)}

    def evaluate(num_workers: int, decode: str) -> Callable[[], None]:
        def call() -> None:
            with tempfile.TemporaryDirectory(prefix="lafam-bench-") as results:
                lu.evaluate(dataset, PAIRS, results_dir=results, models={"resnet50": model}, device=settings.device,
                            progress=False, num_workers=num_workers, decode=decode, **options)

        return call

    items = [dataset[i] for i in range(len(dataset))]
    chunks = [items[start : start + batch] for start in range(0, len(items), batch)]
    batches = [[torch.stack([item[key] for item in chunk]).to(settings.device) for key in ("image", "mask")]
               for chunk in chunks]
    explainers = {pair: lu.explainer(pair[1], model, precision=precision) for pair in PAIRS}

    def in_memory() -> None:
        for x, masks in batches:
            for maps in explain_together(explainers, x, need_output=True).maps.values():
                lu.metrics.compute(maps, masks, k=options["k"])

    return {
        "evaluate, Pillow here": evaluate(0, "dataset"),
        f"evaluate, Pillow in {workers} workers": evaluate(workers, "dataset"),
        "evaluate, decoded on the device": evaluate(0, "device"),
        f"evaluate, {workers} workers, decoded on the device": evaluate(workers, "device"),
        "explainers and metrics on decoded images": in_memory,
    }


def comparisons(workers: int) -> list[Comparison]:
    """The device-busy share of each ``evaluate`` (time explaining and scoring decoded images / its
    time), the workers' speed-up and device decoding against Pillow."""
    decoded = "explainers and metrics on decoded images"
    return [
        Comparison(decoded, "evaluate, Pillow here", "device-busy share, Pillow here", op=">="),
        Comparison(decoded, f"evaluate, Pillow in {workers} workers", "device-busy share, Pillow in workers",
                   op=">="),
        Comparison(decoded, "evaluate, decoded on the device", "device-busy share, device decoding here", op=">="),
        Comparison(decoded, f"evaluate, {workers} workers, decoded on the device",
                   "device-busy share, workers + device decoding", op=">="),
        Comparison("evaluate, Pillow here", f"evaluate, Pillow in {workers} workers", "speed-up of workers (Pillow)",
                   op=">="),
        Comparison("evaluate, Pillow here", "evaluate, decoded on the device",
                   "speed-up of device decoding over Pillow, here", op=">="),
    ]


def cases(settings: Settings) -> list[Case]:
    count, batch = (8, 4) if settings.tiny else (32, 16)
    workers = max(2, loading.default_workers(settings.device))
    slow_notes: dict[str, object] = {}
    slow_title = "96 items of 100 ms, batch 16" if not settings.tiny else "8 items of 10 ms, batch 4"
    slow_workers = 2 if settings.tiny else SLOW_WORKERS
    return [
        Case(
            id="loading-slow-read",
            title=f"evaluate LaFAM (shapes CNN) from {slow_title}, one call",
            build=lambda: slow_read_contenders(settings, {}, calls=1),
            comparisons=[Comparison(f"{slow_workers} workers", "in this process",
                                    f"{slow_workers} workers / in this process", SLOW_TARGET)],
            items=8 if settings.tiny else 96,
            rounds=3,
            targets_note="the pool was started by the warm-up round, as by an earlier call of the same Python process",
        ),
        Case(
            id="loading-slow-read-3-calls",
            title=f"evaluate LaFAM (shapes CNN) from {slow_title}, three calls in a row",
            build=lambda: slow_read_contenders(settings, slow_notes, calls=3),
            comparisons=[Comparison(f"{slow_workers} workers", "in this process",
                                    f"three calls: {slow_workers} workers / in this process")],
            items=3 * (8 if settings.tiny else 96),
            rounds=2,
            warmup=0,
            notes=slow_notes,
            targets_note="each round closes the pool and stops the fork server first: the three calls include one "
                         "cold start of the pool",
        ),
        Case(
            id="loading-jpeg",
            title=f"evaluate LaFAM + Grad-CAM (fp32) from {count} JPEGs of {JPEG_SIZE[0]}x{JPEG_SIZE[1]}, "
                  f"batch {batch}",
            build=lambda: jpeg_contenders(settings, resnet50(settings.device), count, batch, image_size(settings),
                                          workers, precision="fp32"),
            comparisons=comparisons(workers),
            items=count,
            rounds=2,
            targets_note="the pool was started by the warm-up round; here the device is the CPU, so workers and "
                         "explainers share its cores",
        ),
    ]
