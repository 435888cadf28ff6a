"""PASCAL VOC 2012 segmentation (the paper's val subset: one object class, the excluded classes left out)."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .. import filters
from .files import missing_file, read_voc_labels
from .index_cache import cache_locations
from .segmentation import SegmentationDataset, Subset
from .transforms import IMAGE_SIZE

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
"""VOC 2012 class names; the position is the class id in SegmentationClass masks."""
VOC_IGNORE = 255


VOC_LAYOUT = """  root/VOCdevkit/VOC2012/JPEGImages/<id>.jpg
  root/VOCdevkit/VOC2012/SegmentationClass/<id>.png   (palette PNG: 0 background, 1..20 classes, 255 void)
  root/VOCdevkit/VOC2012/ImageSets/Segmentation/<split>.txt   (one id per line)
(lafam_utils.datasets.VOC2012.download(root) fetches it)"""


class VOC2012(SegmentationDataset):
    """PASCAL VOC 2012 segmentation, by default the paper's subset of the val split.

    Void pixels (255) count as background. An id that the split's list repeats is included once,
    with a warning.

    Args:
        root: the folder holding ``VOCdevkit/``.
        split: the list ``ImageSets/Segmentation/<split>.txt`` to read.
        subset: ``"paper"`` (one class, not person/tvmonitor/sofa/pottedplant/diningtable/chair/
            bottle: 753 of the 1449 val images), ``"multi"`` (exactly two classes), ``None`` (all)
            or a function of the index table.
        size: the side of the square images and masks.
        class_names: replaces the VOC names for VOC-format data with other classes (default:
            ``classes.txt`` beside ``ImageSets`` if present, else ``VOC_CLASSES``).
        cache_dir: where to cache the index (default: next to the data, else the user cache dir).

    Raises:
        FileNotFoundError: ``root/VOCdevkit/VOC2012`` or the split's list does not exist (the message
            shows the expected layout).
        ValueError: the split's list is empty, ``subset`` is not a known name, a function or None,
            or ``size`` is not a positive int.
    """

    subsets = {"paper": filters.voc_paper, "multi": filters.multi_object}
    ignore = VOC_IGNORE

    def __init__(
        self,
        root: str | Path,
        split: str = "val",
        subset: Subset = "paper",
        size: int = IMAGE_SIZE,
        class_names: Sequence[str] | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        root = Path(root)
        voc = root / "VOCdevkit" / "VOC2012"
        if not voc.is_dir():
            hint = (
                f" (root seems to be VOC2012 itself: pass its grandparent {root.parent.parent})"
                if (root / "ImageSets").is_dir()
                else ""
            )
            raise missing_file(voc, f"the VOC 2012 folder under root{hint}", VOC_LAYOUT)
        split_file = voc / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not split_file.is_file():
            found = sorted(p.stem for p in split_file.parent.glob("*.txt"))
            raise missing_file(
                split_file, f"the list of the {split!r} split (splits found: {found or 'none'})", VOC_LAYOUT
            )
        listed = split_file.read_text().split()
        if not listed:
            raise ValueError(f"{split_file} lists no image ids; expected one id per line")
        ids = list(dict.fromkeys(listed))
        if len(ids) < len(listed):
            repeated = sorted(i for i, count in Counter(listed).items() if count > 1)
            warnings.warn(
                f"{split_file} lists {len(listed) - len(ids)} id(s) more than once ({', '.join(repeated[:5])}"
                f"{', ...' if len(repeated) > 5 else ''}); each image is included once",
                stacklevel=2,
            )
        if class_names is None:
            names_file = voc / "classes.txt"
            class_names = (
                [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
                if names_file.is_file()
                else VOC_CLASSES
            )
        entries = pd.DataFrame(
            {
                "id": ids,
                "mask_path": [str(voc / "SegmentationClass" / f"{i}.png") for i in ids],
                "image_path": [str(voc / "JPEGImages" / f"{i}.jpg") for i in ids],
            }
        )
        self.root, self.split = root, split
        cache_files = cache_locations(voc, f"voc_{split}", cache_dir)
        super().__init__(entries, subset, size, cache_files, read_voc_labels, class_names)

    @staticmethod
    def download(root: str | Path) -> Path:
        """Download and extract PASCAL VOC 2012 trainval (2 GB) under ``root`` with torchvision.

        Does nothing if the segmentation val split is already there.

        Returns:
            The VOC2012 folder, ``root/VOCdevkit/VOC2012``.

        Raises:
            ConnectionError: the download fails (the message says where to get the file and where to extract it).
        """
        from torchvision.datasets import VOCSegmentation
        from torchvision.datasets.voc import DATASET_YEAR_DICT

        voc = Path(root) / "VOCdevkit" / "VOC2012"
        if (voc / "ImageSets" / "Segmentation" / "val.txt").is_file() and (voc / "SegmentationClass").is_dir():
            return voc
        url = DATASET_YEAR_DICT["2012"]["url"]
        try:
            VOCSegmentation(str(root), year="2012", image_set="val", download=True)
        except (OSError, RuntimeError) as error:
            raise ConnectionError(
                f"could not download PASCAL VOC 2012 from {url} ({error}). Download VOCtrainval_11-May-2012.tar "
                f"(from there or http://host.robots.ox.ac.uk/pascal/VOC/voc2012/) and extract it in {root}, so that "
                f"{voc} exists."
            ) from error
        return voc


__all__ = ["VOC2012", "VOC_CLASSES"]
