"""GPU cases (``--device cuda --cases gpu``): the device's ceilings and how much of them the package reaches.

- gpu-forward: the bare ResNet50 forward in strict fp32, TF32, bf16 (channels_last) and bf16 compiled;
- gpu-explainers-<precision>: LaFAM, Grad-CAM and EigenCAM images/s beside the bare forward, with
  each method's largest map difference from strict fp32;
- gpu-relax-<precision>: RELAX's masked forwards/s, batches sized for the device, against the bare
  forward on as many images and against 64 masked images per forward (the CPU's size);
- gpu-paper: the paper's six pairs end to end (``evaluate``, 2048 masks) in s/image, projected to
  VOC (753 images) and ImageNet-S (11,294);
- gpu-jpeg: LaFAM + Grad-CAM ``evaluate`` (bf16) from VOC-sized JPEGs on disk, decoded by Pillow
  or on the device (nvJPEG), in this process and by the loading pool, against the same explainers
  and metrics on images already on the device: the share of the run the device is busy
  (loading-jpeg's parts).

Only a CUDA device gets them by default; ``--tiny`` builds them at toy sizes with the small shapes
models on any device, so that their code runs in the tests. No peer package (Captum,
pytorch-grad-cam, Quantus) is imported. The harness synchronises the device around every call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

import lafam_utils as lu
from lafam_utils.compiling import compiled_forward
from lafam_utils.evaluation.loading import default_workers
from lafam_utils.explainers.relax import free_memory, masked_per_forward
from lafam_utils.paper import PAPER_PAIRS
from lafam_utils.precision import forward_context, memory_format, resolve_precision

from . import Case, Comparison, Contenders, Settings, images, probe_masks, resnet50
from .loading import JPEG_SIZE, comparisons, jpeg_contenders
from .relax import encoder as resnet50_encoder
from .shared import paper_models, run_evaluate, synthetic_items

PRECISIONS = ("fp32", "tf32", "bf16")
EXPLAINERS = {"lafam": "LaFAM", "gradcam": "Grad-CAM", "eigencam": "EigenCAM"}
PROJECTIONS = {"VOC (753 images)": 753, "ImageNet-S (11,294 images)": 11_294}
RELAX_SHARE_TARGET = 0.9  # RELAX's masked forwards/s at least this share of the bare forward's
EIGENCAM_SHARE_TARGET = 0.5  # EigenCAM's images/s at least this share of LaFAM's


@dataclass(frozen=True)
class Sizes:
    """How large each GPU case is: the paper's sizes on CUDA, toy sizes with ``--tiny``."""

    batch: int  # images per explainer call
    side: int  # image side in pixels
    relax_images: int
    relax_masks: int
    paper_images: int
    jpegs: int
    jpeg_batch: int


def sizes(settings: Settings) -> Sizes:
    """The sizes for ``settings``."""
    if settings.tiny:
        return Sizes(batch=2, side=64, relax_images=1, relax_masks=4, paper_images=1, jpegs=8, jpeg_batch=4)
    masks = probe_masks(settings, settings.relax_masks)
    return Sizes(batch=256, side=224, relax_images=4, relax_masks=masks, paper_images=16, jpegs=1024, jpeg_batch=64)


def model_title(settings: Settings) -> str:
    """The classifier's name in case titles."""
    return "shapes CNN" if settings.tiny else "ResNet50"


def classifier(settings: Settings) -> nn.Module:
    """A random-init ResNet50 classifier; the small shapes CNN with ``--tiny``."""
    if not settings.tiny:
        return resnet50(settings.device)
    torch.manual_seed(0)
    return lu.load_model("shapes-supervised", weights=None).eval().to(settings.device)


def encoder(settings: Settings) -> nn.Module:
    """A random-init ResNet50 encoder ((B, 2048) out); the small shapes encoder with ``--tiny``."""
    if not settings.tiny:
        return resnet50_encoder(settings.device)
    torch.manual_seed(1)
    return lu.load_model("shapes-simclr", weights=None).eval().to(settings.device)


