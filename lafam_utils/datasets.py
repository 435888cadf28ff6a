"""PASCAL VOC 2012 and ImageNet-S (919 classes, validation) with the paper's subsets.

Each dataset first indexes its masks: one row per image with the object classes in the mask
(background and the ignore label left out), their pixel counts and the image's file. The index
reads every mask once and is cached next to the data (or, if that folder is read-only, in the
user cache dir); a file is read again only when its size or modification time changed, so a
second run rereads nothing and a changed dataset is noticed. A bad file (unreadable, truncated, wrong
format, mask without image) is skipped with a warning and listed in ``dataset.skipped``.

Items are dicts: ``"image"`` (3, size, size) float, ImageNet-normalised; ``"mask"`` (size, size)
bool, the pixels of the image's object classes; ``"masks"`` (n_classes, size, size) bool, one per
class in the order of ``"labels"`` (class names) and ``"label_ids"`` (the dataset's class ids);
``"id"``. Image and masks share the paper's geometry (``lafam_utils.transforms``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import stat
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from . import filters
from .transforms import IMAGE_SIZE, preprocess_image, preprocess_mask

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
"""VOC 2012 class names; the position is the class id in SegmentationClass masks."""
VOC_IGNORE = 255
IMAGENET_S_IGNORE = 1000
VAL_IMAGE = re.compile(r"(ILSVRC2012_val_\d{8})(?:_(n\d{8}))?\.(?:jpe?g|png)", re.IGNORECASE)
"""An ImageNet validation file name: the id, then optionally its wnid (as in the Hugging Face copy)."""
CACHE_VERSION = 2
RESOURCES = Path(__file__).with_name("resources")
UNREADABLE = (OSError, SyntaxError, ValueError)
"""What Pillow raises for a corrupt or truncated file."""

Subset = str | Callable[[pd.DataFrame], pd.DataFrame] | None


class DataFileError(ValueError):
    """A dataset file that cannot be used: the message names the file and what was expected."""


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


def _open_png(path: Path, modes: tuple[str, ...], what: str) -> np.ndarray:
    """Decode a PNG mask; raise DataFileError unless it is a readable PNG of one of ``modes``."""
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
    """(H, W) class ids of a VOC SegmentationClass PNG (palette or grayscale: 0..20, 255 void)."""
    return _open_png(path, ("P", "L"), "of class ids (VOC palette)")


def read_imagenet_s_labels(path: Path) -> np.ndarray:
    """(H, W) class ids of an ImageNet-S mask: id = R + 256 * G (0 background, 1000 ignore)."""
    rgb = _open_png(path, ("RGB", "RGBA"), "with class ids as R + 256 * G")
    return rgb[..., 0].astype(np.int32) + 256 * rgb[..., 1].astype(np.int32)


def _decoded_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image that decodes to its end; a truncated or corrupt file raises.

    JPEGs are decoded at 1/8 scale (``Image.draft``: the decoder still reads every coded block,
    so truncation is found, at about half the cost of a full decode)."""
    try:
        with Image.open(path) as image:
            size = image.size
            if image.format == "JPEG":
                image.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            image.load()
            return size
    except UNREADABLE as error:
        raise DataFileError(f"{path}: expected an image file that decodes, cannot decode it ({error})") from None


def _check_sizes(mask: Path | str, mask_size: tuple[int, int], image_size: tuple[int, int]) -> None:
    """Raise unless the mask has the image's (width, height), or its aspect ratio at another scale up
    to rounding (ImageNet-S stores the masks of very large images at 1000 pixels on the longer side)."""
    (mw, mh), (iw, ih) = mask_size, image_size
    rescaled = mw != iw and mh != ih and abs(mw * ih - iw * mh) <= max(iw, ih)
    if (mw, mh) != (iw, ih) and not rescaled:
        raise DataFileError(f"{mask}: expected a mask of the image's size {iw}x{ih} (or aspect ratio), got {mw}x{mh}")


