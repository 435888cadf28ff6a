"""ImageNet-S (919 classes, validation masks) with the ImageNet-1k validation images, and the paper's subset."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import pandas as pd

from .. import filters
from .files import missing_file, read_imagenet_s_labels
from .index_cache import cache_locations
from .segmentation import SegmentationDataset, Subset
from .transforms import IMAGE_SIZE

IMAGENET_S_IGNORE = 1000
VAL_IMAGE = re.compile(r"(ILSVRC2012_val_\d{8})(?:_(n\d{8}))?\.(?:jpe?g|png)", re.IGNORECASE)
"""An ImageNet validation file name: the id, then optionally its wnid (as in the Hugging Face copy)."""
RESOURCES = Path(__file__).resolve().parent.parent / "resources"


@functools.cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids; the position is the class index of torchvision's classifiers."""
    return tuple((RESOURCES / "imagenet_wnids.txt").read_text().split())


@functools.cache
def imagenet_s_wnids() -> tuple[str, ...]:
    """The 919 ImageNet-S wnids, sorted: wnid i - 1 is class id i in ImageNet-S masks.

    They are the ImageNet-1k wnids less the 81 ImageNet-S leaves out (76 dropped, 5 merged into
    another class), which ``resources/imagenet_s919_excluded_wnids.txt`` lists.
    """
    excluded = set((RESOURCES / "imagenet_s919_excluded_wnids.txt").read_text().split())
    return tuple(wnid for wnid in imagenet_wnids() if wnid not in excluded)


@functools.cache
def imagenet_categories() -> tuple[str, ...]:
    """ImageNet-1k class names in class-index order (torchvision's, available offline)."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


IMAGENET_S_LAYOUT = """  masks_root/validation-segmentation/<wnid>/ILSVRC2012_val_XXXXXXXX.png   (RGB: id = R + 256 * G)
  images_root/ILSVRC2012_val_XXXXXXXX.JPEG  or  images_root/<wnid>/ILSVRC2012_val_XXXXXXXX.JPEG"""


def sorted_entries(folder: str | Path) -> list[os.DirEntry]:
    """The entries of ``folder`` sorted by name, so the index's order does not depend on the file system."""
    return sorted(os.scandir(folder), key=lambda entry: entry.name)


def find_imagenet_val_images(images_root: Path) -> dict[str, tuple[str, str]]:
    """ImageNet validation images under ``images_root``, flat or one folder deep.

    Returns:
        Image id -> (path, wnid), the wnid from the file name (``ILSVRC2012_val_00000001_n01751748.JPEG``)
        or the folder, else "".

    Raises:
        FileNotFoundError: ``images_root`` is not a folder, or holds no ``ILSVRC2012_val_*`` image.
    """
    if not images_root.is_dir():
        raise missing_file(images_root, "the folder of the ImageNet-1k validation images", IMAGENET_S_LAYOUT)
    found: dict[str, tuple[str, str]] = {}
    for entry in sorted_entries(images_root):
        folder = entry.name if entry.is_dir() else ""
        for file in sorted_entries(entry.path) if folder else [entry]:
            if match := VAL_IMAGE.fullmatch(file.name):
                found.setdefault(match[1], (file.path, match[2] or folder))
    if not found:
        raise FileNotFoundError(
            f"found no ILSVRC2012_val_*.JPEG under {images_root}; expected the ImageNet-1k validation images:\n"
            f"{IMAGENET_S_LAYOUT}"
        )
    return found


class ImageNetS(SegmentationDataset):
    """ImageNet-S 919 validation masks with the ImageNet-1k validation images.

    The mask of a class is the pixels with its id; ignore pixels (1000) count as background. Items
    also carry ``"wnid"`` and ``"imagenet_class"``, the image's ground-truth ImageNet-1k class (its
    index in torchvision's classifiers): from the image's file name
    (``ILSVRC2012_val_00000001_n01751748.JPEG``) or per-wnid folder where they give one, else from
    the mask's folder (which for five classes ImageNet-S merged is the merged class).

    Args:
        masks_root: the folder holding ``validation-segmentation/<wnid>/*.png``.
        images_root: the folder of the ImageNet-1k validation images, flat or in per-wnid folders.
        subset: ``"paper"`` (exactly one class id besides 0 and 1000: 11,294 of 12,419), ``"multi"``
            (exactly two), ``None`` (all) or a function of the index table.
        size: the side of the square images and masks.
        cache_dir: where to cache the index (default: next to the masks, else the user cache dir).

    Raises:
        FileNotFoundError: the masks or the images folder is missing, or holds no masks or images.
        ValueError: ``subset`` is not a known name, a function or None, or ``size`` is not a positive int.
    """

    subsets = {"paper": filters.imagenet_s_paper, "multi": filters.multi_object}
    ignore = IMAGENET_S_IGNORE
    item_columns = ("wnid", "imagenet_class")

    def __init__(
        self,
        masks_root: str | Path,
        images_root: str | Path,
        subset: Subset = "paper",
        size: int = IMAGE_SIZE,
        cache_dir: str | Path | None = None,
    ) -> None:
        masks_root, images_root = Path(masks_root), Path(images_root)
        segmentation = masks_root / "validation-segmentation"
        if not segmentation.is_dir():
            raise missing_file(segmentation, "the ImageNet-S validation masks under masks_root", IMAGENET_S_LAYOUT)
        images = find_imagenet_val_images(images_root)
        known = set(imagenet_wnids())
        rows = []
        folders = [entry for entry in sorted_entries(segmentation) if entry.is_dir()]
        for folder, mask in ((f, m) for f in folders for m in sorted_entries(f.path) if m.name.endswith(".png")):
            item_id = mask.name.removesuffix(".png")
            image, image_wnid = images.get(item_id, ("", ""))
            rows.append(
                {
                    "id": item_id,
                    "mask_path": mask.path,
                    "image_path": image,
                    "expected_image": os.path.join(images_root, f"{item_id}.JPEG"),
                    "wnid": image_wnid if image_wnid in known else folder.name,
                    "error": "" if folder.name in known else (
                        f"{mask.path}: expected it in a folder named by an ImageNet wnid, got {folder.name!r}"
                    ),
                }
            )
        if not rows:
            raise FileNotFoundError(f"found no <wnid>/*.png masks in {segmentation}; expected:\n{IMAGENET_S_LAYOUT}")
        self.masks_root, self.images_root = masks_root, images_root
        index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
        class_names = ("background", *(imagenet_categories()[index[w]] for w in imagenet_s_wnids()))
        cache_files = cache_locations(masks_root, "imagenet_s", cache_dir)
        super().__init__(pd.DataFrame(rows), subset, size, cache_files, read_imagenet_s_labels, class_names)

    def _describe(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The shared index table plus ``wnid``, ``imagenet_class`` (index) and ``imagenet_label`` (name)."""
        table = super()._describe(rows)
        index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
        table["imagenet_class"] = table["wnid"].map(index).astype(int)
        table["imagenet_label"] = table["imagenet_class"].map(imagenet_categories().__getitem__)
        return table


__all__ = [
    "IMAGENET_S_IGNORE",
    "ImageNetS",
    "find_imagenet_val_images",
    "imagenet_categories",
    "imagenet_s_wnids",
    "imagenet_wnids",
]