def six_pair_models(settings: Settings) -> dict[str, nn.Module]:
    """The paper's models by name (random init); shapes models under those names with ``--tiny``."""
    if not settings.tiny:
        return paper_models(settings.device)
    return {"resnet50": classifier(settings), "simclr": encoder(settings), "swav": encoder(settings)}


def bare_forward(model: nn.Module, x: Tensor, precision: str, compiled: bool = False) -> Callable[[], object]:
    """One forward of ``x`` as the explainers run it at ``precision`` (context, memory format), no hooks."""
    resolved = resolve_precision(precision, x.device)
    xp = memory_format(x, resolved)
    run = compiled_forward(model, resolved) if compiled else model

    def call() -> object:
        with torch.no_grad(), forward_context(resolved, x.device):
            return run(xp)

    return call


def _forward_contenders(settings: Settings) -> Contenders:
    size = sizes(settings)
    model = classifier(settings)
    x = images(size.batch, settings.device, size.side)
    return {
        "fp32 strict": bare_forward(model, x, "fp32"),
        "tf32": bare_forward(model, x, "tf32"),
        "bf16": bare_forward(model, x, "bf16"),
        "bf16 compiled": bare_forward(model, x, "bf16", compiled=True),
    }


def _explainer_contenders(precision: str, settings: Settings, notes: dict[str, object]) -> Contenders:
    size = sizes(settings)
    model = classifier(settings)
    x = images(size.batch, settings.device, size.side)
    made = {title: lu.explainer(name, model, precision=precision) for name, title in EXPLAINERS.items()}
    if precision != "fp32" and not settings.probe:
        for title, explainer in made.items():
            strict = lu.explainer(explainer.name, model, precision="fp32")(x)
            notes[f"{title}: max |map - strict fp32 map|"] = round((explainer(x) - strict).abs().max().item(), 5)
    return {"forward": bare_forward(model, x, precision), **{title: (lambda e=e: e(x)) for title, e in made.items()}}


