"""Keep or drop JPEG decoding on the device (``decode="device"``): its geometry, pixels and metric means
against the dataset's Pillow path.

    python benchmarks/decoding_agreement.py --device cuda --images 300   # decides decode="auto" on CUDA
    python benchmarks/decoding_agreement.py --images 300 --threads 1     # the same code on the CPU
    python benchmarks/decoding_agreement.py --voc-root /data/voc --images 300   # real VOC val images

Images: by default ``--images`` photo-like JPEGs written to a temporary VOC 2012 tree in the real
layout (VOC's common sizes, qualities 75-95, one object of the paper's four classes per mask);
with ``--voc-root``, the first ``--images`` of the paper's VOC subset. Each image is decoded by the
dataset (Pillow) and by ``decode_images`` on ``--device`` (nvJPEG on CUDA, libjpeg-turbo on the
CPU): the shapes must be equal, and the pixel differences (8-bit levels, before normalisation)
within ``PIXEL_TOLERANCE``. Then ``lu.evaluate`` of LaFAM and Grad-CAM on ResNet50 (the paper's
weights where they are cached, otherwise random-init: recorded) and on the shipped shapes CNN, once
with ``decode="dataset"`` and once with ``decode="device"``: per pair and metric, the difference of
the means x100 must be below ``MEAN_TOLERANCE``. The verdict is "keep" only if all three hold.
Writes ``decoding_<device type>.json`` and ``.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lafam_utils as lu  # noqa: E402
from benchmarks.cases.loading import write_voc_jpegs  # noqa: E402
from benchmarks.report import command_line, write_record  # noqa: E402
from lafam_utils import filters  # noqa: E402
from lafam_utils.datasets import VOC2012  # noqa: E402
from lafam_utils.datasets.transforms import decode_images, denormalize  # noqa: E402
from lafam_utils.models.downloads import DownloadError  # noqa: E402

VOC_SIZES = ((500, 375), (375, 500), (500, 333), (333, 500), (500, 334), (500, 500), (486, 500), (500, 281))
"""(width, height) of the synthetic JPEGs: the most common sizes of VOC 2012 val images, and two odd ones."""
QUALITIES = (75, 85, 90, 95)
PIXEL_TOLERANCE = {"mean": 0.5, "p99.9": 2.0}
"""Largest mean and 99.9th percentile of the per-pixel difference, in 8-bit levels."""
MEAN_TOLERANCE = 0.1
"""Largest difference of a metric's mean (x100) over the images, per pair."""
METHODS = ("lafam", "gradcam")


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """Normalised images -> their 8-bit pixel values (0-255, integers in float)."""
    return (denormalize(x) * 255).round_()


def pixel_agreement(dataset: VOC2012, device: str, batch: int) -> dict[str, Any]:
    """Decode every image both ways: equal shapes, and the per-pixel differences in 8-bit levels."""
    differences, shapes_equal = [], True
    for start in range(0, len(dataset), batch):
        indices = range(start, min(start + batch, len(dataset)))
        pillow = torch.stack([dataset[i]["image"] for i in indices])
        decoded = decode_images([dataset.encoded_item(i)["encoded"] for i in indices], dataset.size, device).cpu()
        shapes_equal &= decoded.shape == pillow.shape
        if decoded.shape == pillow.shape:
            differences.append((to_levels(decoded) - to_levels(pillow)).abs().flatten())
    levels = torch.cat(differences).numpy() if differences else np.zeros(1)
    return {
        "shapes_equal": bool(shapes_equal),
        "mean": float(levels.mean(dtype=np.float64)),
        "p99.9": float(np.percentile(levels, 99.9)),
        "max": float(levels.max()),
        "share_above_one_level": float((levels > 1).mean()),
    }


def resnet50(device: str) -> tuple[torch.nn.Module, str]:
    """The paper's ResNet50 if its weights are cached (no network needed), otherwise random-init."""
    try:
        return lu.load_model("resnet50", device=device), "IMAGENET1K_V1 (the paper's)"
    except DownloadError as error:
        print(f"ResNet50 weights unavailable ({str(error).splitlines()[0]}): random-init ResNet50 instead")
        torch.manual_seed(0)
        return lu.load_model("resnet50", weights=None, device=device), "random-init (seed 0)"


