"""Figures: saliency overlays, ground-truth contours, the paper's figure grids, PNG + PDF files.

Maps are drawn over the image at their own resolution (a 7x7 layer map shows as 7x7 blocks, as
in the paper's figures) by stretching them over the image's extent; no resampling happens here.
``save_figure`` writes ``<name>.png`` and ``<name>.pdf`` under stable names and without
timestamps, so a rerun replaces the files and a byte-identical figure gives a clean diff.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from ..datasets.transforms import to_display

MAP_CMAP = "jet"
CONTOUR_COLOR = "white"
_FIGURE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _check_image(image: Tensor) -> None:
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"expected a normalised (3, H, W) image tensor, got {shape}")


def _check_plane(plane: Tensor, what: str) -> None:
    if not isinstance(plane, Tensor) or plane.ndim != 2:
        shape = tuple(plane.shape) if isinstance(plane, Tensor) else type(plane).__name__
        raise ValueError(f"expected a (h, w) {what} tensor, got {shape}")


def show_image(ax: Axes, image: Tensor) -> None:
    """Draw a normalised (3, H, W) image (ImageNet statistics undone) without axis ticks.

    Raises:
        ValueError: ``image`` is not a (3, H, W) tensor.
    """
    _check_image(image)
    ax.imshow(to_display(image))
    ax.set_xticks([])
    ax.set_yticks([])


def show_map(ax: Axes, saliency: Tensor, size: tuple[int, int], alpha: float = 0.5, cmap: str = MAP_CMAP) -> None:
    """Draw a (h, w) map in [0, 1] stretched over an image of ``size`` (H, W), blocks kept sharp.

    Raises:
        ValueError: ``saliency`` is not a (h, w) tensor.
    """
    _check_plane(saliency, "saliency map")
    height, width = size
    ax.imshow(
        saliency.detach().float().cpu().numpy(),
        cmap=cmap,
        vmin=0.0,
        vmax=1.0,
        alpha=alpha,
        interpolation="nearest",
        extent=(-0.5, width - 0.5, height - 0.5, -0.5),
    )


def draw_contour(ax: Axes, mask: Tensor, color: str = CONTOUR_COLOR, linewidth: float = 1.5) -> None:
    """Outline a boolean (H, W) mask; an empty or full mask has no outline and draws nothing.

    Raises:
        ValueError: ``mask`` is not a (H, W) tensor.
    """
    _check_plane(mask, "mask")
    plane = mask.detach().bool().cpu()
    if plane.any() and not plane.all():
        ax.contour(plane.float().numpy(), levels=[0.5], colors=[color], linewidths=linewidth)


def overlay(
    ax: Axes,
    image: Tensor,
    saliency: Tensor | None = None,
    mask: Tensor | None = None,
    alpha: float = 0.5,
    title: str | None = None,
) -> None:
    """The image, optionally a saliency map over it and the ground-truth mask as a contour.

    Args:
        ax: the axes to draw in.
        image: a normalised (3, H, W) image.
        saliency: a (h, w) map in [0, 1], stretched over the image.
        mask: a boolean (H, W) mask, drawn as its outline.
        alpha: the map's opacity.
        title: the axes' title.

    Raises:
        ValueError: ``image``, ``saliency`` or ``mask`` is not of the shape above.
    """
    show_image(ax, image)
    size = tuple(image.shape[-2:])
    if saliency is not None:
        show_map(ax, saliency, size, alpha)
    if mask is not None:
        if tuple(mask.shape) != size:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not match the image size {size}")
        draw_contour(ax, mask)
    if title is not None:
        ax.set_title(title, fontsize=9)


def saliency_grid(
    images: Tensor,
    columns: Mapping[str, Tensor],
    masks: Tensor | None = None,
    row_labels: Sequence[str] | None = None,
    alpha: float = 0.5,
    cell_size: float = 1.8,
) -> Figure:
    r"""The paper's Fig. 1-4 layout: one row per image; the original, then one column per map.

    Args:
        images: (N, 3, H, W) normalised images.
        columns: a column title (e.g. "ResNet50\nGrad-CAM") -> (N, h, w) maps.
        masks: (N, H, W) masks, drawn as contours on every cell.
        row_labels: N labels, left of each row.
        alpha: the maps' opacity.
        cell_size: the side of one cell in inches.

    Returns:
        The figure.

    Raises:
        ValueError: a shape or the number of row labels does not fit the N images.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    n_rows = images.shape[0]
    for title, maps in columns.items():
        if maps.ndim != 3 or maps.shape[0] != n_rows:
            raise ValueError(f"column {title!r}: expected ({n_rows}, h, w) maps, got {tuple(maps.shape)}")
    if masks is not None and tuple(masks.shape) != (n_rows, *images.shape[-2:]):
        raise ValueError(f"expected masks of shape {(n_rows, *images.shape[-2:])}, got {tuple(masks.shape)}")
    if row_labels is not None and len(row_labels) != n_rows:
        raise ValueError(f"expected {n_rows} row labels, got {len(row_labels)}")

    titles = ["Original", *columns]
    fig, axes = plt.subplots(
        n_rows, len(titles), figsize=(cell_size * len(titles), cell_size * n_rows), squeeze=False
    )
    for row in range(n_rows):
        mask = masks[row] if masks is not None else None
        overlay(axes[row, 0], images[row], mask=mask)
        for col, maps in enumerate(columns.values(), start=1):
            overlay(axes[row, col], images[row], maps[row], mask, alpha)
        if row_labels is not None:
            axes[row, 0].set_ylabel(row_labels[row], fontsize=8)
    for col, title in enumerate(titles):
        axes[0, col].set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def channel_grid(activations: Tensor, n_channels: int = 16, n_cols: int = 8, cell_size: float = 1.2) -> Figure:
    """The ``n_channels`` strongest (highest mean) channels of one image's (C, h, w) activations.

    Raises:
        ValueError: ``activations`` is not three-dimensional.
    """
    if activations.ndim != 3:
        raise ValueError(f"expected one image's activations of shape (C, h, w), got {tuple(activations.shape)}")
    n_channels = min(n_channels, activations.shape[0])
    strongest = activations.detach().mean(dim=(1, 2)).topk(n_channels).indices.tolist()
    n_rows = -(-n_channels // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell_size * n_cols, cell_size * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, channel in zip(axes.flat, strongest):
        ax.imshow(activations[channel].detach().float().cpu().numpy(), cmap="viridis", interpolation="nearest")
        ax.set_title(f"channel {channel}", fontsize=7)
    fig.tight_layout()
    return fig


def save_png(fig: Figure, path: str | Path, dpi: int = 100, png_colors: int | None = 256) -> Path:
    """Write ``fig`` to the PNG ``path``, reduced to an adaptive palette of ``png_colors`` colours
    (None keeps full RGB): a figure of noisy images shrinks about three times and looks the same.

    Raises:
        ValueError: ``png_colors`` is not None or in [2, 256].
    """
    if png_colors is not None and not 2 <= png_colors <= 256:
        raise ValueError(f"png_colors must lie in [2, 256] or be None, got {png_colors}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rendered = io.BytesIO()
    fig.savefig(rendered, format="png", dpi=dpi, bbox_inches="tight")
    image = Image.open(rendered).convert("RGB")
    if png_colors is not None:
        image = image.quantize(png_colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    image.save(path, optimize=True)
    return path


def save_figure(
    fig: Figure, name: str, folder: str | Path, dpi: int = 100, png_colors: int | None = 256
) -> tuple[Path, Path]:
    """Write ``folder/name.png`` (``save_png``) and ``folder/name.pdf`` (no timestamps) and return both paths.

    The PDF is the print version (images embedded at their own resolution, text as vectors); the
    PNG is for screens and the README.

    Returns:
        The PNG's and the PDF's paths.

    Raises:
        ValueError: ``name`` is not a plain file stem, or ``png_colors`` is not None or in [2, 256].
    """
    if not _FIGURE_NAME.match(name) or name.endswith((".png", ".pdf")):
        raise ValueError(f"figure name {name!r} must be a plain file stem such as 'fig1_qualitative'")
    folder = Path(folder)
    png = save_png(fig, folder / f"{name}.png", dpi, png_colors)
    pdf = folder / f"{name}.pdf"
    fig.savefig(pdf, bbox_inches="tight", metadata={"CreationDate": None, "Creator": None, "Producer": None})
    return png, pdf


__all__ = [
    "channel_grid",
    "draw_contour",
    "overlay",
    "saliency_grid",
    "save_figure",
    "save_png",
    "show_image",
    "show_map",
]