def _relax_contenders(precision: str, settings: Settings, notes: dict[str, object]) -> Contenders:
    size = sizes(settings)
    enc = encoder(settings)
    x = images(size.relax_images, settings.device, size.side)
    masked = size.relax_images * size.relax_masks
    device = torch.device(settings.device)
    per_forward = masked_per_forward((size.side, size.side), masked, device.type, free_memory(device))
    notes["masked images per forward (device-sized)"] = per_forward
    batch = x[:1].expand(per_forward, -1, -1, -1).contiguous()
    passes = -(-masked // per_forward)

    def relax(**options: object) -> Callable[[], Tensor]:
        explainer = lu.RELAX(enc, n_masks=size.relax_masks, precision=precision, **options)
        return lambda: explainer(x)

    def repeated(forward: Callable[[], object]) -> Callable[[], None]:
        return lambda: [forward() for _ in range(passes)]

    contenders = {
        "RELAX": relax(),
        "RELAX, 64 per forward": relax(batch_size=64),
        "bare forward": repeated(bare_forward(enc, batch, precision)),
    }
    if precision == "bf16":
        contenders["RELAX compiled"] = relax(compile=True)
        contenders["bare forward, compiled"] = repeated(bare_forward(enc, batch, precision, compiled=True))
    return contenders


def _paper_contenders(settings: Settings) -> Contenders:
    size = sizes(settings)
    models = six_pair_models(settings)
    items = synthetic_items(size.paper_images, size.side)
    relax = {"relax": {"n_masks": size.relax_masks}}
    k = min(1000, size.side**2)

    def evaluate(precision: str, compile: bool = False) -> Callable[[], None]:  # noqa: A002
        options = {"precision": precision, "compile": compile, "explainer_kwargs": relax, "k": k}
        return lambda: run_evaluate(items, PAPER_PAIRS, models, settings, **options)

    return {
        "evaluate fp32": evaluate("fp32"),
        "evaluate tf32": evaluate("tf32"),
        "evaluate bf16": evaluate("bf16"),
        "evaluate bf16 compiled": evaluate("bf16", compile=True),
    }


def cases(settings: Settings) -> list[Case]:
    if not (settings.cuda or settings.tiny):
        return []
    size = sizes(settings)
    workers = max(2, default_workers(settings.device))
    notes: dict[str, dict[str, object]] = {name: {} for name in (*PRECISIONS, "relax-tf32", "relax-bf16")}
    result = [
        Case(
            id="gpu-forward",
            title=f"Bare forward ceilings, {model_title(settings)}, batch {size.batch}",
            build=lambda: _forward_contenders(settings),
            comparisons=[
                Comparison("fp32 strict", "tf32", "speed-up of TF32 over strict fp32", op=">="),
                Comparison("fp32 strict", "bf16", "speed-up of bf16 over strict fp32", op=">="),
                Comparison("bf16", "bf16 compiled", "speed-up of compile over eager bf16", op=">="),
            ],
            items=size.batch,
        )
    ]
    for precision in PRECISIONS:
        result.append(
            Case(
                id=f"gpu-explainers-{precision}",
                title=f"LaFAM, Grad-CAM, EigenCAM in {precision}, {model_title(settings)}, batch {size.batch}",
                build=lambda p=precision: _explainer_contenders(p, settings, notes[p]),
                comparisons=[
                    Comparison("forward", "LaFAM", "LaFAM images/s / the bare forward's", op=">="),
                    Comparison("forward", "Grad-CAM", "Grad-CAM images/s / the bare forward's", op=">="),
                    Comparison("LaFAM", "EigenCAM", "EigenCAM images/s / LaFAM's", EIGENCAM_SHARE_TARGET, ">="),
                ],
                items=size.batch,
                notes=notes[precision],
            )
        )
    for precision in ("tf32", "bf16"):
        relax_comparisons = [
            Comparison("bare forward", "RELAX", "RELAX masked forwards/s / the bare forward's", RELAX_SHARE_TARGET,
                       ">="),
            Comparison("RELAX, 64 per forward", "RELAX", "speed-up of device-sized batches over 64", op=">="),
        ]
        if precision == "bf16":
            relax_comparisons.append(Comparison("bare forward, compiled", "RELAX compiled",
                                          "compiled RELAX / compiled bare forward", RELAX_SHARE_TARGET, ">="))
        result.append(
            Case(
                id=f"gpu-relax-{precision}",
                title=f"RELAX in {precision}, {size.relax_masks} masks x {size.relax_images} images (per masked image)",
                build=lambda p=precision: _relax_contenders(p, settings, notes[f"relax-{p}"]),
                comparisons=relax_comparisons,
                items=size.relax_images * size.relax_masks,
                rounds=3,
                notes=notes[f"relax-{precision}"],
            )
        )
    result += [
        Case(
            id="gpu-paper",
            title=f"The paper's six pairs end to end (RELAX {size.relax_masks} masks), {size.paper_images} images",
            build=lambda: _paper_contenders(settings),
            comparisons=[
                Comparison("evaluate fp32", "evaluate tf32", "speed-up of TF32 over strict fp32", op=">="),
                Comparison("evaluate fp32", "evaluate bf16", "speed-up of bf16 over strict fp32", op=">="),
                Comparison("evaluate bf16", "evaluate bf16 compiled", "speed-up of compile in bf16", op=">="),
            ],
            items=size.paper_images,
            rounds=1,
            targets_note="targets: <= 0.25 s/image in bf16 and <= 0.2 compiled (VOC <= 3 min, ImageNet-S <= 45 min)",
            projections=PROJECTIONS,
        ),
        Case(
            id="gpu-jpeg",
            title=f"evaluate LaFAM + Grad-CAM (bf16) from {size.jpegs} JPEGs of {JPEG_SIZE[0]}x{JPEG_SIZE[1]}, "
                  f"batch {size.jpeg_batch}",
            build=lambda: jpeg_contenders(
                settings, classifier(settings), size.jpegs, size.jpeg_batch, size.side, workers
            ),
            comparisons=comparisons(workers),
            items=size.jpegs,
            rounds=1,
            targets_note="target: >= 1,500 images/s from JPEGs; the pool was started by the warm-up round",
        ),
    ]
    return result
