"""ViT explainers on CUDA: largest map difference from the CPU (strict fp32), and time per batch
beside the bare forward.

    python benchmarks/vit_gpu.py > benchmarks/results/gpu/vit.json

The shipped shapes ViTs, DINO ViT-S/16 and torchvision's ViT-B/16 (both random-init: no
download), 224x224: each method's maps of 4 images on CUDA against the CPU; the median of 7
synchronised calls on a batch of 64 over the bare forward's; RELAX's 256 masked forwards of one
image over a bare forward of 256 images. Needs a CUDA device; see docs/vision-transformers.md.
"""

import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lafam_utils as lu

MODELS = {
    "shapes-vit-supervised": {},
    "shapes-vit-simclr": {},
    "dino-vits16": {"weights": None},
    "vit_b_16": {"weights": None},
}


def timed(fn: Callable[[], Any], rounds: int = 7) -> float:
    """The median seconds of ``rounds`` synchronised calls of ``fn``, after one call to warm up."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def model_results(name: str, kwargs: dict[str, Any]) -> dict[str, float]:
    """One model's rows: each method's largest |CUDA - CPU| map difference and its time over the bare forward."""
    rows = {}
    model = lu.load_model(name, **kwargs).eval()
    classifier = getattr(model, "class_names", None) is not None
    methods = (
        ["lafam", "lafam-magnitude", "eigencam"]
        + (["gradcam"] if classifier else ["relax"])
        + (["attention"] if lu.applies_to("attention", model) else [])
    )
    x = torch.rand(4, 3, 224, 224)
    for method in methods:
        opts = {"n_masks": 64, "seed": 0} if method == "relax" else {}
        cpu = lu.explainer(method, model, **opts)(x)
        gpu = lu.explainer(method, model.cuda(), **opts)(x.cuda()).cpu()
        model.cpu()
        rows[f"{name} {method} max |cuda - cpu|"] = float((cpu - gpu).abs().max())
    model.cuda()
    xb = torch.rand(64, 3, 224, 224, device="cuda")
    with torch.no_grad():
        bare = timed(lambda: model(xb))
    rows[f"{name} bare forward, batch 64 (ms)"] = bare * 1e3
    for method in [m for m in methods if m != "relax"]:
        rows[f"{name} {method} / bare forward"] = timed(partial(lu.explainer(method, model), xb)) / bare
    if "relax" in methods:
        e = lu.explainer("relax", model, n_masks=256, seed=0)
        one = xb[:1]
        with torch.no_grad():
            bare256 = timed(lambda: model(one.expand(256, -1, -1, -1).contiguous()), 3)
        rows[f"{name} relax 256 masks / bare forward on 256 images"] = timed(lambda: e(one), 3) / bare256
    model.cpu()
    torch.cuda.empty_cache()
    return rows


def main() -> None:
    """Print every model's rows as JSON (strict fp32, seed 0)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    out = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name()}
    for name, kwargs in MODELS.items():
        out.update(model_results(name, kwargs))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