def metric_means(dataset: VOC2012, models: dict[str, torch.nn.Module], device: str, batch: int) -> dict[str, Any]:
    """Both decodings' tables: rows per id and pair must match; the difference of the metric means x100."""
    pairs = [(name, method) for name in models for method in METHODS]
    options = dict(models=models, batch_size=batch, device=device, progress=False, num_workers=0,
                   k=min(1000, dataset.size**2))
    with tempfile.TemporaryDirectory(prefix="lafam-decoding-") as folder:
        tables = {decode: lu.evaluate(dataset, pairs, results_dir=folder, decode=decode, **options)
                  for decode in ("dataset", "device")}
    keys = ["id", "model", "method"]
    pillow, device_table = (tables[d].sort_values(keys).reset_index(drop=True) for d in ("dataset", "device"))
    pd.testing.assert_frame_equal(pillow[keys], device_table[keys])
    ok = (pillow["error"] == "") & (device_table["error"] == "")
    metrics = list(lu.metrics.METRIC_NAMES)
    means = {name: table[ok].groupby(["model", "method"])[metrics].mean() * 100
             for name, table in (("pillow", pillow), ("device", device_table))}
    difference = (means["device"] - means["pillow"]).abs()
    return {
        "rows": len(pillow),
        "errors": int((~ok).sum()),
        "same_prediction": float((pillow.loc[ok, "prediction"] == device_table.loc[ok, "prediction"]).mean()),
        "means_pillow": {f"{m} / {e}": row.to_dict() for (m, e), row in means["pillow"].iterrows()},
        "abs_difference": {f"{m} / {e}": row.to_dict() for (m, e), row in difference.iterrows()},
        "largest_difference": float(difference.max().max()),
    }


def verdict(pixels: dict[str, Any], metrics: dict[str, Any]) -> bool:
    return (pixels["shapes_equal"] and all(pixels[key] <= bound for key, bound in PIXEL_TOLERANCE.items())
            and metrics["largest_difference"] < MEAN_TOLERANCE)


def markdown(result: dict[str, Any]) -> str:
    pixels, metrics = result["pixels"], result["metrics"]
    lines = [
        "# Decoding on the device against Pillow", "",
        f"`{result['command']}` on {result['device_name']} (torch {result['torch']}, torchvision "
        f"{result['torchvision']}), {result['images']} images ({result['source']}), side {result['size']}, "
        f"{result['seconds']:.0f} s. ResNet50 weights: {result['resnet50_weights']}.", "",
        f"**Verdict: {'keep' if result['keep'] else 'drop'}** (geometry equal, pixel mean <= "
        f"{PIXEL_TOLERANCE['mean']} and 99.9th percentile <= {PIXEL_TOLERANCE['p99.9']} levels, every metric "
        f"mean within {MEAN_TOLERANCE} points).", "",
        "| pixels (8-bit levels) | value |", "|---|---|",
        f"| shapes equal | {pixels['shapes_equal']} |",
        f"| mean difference | {pixels['mean']:.4f} |",
        f"| 99.9th percentile | {pixels['p99.9']:.2f} |",
        f"| largest | {pixels['max']:.2f} |",
        f"| share of pixels more than one level apart | {pixels['share_above_one_level']:.2e} |", "",
        f"Tables: {metrics['rows']} rows each, {metrics['errors']} error rows, the same prediction in "
        f"{metrics['same_prediction']:.2%} of the rows. |mean with device decoding - mean with Pillow| x100:", "",
    ]
    names = list(lu.metrics.METRIC_NAMES)
    lines += ["| pair | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for pair, row in metrics["abs_difference"].items():
        lines.append(f"| {pair} | " + " | ".join(f"{row[name]:.3f}" for name in names) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--size", type=int, default=224, help="the images' side after resizing")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--voc-root", type=Path, default=None, help="a VOC 2012 tree (default: synthetic JPEGs)")
    parser.add_argument("--no-resnet50", action="store_true", help="only the shapes CNN (a quick run)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "decoding")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lafam-decoding-voc-") as folder:
        if args.voc_root is None:
            write_voc_jpegs(Path(folder), args.images, sizes=VOC_SIZES, qualities=QUALITIES)
            root, source = Path(folder), "synthetic photo-like JPEGs in the VOC layout"
        else:
            root, source = args.voc_root, f"VOC 2012 val, the paper's subset, from {args.voc_root}"
        first = args.images
        dataset = VOC2012(root, subset=lambda table: filters.voc_paper(table).head(first), size=args.size,
                          cache_dir=Path(folder) / "cache")
        models = {"shapes-supervised": lu.load_model("shapes-supervised", device=args.device)}
        weights = "not run (--no-resnet50)"
        if not args.no_resnet50:
            models["resnet50"], weights = resnet50(args.device)
        pixels = pixel_agreement(dataset, args.device, args.batch)
        metrics = metric_means(dataset, models, args.device, args.batch)
    device = torch.device(args.device)
    result = {
        "command": command_line(__file__, argv),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "the CPU",
        "torch": torch.__version__,
        "torchvision": __import__("torchvision").__version__,
        "images": len(dataset),
        "source": source,
        "size": args.size,
        "resnet50_weights": weights,
        "threads": torch.get_num_threads(),
        "seconds": time.perf_counter() - start,
        "pixels": pixels,
        "metrics": metrics,
        "keep": verdict(pixels, metrics),
    }
    print(write_record(args.out, f"decoding_{device.type}", result, markdown(result)))
    return result


if __name__ == "__main__":
    main()
