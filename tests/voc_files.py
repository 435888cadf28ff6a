"""A small VOC 2012 tree in the official layout (JPEGImages, SegmentationClass palette PNGs, ImageSets), for
the tests."""

from pathlib import Path

import numpy as np
from PIL import Image

PALETTE = [v for i in range(256) for v in (i * 7 % 256, i * 13 % 256, i * 29 % 256)]


def rgb_image(height: int, width: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def photo_image(height: int, width: int, seed: int = 0) -> Image.Image:
    """A photo-like image: a smooth colour field (a coarse random grid upsampled) with mild noise."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (max(2, height // 20), max(2, width // 20), 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BILINEAR), dtype=np.int16)
    return Image.fromarray(np.clip(smooth + rng.integers(-10, 11, smooth.shape), 0, 255).astype(np.uint8))


def save_palette_png(labels: np.ndarray, path: Path) -> None:
    png = Image.fromarray(labels.astype(np.uint8), mode="P")
    png.putpalette(PALETTE)
    png.save(path)


def voc_labels(height: int, width: int, *objects: tuple[int, slice, slice]) -> np.ndarray:
    """Background with rectangles of class ids, each outlined by a 2-pixel void (255) border."""
    labels = np.zeros((height, width), np.uint8)
    for class_id, rows, cols in objects:
        labels[rows.start - 2 : rows.stop + 2, cols.start - 2 : cols.stop + 2] = 255
        labels[rows, cols] = class_id
    return labels


VOC_OBJECTS = {
    "2007_000001": (47, 61, [(1, slice(10, 30), slice(12, 40))]),  # aeroplane: paper subset
    "2007_000002": (64, 50, [(12, slice(5, 25), slice(5, 20)), (15, slice(35, 60), slice(25, 45))]),  # dog + person
    "2007_000003": (40, 40, [(5, slice(5, 30), slice(5, 30))]),  # bottle: excluded class
    "2007_000004": (33, 45, []),  # background and void only
    "2007_000005": (50, 70, [(8, slice(4, 20), slice(4, 30)), (12, slice(25, 45), slice(35, 65))]),  # cat + dog
    "2007_000006": (
        50,
        50,
        [(8, slice(4, 12), slice(4, 12)), (12, slice(20, 28), slice(4, 12)), (3, slice(35, 45), slice(35, 45))],
    ),
    "2007_000007": (37, 91, [(17, slice(8, 30), slice(50, 85))]),  # sheep: paper subset
}


def write_voc(root: Path, objects: dict = VOC_OBJECTS, split: str = "val", image=rgb_image) -> Path:
    """``objects`` (id -> (height, width, [(class id, rows, cols)])) as a VOC tree; ``image(height, width, seed)``
    makes the pictures (random pixels by default)."""
    voc = root / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    for seed, (item_id, (height, width, rects)) in enumerate(objects.items()):
        image(height, width, seed).save(voc / "JPEGImages" / f"{item_id}.jpg", quality=95)
        save_palette_png(voc_labels(height, width, *rects), voc / "SegmentationClass" / f"{item_id}.png")
    (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{i}\n" for i in objects))
    return voc