def _load_image(path: Path, mask_size: tuple[int, int], mask: Path) -> Image.Image:
    """Decode an image to RGB (a truncated file fails here) and check it against its mask."""
    try:
        with Image.open(path) as file:
            image = file.convert("RGB")
    except UNREADABLE as error:
        raise DataFileError(f"{path}: expected an image file, cannot read it ({error})") from None
    _check_sizes(mask, mask_size, image.size)
    return image


def _stat(path: str) -> tuple[int, int] | None:
    """(size, mtime in ns) of a file, or None if there is no such file."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_size, status.st_mtime_ns) if stat.S_ISREG(status.st_mode) else None


class SegmentationDataset(Dataset):
    """Shared by VOC2012 and ImageNetS: the index table, its cache, subsets and items.

    Attributes: ``table`` (the selected images, one row per item), ``full_table`` (every usable
    image before the subset rule), ``skipped`` (file and reason of each file left out),
    ``class_names`` (position = class id).
    """

    subsets: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {}
    ignore: int
    item_columns: tuple[str, ...] = ()

    def __init__(
        self,
        entries: pd.DataFrame,
        subset: Subset,
        size: int,
        cache_files: Sequence[Path],
        read_labels: Callable[[Path], np.ndarray],
        class_names: Sequence[str],
    ) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        select = self._select(subset)
        self.size, self.read_labels, self.class_names = size, read_labels, tuple(class_names)
        rows = self._classify(_index(entries, self._read_facts, cache_files))
        ok = rows["error"] == ""
        self.skipped = rows.loc[~ok, ["id", "error"]].rename(columns={"error": "reason"}).reset_index(drop=True)
        self.full_table = self._describe(rows[ok].drop(columns="error"))
        self.table = select(self.full_table).reset_index(drop=True)
        if len(self.skipped):
            listed = "\n  ".join(self.skipped["reason"].head(10))
            more = f"\n  ... and {len(self.skipped) - 10} more" if len(self.skipped) > 10 else ""
            warnings.warn(
                f"{type(self).__name__}: skipped {len(self.skipped)} of {len(rows)} images (see .skipped):\n  {listed}{more}",
                stacklevel=3,
            )

    def _select(self, subset: Subset) -> Callable[[pd.DataFrame], pd.DataFrame]:
        if subset is None:
            return lambda table: table
        if callable(subset):
            return subset
        if subset not in self.subsets:
            raise ValueError(f"subset must be one of {[*self.subsets, None]} or a function of the index table, got {subset!r}")
        return self.subsets[subset]

    def _read_facts(self, mask: Path, image: Path) -> dict[str, Any]:
        """The label values in one mask, their pixel counts and its size; the image is decoded once to
        find truncated or corrupt files before a run does (the index's only reads)."""
        labels = self.read_labels(mask)
        _check_sizes(mask, labels.shape[::-1], _decoded_size(image))
        counts = np.bincount(labels.ravel())
        values = np.flatnonzero(counts)
        return {"values": values.tolist(), "pixels": counts[values].tolist(), "height": labels.shape[0], "width": labels.shape[1]}

    def _classify(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Object classes (``class_ids``, ``class_pixels``) from each mask's label values; a value
        that is neither a class, the background nor the ignore label makes the row an error."""
        class_ids, class_pixels, errors = [], [], []
        for values, pixels, mask, error in zip(rows["values"], rows["pixels"], rows["mask_path"], rows["error"]):
            histogram = dict(zip(map(int, values), map(int, pixels))) if not error else {}
            bad = [v for v in histogram if v >= len(self.class_names) and v != self.ignore]
            if bad:
                error = f"{mask}: expected class ids 0..{len(self.class_names) - 1} or {self.ignore} (ignore), got {bad}"
            objects = [v for v in histogram if 0 < v < len(self.class_names)]
            class_ids.append(tuple(objects))
            class_pixels.append(tuple(histogram[v] for v in objects))
            errors.append(error)
        return rows.drop(columns=["values", "pixels"]).assign(class_ids=class_ids, class_pixels=class_pixels, error=errors)

    def _describe(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The index table: ``dataset_idx`` (position among all entries), ``id``, ``labels`` (class
        names), file paths, ``class_ids``, ``class_pixels``, mask ``height`` and ``width``."""
        table = rows.astype({"height": int, "width": int})
        table.insert(2, "labels", table["class_ids"].map(lambda ids: tuple(self.class_names[i] for i in ids)))
        return table

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.table.iloc[index]
        mask_path = Path(row["mask_path"])
        labels = self.read_labels(mask_path)
        image = _load_image(Path(row["image_path"]), labels.shape[::-1], mask_path)
        labels = preprocess_mask(labels, self.size)
        ids = torch.tensor(row["class_ids"], dtype=labels.dtype).reshape(-1, 1, 1)
        masks = labels[None] == ids
        return {
            "image": preprocess_image(image, self.size),
            "mask": masks.any(dim=0),
            "masks": masks,
            "labels": row["labels"],
            "label_ids": row["class_ids"],
            "id": row["id"],
            **{column: row[column] for column in self.item_columns},
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images of {len(self.full_table)}, {len(self.skipped)} skipped)"


def _cache_files(data_dir: Path, name: str, cache_dir: str | Path | None) -> list[Path]:
    """Where the index may be cached: next to the data, else the user cache dir (first writable wins)."""
    file_name = f".lafam_index_v{CACHE_VERSION}_{name}.parquet"
    if cache_dir is not None:
        return [Path(cache_dir) / file_name]
    key = hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:16]
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lafam_utils" / f"{key}{file_name}"
    return [data_dir / file_name, user]


STAT_COLUMNS = ["mask_path", "mask_size", "mask_mtime", "image_path", "image_size", "image_mtime"]
FILE_STATS = ["mask_size", "mask_mtime", "image_size", "image_mtime"]
FACT_COLUMNS = ["values", "pixels", "height", "width", "error"]
NO_FACTS = {"values": [], "pixels": [], "height": 0, "width": 0}


def _read_cache(cache_files: Sequence[Path]) -> dict[tuple, dict[str, Any]]:
    """Cached rows keyed by the files' paths, sizes and mtimes; empty if there is no usable cache."""
    for path in cache_files:
        if path.is_file():
            try:
                cached = pd.read_parquet(path)
            except Exception as error:  # noqa: BLE001 - a broken cache is rebuilt, never fatal
                warnings.warn(f"ignoring the unreadable index cache {path} ({error}); rebuilding it", stacklevel=4)
                continue
            return {tuple(row[c] for c in STAT_COLUMNS): row for row in cached.to_dict("records")}
    return {}


def _write_cache(rows: pd.DataFrame, cache_files: Sequence[Path]) -> None:
    """Write the index atomically to the first writable place; if none is, keep it in memory only."""
    for path in cache_files:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            rows.to_parquet(temporary, index=False)
            os.replace(temporary, path)
            return
        except OSError:
            continue
    warnings.warn(f"cannot write the index cache to {[str(p) for p in cache_files]}; it is rebuilt next time", stacklevel=4)


def _index(entries: pd.DataFrame, read_facts: Callable[[Path, Path], dict], cache_files: Sequence[Path]) -> pd.DataFrame:
    """Facts of every entry (``id``, ``mask_path``, ``image_path`` and extra columns), from the cache
    where the files are unchanged, else read; a failure becomes the row's ``error``."""
    cached = _read_cache(cache_files)
    rows, to_read = [], []
    for entry in entries.to_dict("records"):
        mask, image = entry["mask_path"], entry["image_path"]
        mask_stat, image_stat = _stat(mask), _stat(image) if image else None
        if entry.get("error"):
            row = {**entry, **NO_FACTS}
        elif mask_stat is None:
            row = {**entry, **NO_FACTS, "error": f"{mask}: mask missing; expected it for the image {image or entry['id']}"}
        elif image_stat is None:
            expected = image or entry.get("expected_image", "its image")
            row = {**entry, **NO_FACTS, "error": f"{expected}: image missing; expected it for the mask {mask}"}
        else:
            key = (mask, *mask_stat, image, *image_stat)
            row = {**entry, **dict(zip(STAT_COLUMNS, key))}
            if key in cached:
                row |= {k: cached[key][k] for k in FACT_COLUMNS}
            else:
                to_read.append(row)
        rows.append(row)

    def read(row: dict) -> None:
        try:
            row |= read_facts(Path(row["mask_path"]), Path(row["image_path"])) | {"error": ""}
        except DataFileError as error:
            row |= NO_FACTS | {"error": str(error)}

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(read, to_read))
    table = pd.DataFrame(rows)
    table = table.reindex(columns=[*table.columns, *(c for c in STAT_COLUMNS if c not in table)])
    cacheable = table[table["mask_size"].notna()]
    if to_read or len(cacheable) != len(cached):
        _write_cache(cacheable[STAT_COLUMNS + FACT_COLUMNS].astype(dict.fromkeys(FILE_STATS, "int64")), cache_files)
    table = table.drop(columns=[c for c in (*FILE_STATS, "expected_image") if c in table])
    table.insert(0, "dataset_idx", range(len(table)))
    return table


