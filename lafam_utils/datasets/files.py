"""Reading the datasets' files: PNG masks of class ids, images that must decode, file stats.

Every problem becomes a ``DataFileError`` naming the file and what was expected, so an index can
skip the file and report it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import torch
from PIL import Image

UNREADABLE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
"""What Pillow raises for a corrupt, truncated or implausibly large file."""


class DataFileError(ValueError):
    """A dataset file that cannot be used: the message names the file and what was expected."""


def open_png(path: Path, modes: tuple[str, ...], what: str) -> np.ndarray:
    """Decode a PNG mask, checking that it is a readable PNG of one of ``modes``.

    Args:
        path: the mask file.
        modes: the Pillow modes accepted ("P", "L", "RGB", ...).
        what: what the file should hold, for the error message.

    Returns:
        The pixels: a (H, W) array, or (H, W, C) for a colour mode.

    Raises:
        DataFileError: the file is unreadable, not a PNG, or of another mode.
    """
    try:
        with Image.open(path) as png:
            if png.format != "PNG":
                raise DataFileError(f"{path}: expected a PNG {what}, got {png.format} data")
            if png.mode not in modes:
                raise DataFileError(f"{path}: expected a PNG {what} of mode {' or '.join(modes)}, got mode {png.mode}")
            return np.array(png)
    except DataFileError:
        raise
    except UNREADABLE as error:
        raise DataFileError(f"{path}: expected a PNG {what}, cannot read it ({error})") from None


def read_voc_labels(path: Path) -> np.ndarray:
    """(H, W) class ids of a VOC SegmentationClass PNG (palette or grayscale: 0..20, 255 void).

    Raises:
        DataFileError: the file is not a readable palette or grayscale PNG.
    """
    return open_png(path, ("P", "L"), "of class ids (VOC palette)")


def read_imagenet_s_labels(path: Path) -> np.ndarray:
    """(H, W) class ids of an ImageNet-S mask: id = R + 256 * G (0 background, 1000 ignore).

    Raises:
        DataFileError: the file is not a readable RGB or RGBA PNG.
    """
    rgb = open_png(path, ("RGB", "RGBA"), "with class ids as R + 256 * G")
    return rgb[..., 0].astype(np.int32) + 256 * rgb[..., 1].astype(np.int32)


def decoded_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image that decodes to its end, so that a truncated or corrupt file is found.

    JPEGs are decoded at 1/8 scale (``Image.draft``: the decoder still reads every coded block,
    so truncation is found, at about half the cost of a full decode).

    Raises:
        DataFileError: the file does not decode (truncated, corrupt or implausibly large).
    """
    try:
        with Image.open(path) as image:
            size = image.size
            if image.format == "JPEG":
                image.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            image.load()
            return size
    except UNREADABLE as error:
        raise DataFileError(f"{path}: expected an image file that decodes, cannot decode it ({error})") from None


def check_sizes(mask: Path | str, mask_size: tuple[int, int], image_size: tuple[int, int]) -> None:
    """Check that a mask has its image's (width, height), or its aspect ratio at another scale up to rounding.

    ImageNet-S stores the masks of very large images at 1000 pixels on the longer side.

    Args:
        mask: the mask file, named in the error.
        mask_size: the mask's (width, height).
        image_size: the image's (width, height).

    Raises:
        DataFileError: the mask has neither the image's size nor its aspect ratio.
    """
    (mw, mh), (iw, ih) = mask_size, image_size
    rescaled = mw != iw and mh != ih and abs(mw * ih - iw * mh) <= max(iw, ih)
    if (mw, mh) != (iw, ih) and not rescaled:
        raise DataFileError(f"{mask}: expected a mask of the image's size {iw}x{ih} (or aspect ratio), got {mw}x{mh}")


def load_image(path: Path, mask_size: tuple[int, int], mask: Path) -> Image.Image:
    """Decode an image to RGB (a truncated file fails here) and check it against its mask.

    Args:
        path: the image file.
        mask_size: the mask's (width, height).
        mask: the mask file, named in the error.

    Returns:
        The RGB image.

    Raises:
        DataFileError: the image cannot be read, or does not fit the mask's size (``check_sizes``).
    """
    try:
        with Image.open(path) as file:
            image = file.convert("RGB")
    except UNREADABLE as error:
        raise DataFileError(f"{path}: expected an image file, cannot read it ({error})") from None
    check_sizes(mask, mask_size, image.size)
    return image


def read_encoded(path: Path, mask_size: tuple[int, int], mask: Path) -> torch.Tensor:
    """An image file's bytes, undecoded, with the size in its header checked against its mask.

    For decoding in batches later (``transforms.decode_images``); a file whose data is damaged
    past the header fails there.

    Args:
        path: the image file.
        mask_size: the mask's (width, height).
        mask: the mask file, named in the error.

    Returns:
        The file's bytes as a 1-D uint8 tensor.

    Raises:
        DataFileError: the file cannot be read or has no image header, or does not fit the mask's
            size (``check_sizes``).
    """
    try:
        with Image.open(path) as file:  # the header only
            size = file.size
        data = path.read_bytes()
    except UNREADABLE as error:
        raise DataFileError(f"{path}: expected an image file, cannot read it ({error})") from None
    check_sizes(mask, mask_size, size)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def file_stat(path: str) -> tuple[int, int] | None:
    """(size, mtime in ns) of a file, or None if there is no such file."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_size, status.st_mtime_ns) if stat.S_ISREG(status.st_mode) else None


def missing_file(path: Path, what: str, layout: str) -> FileNotFoundError:
    """The error for a missing dataset file or folder: what was expected, and the expected layout."""
    return FileNotFoundError(f"{path} does not exist; expected {what}. Expected layout:\n{layout}")


__all__ = [
    "DataFileError",
    "check_sizes",
    "decoded_size",
    "file_stat",
    "load_image",
    "missing_file",
    "open_png",
    "read_encoded",
    "read_imagenet_s_labels",
    "read_voc_labels",
]
