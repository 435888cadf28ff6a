"""RELAX (Wickstrøm et al.): explain an encoder's embedding by masking parts of the image.

A region matters when hiding it moves the embedding: for random keep-masks ``m``, the score
``s = cos(f(x), f(x * m))`` is averaged over the masks that kept each region.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..precision import Precision, memory_format
from ..progress import progress_bar
from .base import Explainer, Upsample
from .registry import register

Variant = Literal["paper", "original"]
DEFAULT_MASKS = {"paper": 2048, "original": 3000}
AUTO_BATCH_PIXELS = 64 * 224 * 224  # masked images per forward on the CPU: 64 at 224x224 (ResNet50: +0.9 GB)
CUDA_BATCH_PIXELS = 1024 * 224 * 224
"""Masked images per forward on CUDA when memory allows: 1,024 at 224x224, where a ResNet50 forward
on an H200 reached its bare throughput (64 per forward: 0.61x of it in bf16, 1,024: 0.98x)."""
CUDA_BYTES_PER_PIXEL = 512  # memory budgeted per masked pixel (a ResNet50 fp32 forward needs ~280)
CUDA_MEMORY_SHARE = 0.5  # share of the device's free memory the masked forwards may take
SIMILARITY_TOLERANCE = 1e-4
"""An image whose ``R`` varies by at most this share of its largest value (about 800 float32 steps
near 1; the running mean's rounding stays near 1e-7) is taken as unchanged by the masking: its map
is all zero, not float noise stretched to full contrast."""
WEIGHT_FLOOR = 1e-10  # the reference's initial sum of weights: a never-kept region scores 0, not NaN


@register
class RELAX(Explainer):
    """``R = sum_m s_m m / (sum_m m + eps)``, ``s_m = cos(f(x), f(x * m))``, then ``M = Up(N(R))``.

    ``variant="paper"`` (default, the LaFAM paper's setup): ``n_masks=2048`` Bernoulli(``p``)
    keep-masks on a ``cells`` x ``cells`` grid, nearest-upsampled; ``R`` lives on the grid.
    ``variant="original"`` (Wickstrøm et al.'s package ``relax-xai`` 0.0.5,
    ``relax_xai/masking_functions.py``): ``n_masks=3000`` grids upsampled bilinearly to the image,
    reflect-padded by ``cells // 2`` pixels on each side and cropped back to the image at a random
    shift of 0 to ``cells - 1`` pixels per axis (``original_masks``); ``R`` lives at the image's
    resolution. An image whose ``R`` is flat (its range at most
    ``SIMILARITY_TOLERANCE`` of its largest value) gets an all-zero map and a warning: the encoder
    ignored the masking, and min-max would stretch float noise to a full-contrast map.

    After each call ``importance`` (R), ``uncertainty`` (the masks' weighted variance of ``s``,
    ``sum_m m (s_m - R)^2 / sum_m m``, the RELAX paper's U) and ``u_relax`` (R where the
    uncertainty is at most its per-image median, else 0) hold the raw (B, h, w) maps. On the same
    masks ``importance`` equals ``relax-xai``'s running mean (the sum of weights starting at 1e-10);
    its ``uncertainty`` is the running sum ``sum_m m (s_m - R)^2`` without the division, i.e. this
    ``uncertainty`` times ``1e-10 + sum_m m`` (tests/explainers/test_relax.py); its masks come from
    the global torch generator on the image's device, here from ``seed`` on the CPU.

    The same ``seed`` gives the same masks and bit-identical maps; every image of a batch gets
    the same masks. ``batch_size`` masked images go through the encoder at once (None: sized for
    the device by ``masked_per_forward``: about 64 at 224x224 on the CPU, up to 1,024 on CUDA as
    free memory allows), several images' masks share a forward when ``n_masks`` fits; the maps do
    not depend on it beyond rounding. The unmasked images' reference embeddings come from one
    forward of the whole batch. With ``precision="bf16"`` the encoder runs under bf16 autocast;
    the cosine similarities and the statistics are float32. ``compile=True`` runs the masked
    forwards through ``torch.compile`` (the reference forward stays eager, as in a forward shared
    with other explainers). ``progress=True`` shows a bar and the compile time;
    ``on_progress(done, total)`` is called after each forward with the masked images done so far.
    The encoder maps (B, 3, H, W) images to (B, D) embeddings and should be in eval mode.

    Args:
        encoder: the network to explain, (B, 3, H, W) images -> (B, D) embeddings.
        n_masks: masks per image (None: 2048 for "paper", 3000 for "original").
        cells: the side of the masks' grid.
        p: the probability of keeping a cell, in (0, 1].
        batch_size: masked images per forward (None: ``masked_per_forward``).
        seed: the seed of the masks.
        progress: show a progress bar and the compile time.
        variant: ``"paper"`` or ``"original"``.
        upsample: the maps' upsampling, as for ``Explainer``.
        threshold: the maps' threshold, as for ``Explainer``.
        precision: the forwards' precision, as for ``Explainer``.
        on_progress: called as ``on_progress(done, total)`` after each forward.
        compile: compile the encoder's forward, as for ``Explainer``.

    Raises:
        ValueError: ``variant`` is unknown, ``n_masks``, ``cells`` or ``batch_size`` is not a
            positive integer, or ``p`` is outside (0, 1].
    """

    name = "relax"
    title = "RELAX"
    needs_layer = False

    def __init__(
        self,
        encoder: nn.Module,
        n_masks: int | None = None,
        cells: int = 7,
        p: float = 0.5,
        batch_size: int | None = None,
        seed: int = 0,
        progress: bool = False,
        variant: Variant = "paper",
        upsample: Upsample = "nearest",
        threshold: float | None = None,
        precision: Precision = "fp32",
        on_progress: Callable[[int, int], None] | None = None,
        compile: bool = False,  # noqa: A002 - the name torch uses
    ) -> None:
        super().__init__(
            encoder, layer=None, upsample=upsample, threshold=threshold, precision=precision, compile=compile
        )
        if variant not in DEFAULT_MASKS:
            raise ValueError(f"variant must be one of {tuple(DEFAULT_MASKS)}, got {variant!r}")
        n_masks = DEFAULT_MASKS[variant] if n_masks is None else n_masks
        check_positive_int("n_masks", n_masks)
        check_positive_int("cells", cells)
        if batch_size is not None:
            check_positive_int("batch_size", batch_size)
        if not 0.0 < p <= 1.0:
            raise ValueError(f"p (the probability of keeping a cell) must lie in (0, 1], got {p}")
        self.variant, self.n_masks, self.cells, self.p = variant, n_masks, cells, p
        self.batch_size, self.seed, self.progress = batch_size, seed, progress
        self.report_compile = progress
        self.on_progress = on_progress
        self.importance: Tensor | None = None
        self.uncertainty: Tensor | None = None
        self.u_relax: Tensor | None = None

    def sample_grids(self, size: tuple[int, int], device: torch.device) -> tuple[Tensor, Tensor]:
        """The (n_masks, cells, cells) keep-grids, then (n_masks, 2) row and column shifts in [0, cells).

        Drawn from ``torch.Generator().manual_seed(seed)`` on the CPU; the paper variant ignores the shifts.
        """
        generator = torch.Generator().manual_seed(self.seed)
        grids = (torch.rand(self.n_masks, self.cells, self.cells, generator=generator) < self.p).float()
        shifts = torch.stack([torch.randint(0, self.cells, (self.n_masks,), generator=generator) for _ in size], dim=1)
        return grids.to(device), shifts.to(device)

    def masks(self, grids: Tensor, shifts: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """(n, H, W) masks to multiply the image with, and the (n, h, w) weights to average over."""
        if self.variant == "paper":
            return F.interpolate(grids[:, None], size=size, mode="nearest")[:, 0], grids
        masks = original_masks(grids, shifts, size)
        return masks, masks

    def embed(self, images: Tensor, compiled: bool = False) -> Tensor:
        """The encoder's (B, D) embeddings of ``images`` in float32.

        Args:
            images: (B, 3, H, W) images.
            compiled: from ``whole_forward`` (compiled with ``compile=True``).

        Raises:
            ValueError: the encoder's output is not (B, D) embeddings.
        """
        output = self.whole_forward(images) if compiled else self.model(images)
        return self.as_embeddings(output, len(images))

    @staticmethod
    def as_embeddings(embeddings: object, count: int) -> Tensor:
        """The encoder's output checked to be (count, D) embeddings, in float32.

        Raises:
            ValueError: ``embeddings`` is not a (count, D) tensor.
        """
        if not isinstance(embeddings, Tensor) or embeddings.ndim != 2 or len(embeddings) != count:
            shape = tuple(embeddings.shape) if isinstance(embeddings, Tensor) else type(embeddings).__name__
            raise ValueError(f"RELAX needs an encoder returning (B, D) embeddings for {count} images, got {shape}")
        return embeddings.detach().float()

    def layer_maps(self, x: Tensor) -> Tensor:
        with torch.no_grad(), self.forward_context(x):
            reference = self.embed(x)
        return self.from_reference(x, reference)

    def from_reference(self, x: Tensor, reference: Tensor) -> Tensor:
        """Raw maps of ``x`` given the (B, D) embeddings of the unmasked images.

        The reference embeddings come from one forward of the whole batch; a forward shared with
        other explainers of the same encoder (``lafam_utils.explainers.shared_forward``) passes its output here.

        Args:
            x: (B, 3, H, W) images, in this precision's memory format.
            reference: (B, D) float32 embeddings of the unmasked images.

        Returns:
            The (B, h, w) importance ``R`` (h, w: the grid for "paper", the image for "original");
            ``importance``, ``uncertainty`` and ``u_relax`` are set.
        """
        size = tuple(x.shape[-2:])
        precision = self.resolved_precision(x.device)
        grids, shifts = self.sample_grids(size, x.device)
        per_forward = self.batch_size
        if per_forward is None:
            per_forward = masked_per_forward(size, len(x) * self.n_masks, x.device.type, free_memory(x.device))
        masks_per_forward = min(self.n_masks, per_forward)
        images_per_forward = max(1, per_forward // self.n_masks)
        resolution = (self.cells, self.cells) if self.variant == "paper" else size
        importance, uncertainty = [], []
        done, total = 0, len(x) * self.n_masks
        bar = progress_bar(total=total, desc="RELAX", unit="mask", disable=not self.progress)
        with torch.no_grad(), bar:
            for images, references in zip(x.split(images_per_forward), reference.split(images_per_forward)):
                weight = torch.full(resolution, WEIGHT_FLOOR, device=x.device)
                mean = spread = torch.zeros(len(images), *resolution, device=x.device)
                for start in range(0, self.n_masks, masks_per_forward):
                    stop = start + masks_per_forward
                    image_masks, weights = self.masks(grids[start:stop], shifts[start:stop], size)
                    masked = (images[:, None] * image_masks[None, :, None].to(images.dtype)).flatten(0, 1)
                    with self.forward_context(x):
                        embeddings = self.embed(memory_format(masked, precision), compiled=True)
                    embeddings = embeddings.view(len(images), len(weights), -1)
                    scores = F.cosine_similarity(references[:, None], embeddings, dim=2)
                    weight, mean, spread = weighted_update(weight, mean, spread, scores, weights)
                    done += scores.numel()
                    bar.update(scores.numel())
                    if self.on_progress is not None:
                        self.on_progress(done, total)
                importance.append(mean)
                uncertainty.append(spread / weight)
        self.importance, self.uncertainty = torch.cat(importance), torch.cat(uncertainty)
        unchanged = unchanged_by_masking(self.importance)
        if unchanged.any():
            self.importance = self.importance * ~unchanged[:, None, None]
            warnings.warn(
                f"RELAX: the encoder's embedding of image(s) {unchanged.nonzero().flatten().tolist()} did not "
                f"change under masking (R flat within a relative {SIMILARITY_TOLERANCE:g}); their maps are all zero",
                stacklevel=3,
            )
        median = self.uncertainty.flatten(1).median(dim=1).values
        self.u_relax = self.importance * (self.uncertainty <= median[:, None, None])
        return self.importance


def original_masks(grids: Tensor, shifts: Tensor, size: tuple[int, int]) -> Tensor:
    """relax-xai 0.0.5's smooth masks: grids upsampled to the image, reflect-padded, cropped at a shift.

    Each (cells, cells) grid is resized bilinearly (``align_corners=False``) to ``size``,
    reflect-padded by ``cells // 2`` pixels on every side, and the ``size`` window starting at its
    (row, column) shift is kept.

    Args:
        grids: (n, cells, cells) keep-grids of 0 and 1.
        shifts: (n, 2) row and column shifts, each in [0, cells).
        size: the images' (H, W).

    Returns:
        The (n, H, W) masks, in [0, 1].

    Raises:
        ValueError: the images are not larger than the padding (reflection needs it).
    """
    pad = grids.shape[-1] // 2
    if pad >= min(size):
        raise ValueError(
            f"RELAX variant='original' reflect-pads its masks by cells // 2 = {pad} pixels, which needs images "
            f"larger than that; got images of size {tuple(size)}"
        )
    smooth = F.interpolate(grids[:, None], size=size, mode="bilinear", align_corners=False)
    padded = F.pad(smooth, (pad, pad, pad, pad), mode="reflect")[:, 0]
    rows = shifts[:, :1] + torch.arange(size[0], device=grids.device)
    cols = shifts[:, 1:] + torch.arange(size[1], device=grids.device)
    index = torch.arange(len(grids), device=grids.device)[:, None, None]
    return padded[index, rows[:, :, None], cols[:, None, :]]


def masked_per_forward(size: tuple[int, int], n_masked: int, device_type: str, free_bytes: int | None = None) -> int:
    """How many masked images RELAX sends through the encoder at once when ``batch_size`` is None.

    CPU (and any device but CUDA): ``AUTO_BATCH_PIXELS`` worth of images (64 at 224x224). CUDA:
    ``CUDA_BATCH_PIXELS`` worth (1,024 at 224x224, what a large card needs to reach the bare
    forward's throughput), fewer where ``CUDA_MEMORY_SHARE`` of ``free_bytes`` holds less at
    ``CUDA_BYTES_PER_PIXEL``. Never more than ``n_masked`` (masks times images), never fewer than 1.

    Args:
        size: the images' (H, W).
        n_masked: masked images in the whole call (``n_masks`` times the number of images).
        device_type: ``"cuda"``, ``"cpu"``, ...
        free_bytes: the CUDA device's free memory (``torch.cuda.mem_get_info``); ignored elsewhere.

    Returns:
        The number of masked images per forward.
    """
    pixels = size[0] * size[1]
    if device_type == "cuda":
        fitting = int((free_bytes or 0) * CUDA_MEMORY_SHARE) // (CUDA_BYTES_PER_PIXEL * pixels)
        per_forward = min(CUDA_BATCH_PIXELS // pixels, fitting)
    else:
        per_forward = AUTO_BATCH_PIXELS // pixels
    return max(1, min(per_forward, n_masked))


def free_memory(device: torch.device) -> int | None:
    """Bytes a CUDA ``device`` can still give; None for other devices.

    Free in the driver (``torch.cuda.mem_get_info``) plus what PyTorch's caching allocator holds unused.
    """
    if device.type != "cuda":
        return None
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return torch.cuda.mem_get_info(device)[0] + cached


def unchanged_by_masking(importance: Tensor) -> Tensor:
    """(B,) whether each image's (B, h, w) ``R`` is flat, i.e. unchanged by the masking up to float noise.

    Flat: its range is at most ``SIMILARITY_TOLERANCE`` times its largest absolute value.
    """
    flat = importance.flatten(1)
    span = flat.amax(dim=1) - flat.amin(dim=1)
    return span <= SIMILARITY_TOLERANCE * flat.abs().amax(dim=1)


def check_positive_int(name: str, value: object) -> None:
    """Raise a clear error unless ``value`` (the argument ``name``) is a positive int.

    Raises:
        ValueError: ``value`` is a bool, not an int, or below 1.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def weighted_update(
    weight: Tensor, mean: Tensor, spread: Tensor, scores: Tensor, masks: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Add n masks (n, h, w) with scores (b, n) to running weighted statistics (West's algorithm).

    Stable in float32, exact for any chunking of the masks.

    Args:
        weight: (h, w) the sum of masks so far.
        mean: (b, h, w) the weighted mean score so far.
        spread: (b, h, w) the weighted sum of squared deviations so far.
        scores: (b, n) the new masks' scores.
        masks: (n, h, w) the new masks.

    Returns:
        The updated ``(weight, mean, spread)``.
    """
    scores = scores[:, :, None, None]
    new_weight = weight + masks.sum(dim=0)
    new_mean = mean + ((scores - mean[:, None]) * masks).sum(dim=1) / new_weight
    spread = spread + ((scores - mean[:, None]) * (scores - new_mean[:, None]) * masks).sum(dim=1)
    return new_weight, new_mean, spread