def _missing(path: Path, what: str, layout: str) -> FileNotFoundError:
    return FileNotFoundError(f"{path} does not exist; expected {what}. Expected layout:\n{layout}")


VOC_LAYOUT = """  root/VOCdevkit/VOC2012/JPEGImages/<id>.jpg
  root/VOCdevkit/VOC2012/SegmentationClass/<id>.png   (palette PNG: 0 background, 1..20 classes, 255 void)
  root/VOCdevkit/VOC2012/ImageSets/Segmentation/<split>.txt   (one id per line)
(lafam_utils.datasets.VOC2012.download(root) fetches it)"""


class VOC2012(SegmentationDataset):
    """PASCAL VOC 2012 segmentation: ``VOC2012(root, split="val", subset="paper")``; root holds VOCdevkit/.

    ``subset``: ``"paper"`` (one class, not person/tvmonitor/sofa/pottedplant/diningtable/chair/
    bottle: 753 of the 1449 val images), ``"multi"`` (exactly two classes), ``None`` (all) or a
    function of the index table. Void pixels (255) count as background. ``class_names`` replaces
    the VOC names for VOC-format data with other classes (default: ``classes.txt`` beside
    ``ImageSets`` if present, else ``VOC_CLASSES``).
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
            hint = f" (root seems to be VOC2012 itself: pass its grandparent {root.parent.parent})" if (root / "ImageSets").is_dir() else ""
            raise _missing(voc, f"the VOC 2012 folder under root{hint}", VOC_LAYOUT)
        split_file = voc / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not split_file.is_file():
            found = sorted(p.stem for p in split_file.parent.glob("*.txt"))
            raise _missing(split_file, f"the list of the {split!r} split (splits found: {found or 'none'})", VOC_LAYOUT)
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
            class_names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()] if names_file.is_file() else VOC_CLASSES
        entries = pd.DataFrame(
            {
                "id": ids,
                "mask_path": [str(voc / "SegmentationClass" / f"{i}.png") for i in ids],
                "image_path": [str(voc / "JPEGImages" / f"{i}.jpg") for i in ids],
            }
        )
        self.root, self.split = root, split
        cache_files = _cache_files(voc, f"voc_{split}", cache_dir)
        super().__init__(entries, subset, size, cache_files, read_voc_labels, class_names)

    @staticmethod
    def download(root: str | Path) -> Path:
        """Download and extract PASCAL VOC 2012 trainval (2 GB) under ``root`` with torchvision; return the
        VOC2012 folder. Does nothing if the segmentation val split is already there."""
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


IMAGENET_S_LAYOUT = """  masks_root/validation-segmentation/<wnid>/ILSVRC2012_val_XXXXXXXX.png   (RGB: id = R + 256 * G)
  images_root/ILSVRC2012_val_XXXXXXXX.JPEG  or  images_root/<wnid>/ILSVRC2012_val_XXXXXXXX.JPEG"""


def _sorted_entries(folder: str | Path) -> list[os.DirEntry]:
    return sorted(os.scandir(folder), key=lambda entry: entry.name)


def find_imagenet_val_images(images_root: Path) -> dict[str, tuple[str, str]]:
    """ImageNet validation images under ``images_root``, flat or one folder deep: id -> (path, wnid),
    the wnid from the file name (``ILSVRC2012_val_00000001_n01751748.JPEG``) or the folder, else ""."""
    if not images_root.is_dir():
        raise _missing(images_root, "the folder of the ImageNet-1k validation images", IMAGENET_S_LAYOUT)
    found: dict[str, tuple[str, str]] = {}
    for entry in _sorted_entries(images_root):
        folder = entry.name if entry.is_dir() else ""
        for file in _sorted_entries(entry.path) if folder else [entry]:
            if match := VAL_IMAGE.fullmatch(file.name):
                found.setdefault(match[1], (file.path, match[2] or folder))
    if not found:
        raise FileNotFoundError(
            f"found no ILSVRC2012_val_*.JPEG under {images_root}; expected the ImageNet-1k validation images:\n{IMAGENET_S_LAYOUT}"
        )
    return found


class ImageNetS(SegmentationDataset):
    """ImageNet-S 919 validation masks with the ImageNet-1k validation images.

    ``ImageNetS(masks_root, images_root, subset="paper")``: ``subset`` ``"paper"`` (exactly one
    class id besides 0 and 1000: 11,294 of 12,419), ``"multi"`` (exactly two), ``None`` or a
    function of the index table. The mask of a class is the pixels with its id; ignore pixels
    (1000) count as background. Items also carry ``"wnid"`` and ``"imagenet_class"``, the image's
    ground-truth ImageNet-1k class (its index in torchvision's classifiers): from the image's file
    name (``ILSVRC2012_val_00000001_n01751748.JPEG``) or per-wnid folder where they give one, else
    from the mask's folder (which for five classes ImageNet-S merged is the merged class).
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
            raise _missing(segmentation, "the ImageNet-S validation masks under masks_root", IMAGENET_S_LAYOUT)
        images = find_imagenet_val_images(images_root)
        known = set(imagenet_wnids())
        rows = []
        folders = [entry for entry in _sorted_entries(segmentation) if entry.is_dir()]
        for folder, mask in ((f, m) for f in folders for m in _sorted_entries(f.path) if m.name.endswith(".png")):
            item_id = mask.name.removesuffix(".png")
            image, image_wnid = images.get(item_id, ("", ""))
            rows.append(
                {
                    "id": item_id,
                    "mask_path": mask.path,
                    "image_path": image,
                    "expected_image": os.path.join(images_root, f"{item_id}.JPEG"),
                    "wnid": image_wnid if image_wnid in known else folder.name,
                    "error": "" if folder.name in known else f"{mask.path}: expected it in a folder named by an ImageNet wnid, got {folder.name!r}",
                }
            )
        if not rows:
            raise FileNotFoundError(f"found no <wnid>/*.png masks in {segmentation}; expected:\n{IMAGENET_S_LAYOUT}")
        self.masks_root, self.images_root = masks_root, images_root
        index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
        class_names = ("background", *(imagenet_categories()[index[w]] for w in imagenet_s_wnids()))
        cache_files = _cache_files(masks_root, "imagenet_s", cache_dir)
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
    "VOC_CLASSES",
    "VOC_IGNORE",
    "DataFileError",
    "ImageNetS",
    "SegmentationDataset",
    "VOC2012",
    "find_imagenet_val_images",
    "imagenet_categories",
    "imagenet_s_wnids",
    "imagenet_wnids",
    "read_imagenet_s_labels",
    "read_voc_labels",
]
