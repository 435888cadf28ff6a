"""A synthetic shapes benchmark with exact masks: the embedded default that needs no download.

Each image shows objects from ``SHAPE_CLASSES`` (random colour, size, position, rotation) on a
smooth textured background with pixel noise. Masks are exact: an object's mask is the set of
pixels painted in its colour (pixel centres inside the shape, no anti-aliasing), minus what a
later object or occluder covers. Item ``i`` is computed from ``(seed, split, i)`` alone, so any
number of images is available without storing them. ``item(i, background=b)`` renders the same
objects on an independent background (texture and noise drawn from ``(seed, split, i, b)``), and
``item(i, colours=c)`` paints them in independent colours (drawn from ``(seed, split, i, c)``), so
two views of one scene can share the objects' geometry and nothing else.

Splits:
- ``"single"``: one object (radius 14-30 % of the image side), for the localisation metrics.
- ``"multi"``: two objects of distinct classes, one in each half of the image, never overlapping.
- ``"hard"``: one object in a case where a supervised classifier tends to fail, cycling by index
  through ``"small"`` (radius 5-9 %), ``"occluded"`` (a bar painted across it) and
  ``"distractors"`` (3-5 elongated ellipses and bars of random colours, of no class).

``write_voc`` writes a dataset in the PASCAL VOC layout so a VOC loader reads it unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..datasets.transforms import IMAGENET_MEAN, IMAGENET_STD

SHAPE_CLASSES = ("disc", "square", "triangle", "star", "ring", "cross")
Split = Literal["single", "multi", "hard"]
SPLITS: tuple[str, ...] = ("single", "multi", "hard")
HARD_CASES = ("small", "occluded", "distractors")
DISTRACTOR = "distractor"
BACKGROUND_ID, VOID_ID = 0, 255
_MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)[:, None, None]
_STD = np.array(IMAGENET_STD, dtype=np.float32)[:, None, None]
MIN_RADIUS = 3.0  # pixels: keeps the smallest objects visible in small images


@dataclass(frozen=True)
class Shape:
    """One drawn shape: its kind (a class name or ``"distractor"``), geometry in pixels, RGB colour.

    Attributes:
        kind: a name of ``SHAPE_CLASSES`` or ``"distractor"``.
        center: (x, y) in pixels.
        radius: the circumradius in pixels.
        angle: the rotation in radians.
        color: RGB in [0, 1].
        aspect: stretches the distractors (ellipses and bars).
        bar: a distractor is a bar, not an ellipse.
    """

    kind: str
    center: tuple[float, float]
    radius: float
    angle: float
    color: tuple[float, float, float]
    aspect: float = 1.0
    bar: bool = False


@lru_cache(maxsize=8)
def _pixel_centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    centres = np.arange(size, dtype=np.float32) + 0.5
    return centres[None, :], centres[:, None]


def _star(u: np.ndarray, v: np.ndarray, points: int = 5, inner: float = 0.45) -> np.ndarray:
    """Inside a star polygon of circumradius 1: fold the angle onto one edge and test its side."""
    sector = 2 * math.pi / points
    angle = np.arctan2(v, u) % sector
    angle = np.minimum(angle, sector - angle)
    rho = np.sqrt(u * u + v * v)
    px, py = rho * np.cos(angle), rho * np.sin(angle)
    ix, iy = inner * math.cos(sector / 2), inner * math.sin(sector / 2)
    # the origin lies on the positive side of the edge from the tip (1, 0) to the inner vertex
    return (ix - 1) * py - iy * (px - 1) >= 0


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside an equilateral triangle of circumradius 1 (inradius 1/2)."""
    normals = [-math.pi / 2 + 2 * math.pi * k / 3 for k in range(3)]
    return np.logical_and.reduce([u * math.cos(a) + v * math.sin(a) <= 0.5 for a in normals])


def shape_mask(shape: Shape, size: int) -> np.ndarray:
    """The exact (size, size) bool mask of ``shape``: pixels whose centre lies inside it.

    Raises:
        ValueError: ``shape.kind`` is neither a class of ``SHAPE_CLASSES`` nor ``"distractor"``.
    """
    x, y = _pixel_centres(size)
    cos, sin = math.cos(shape.angle), math.sin(shape.angle)
    dx, dy = x - shape.center[0], y - shape.center[1]
    u = (dx * cos + dy * sin) / shape.radius
    v = (-dx * sin + dy * cos) / shape.radius
    kind = shape.kind
    if kind == DISTRACTOR:
        v = v * shape.aspect
        return (np.abs(u) <= 1) & (np.abs(v) <= 1) if shape.bar else u * u + v * v <= 1
    if kind == "disc":
        return u * u + v * v <= 1
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.7
    if kind == "triangle":
        return _triangle(u, v)
    if kind == "star":
        return _star(u, v)
    if kind == "ring":
        rr = u * u + v * v
        return (rr <= 1) & (rr >= 0.55**2)
    if kind == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.3) & (av <= 0.9)) | ((av <= 0.3) & (au <= 0.9))
    raise ValueError(f"unknown shape {kind!r}; expected one of {SHAPE_CLASSES + (DISTRACTOR,)}")


def _vivid_color(rng: np.random.Generator) -> tuple[float, float, float]:
    """A saturated, bright RGB colour (HSV with S, V in [0.6, 1]), so objects stand out."""
    hue, sat, val = rng.uniform(0, 1), rng.uniform(0.6, 1), rng.uniform(0.6, 1)
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6) % 6
    rgb = val - val * sat * np.clip(np.minimum(k, 4 - k), 0, 1)
    return tuple(float(c) for c in rgb)


def _background(rng: np.random.Generator, size: int, waves: int = 6) -> np.ndarray:
    """A muted smooth (3, size, size) texture: a grey level plus random low-frequency colour waves.

    Each wave cos(fx x + fy y + p) is separable, so the texture is two small matrix products.
    """
    centres = (np.arange(size) + 0.5) * (2 * math.pi / size)
    fx, fy = rng.uniform(-4, 4, (2, waves, 1))
    phase, amplitude = rng.uniform(0, 2 * math.pi, (waves, 1)), rng.uniform(-0.08, 0.08, (3, waves, 1))
    along_x, along_y = fx * centres + phase, fy * centres
    texture = (amplitude * np.cos(along_y)).transpose(0, 2, 1) @ np.cos(along_x)
    texture -= (amplitude * np.sin(along_y)).transpose(0, 2, 1) @ np.sin(along_x)
    return np.clip(rng.uniform(0.25, 0.6) + texture, 0, 1).astype(np.float32)


class SyntheticShapes(Dataset):
    """``n`` synthetic images of one split; ``item = ds[i]`` is built from ``(seed, split, i)``.

    Items have the VOC / ImageNet-S form: ``"image"`` (3, size, size) float, ImageNet-normalised;
    ``"mask"`` (size, size) bool, the union of the objects; ``"masks"`` (n_objects, size, size)
    bool, each object's visible pixels; ``"labels"`` class names; ``"label_ids"`` their indices
    in ``SHAPE_CLASSES`` (= the supervised model's logit indices); ``"id"``; ``"case"`` (the
    split's name, or the hard case).

    Args:
        n: the number of images.
        split: ``"single"``, ``"multi"`` or ``"hard"`` (see the module docstring).
        seed: with ``split`` and the index, determines each image.
        size: the images' side in pixels.
        noise: the std of the Gaussian pixel noise.

    Raises:
        ValueError: ``split`` is unknown, ``n`` or ``seed`` is not a non-negative int, ``size`` is
            not an int >= 32, or ``noise`` is negative.
    """

    class_names = SHAPE_CLASSES

    def __init__(self, n: int = 256, split: Split = "single", seed: int = 0, size: int = 224, noise: float = 0.04):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        if not isinstance(size, int) or size < 32:
            raise ValueError(f"size must be an int >= 32 pixels, got {size!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.n, self.split, self.seed, self.size, self.noise = n, split, seed, size, noise

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return (
            f"SyntheticShapes(n={self.n}, split={self.split!r}, seed={self.seed}, size={self.size}, noise={self.noise})"
        )

    def _rng(self, index: int) -> np.random.Generator:
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} images")
        return np.random.default_rng([self.seed, SPLITS.index(self.split), index])

    def item_id(self, index: int) -> str:
        """The image id of item ``index``, unique across splits and seeds."""
        return f"shapes_{self.split}_{self.seed}_{index:06d}"

    def case(self, index: int) -> str:
        """The split name, or for ``"hard"`` the case of item ``index``: small, occluded, distractors."""
        return HARD_CASES[index % len(HARD_CASES)] if self.split == "hard" else self.split

    def scene(self, index: int) -> tuple[list[Shape], np.random.Generator]:
        """The shapes of item ``index`` in painting order, and the generator for its textures.

        Raises:
            IndexError: ``index`` is not in [0, n).
        """
        rng = self._rng(index)
        s, case = self.size, self.case(index)

        def place(kind: str, r_low: float, r_high: float, box: tuple[float, float, float, float]) -> Shape:
            radius = max(rng.uniform(r_low, r_high) * s, MIN_RADIUS)
            x0, y0, x1, y1 = (c * s for c in box)
            center = (rng.uniform(x0 + radius, x1 - radius), rng.uniform(y0 + radius, y1 - radius))
            return Shape(kind, center, radius, rng.uniform(0, 2 * math.pi), _vivid_color(rng))

        if self.split == "multi":
            kinds = rng.choice(len(SHAPE_CLASSES), size=2, replace=False)
            halves = [(0, 0, 0.5, 1), (0.5, 0, 1, 1)] if rng.uniform() < 0.5 else [(0, 0, 1, 0.5), (0, 0.5, 1, 1)]
            return [place(SHAPE_CLASSES[k], 0.1, 0.2, half) for k, half in zip(kinds, halves)], rng
        kind = SHAPE_CLASSES[rng.integers(len(SHAPE_CLASSES))]
        if case == "single":
            return [place(kind, 0.14, 0.3, (0, 0, 1, 1))], rng
        if case == "small":
            return [place(kind, 0.05, 0.09, (0, 0, 1, 1))], rng
        if case == "occluded":
            obj = place(kind, 0.16, 0.26, (0, 0, 1, 1))
            bar_angle = rng.uniform(0, math.pi)
            offset = rng.uniform(0.25, 0.55) * obj.radius * rng.choice([-1, 1])
            center = (obj.center[0] - offset * math.sin(bar_angle), obj.center[1] + offset * math.cos(bar_angle))
            half_width = rng.uniform(0.15, 0.25) * obj.radius
            bar = Shape(
                DISTRACTOR, center, 2 * obj.radius, bar_angle, _vivid_color(rng), 2 * obj.radius / half_width, True
            )
            return [obj, bar], rng
        distractors = [
            Shape(DISTRACTOR, (rng.uniform(0, s), rng.uniform(0, s)), rng.uniform(0.06, 0.16) * s,
                  rng.uniform(0, 2 * math.pi), _vivid_color(rng), rng.uniform(2.5, 5), bool(rng.integers(2)))
            for _ in range(rng.integers(3, 6))
        ]
        return distractors + [place(kind, 0.1, 0.18, (0, 0, 1, 1))], rng

    def render(
        self, index: int, background: int | None = None, colours: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, list[Shape]]:
        """Item ``index`` before normalisation, with its owner map and its class objects.

        Args:
            index: the item.
            background: None draws the texture and noise from the scene's own generator (the
                dataset's image); an int ``b >= 0`` draws them from ``(seed, split, index, 1, b)``
                instead: the same objects on a background that says nothing about the item or another ``b``.
            colours: None keeps the scene's colours; an int ``c >= 0`` repaints every shape in a
                colour drawn from ``(seed, split, index, 2, c)``: same geometry, independent colours.

        Returns:
            The (3, size, size) image in [0, 1]; the (size, size) int64 owner map (object number in
            painting order among the class objects, -1 background, -2 distractor); the class objects.

        Raises:
            ValueError: ``background`` or ``colours`` is neither None nor a non-negative int.
            IndexError: ``index`` is not in [0, n).
        """
        for name, value in (("background", background), ("colours", colours)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be None or a non-negative int, got {value!r}")
        shapes, rng = self.scene(index)
        if colours is not None:
            palette = np.random.default_rng([self.seed, SPLITS.index(self.split), index, 2, colours])
            shapes = [replace(sh, color=_vivid_color(palette)) for sh in shapes]
        if background is not None:
            rng = np.random.default_rng([self.seed, SPLITS.index(self.split), index, 1, background])
        image = _background(rng, self.size)
        owner = np.full((self.size, self.size), -1, dtype=np.int64)
        objects = [sh for sh in shapes if sh.kind != DISTRACTOR]
        for sh in shapes:
            inside = shape_mask(sh, self.size)
            image[:, inside] = np.asarray(sh.color, dtype=np.float32)[:, None]
            owner[inside] = objects.index(sh) if sh.kind != DISTRACTOR else -2
        if self.noise:
            image += self.noise * rng.standard_normal(image.shape, dtype=np.float32)
        return np.clip(image, 0, 1), owner, objects

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.item(index)

    def item(self, index: int, background: int | None = None, colours: int | None = None) -> dict[str, Any]:
        """Item ``index`` (``ds[index]``), or its objects on background ``b`` / in colours ``c`` (see ``render``).

        Raises:
            ValueError: ``background`` or ``colours`` is neither None nor a non-negative int.
            IndexError: ``index`` is not in [0, n).
        """
        image, owner, objects = self.render(index, background, colours)
        image = (image - _MEAN) / _STD
        return {
            "image": torch.from_numpy(image),
            "mask": torch.from_numpy(owner >= 0),
            "masks": torch.from_numpy(owner == np.arange(len(objects))[:, None, None]),
            "labels": tuple(o.kind for o in objects),
            "label_ids": tuple(SHAPE_CLASSES.index(o.kind) for o in objects),
            "id": self.item_id(index),
            "case": self.case(index),
        }


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map (256 RGB entries, flattened) used by its palette PNGs."""
    palette = []
    for label in range(256):
        rgb, c = [0, 0, 0], label
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((c >> channel) & 1) << (7 - bit)
            c >>= 3
        palette += rgb
    return palette


def write_voc(dataset: SyntheticShapes, root: str | Path, image_set: str = "val") -> Path:
    """Write ``dataset`` under ``root/VOCdevkit/VOC2012`` in the PASCAL VOC layout; return that folder.

    JPEGImages/<id>.jpg; SegmentationClass/<id>.png (palette PNG: 0 background, 1..6 the classes
    of ``SHAPE_CLASSES`` in order, 255 distractors, VOC's "void"); SegmentationObject/<id>.png
    (0 background, 1..n the objects, 255 distractors); ImageSets/Segmentation/<image_set>.txt;
    classes.txt (background, then the class names, one per line).
    """
    voc = Path(root) / "VOCdevkit" / "VOC2012"
    folders = {name: voc / name for name in ("JPEGImages", "SegmentationClass", "SegmentationObject")}
    for folder in (*folders.values(), voc / "ImageSets" / "Segmentation"):
        folder.mkdir(parents=True, exist_ok=True)
    palette, ids = voc_palette(), []
    for index in range(len(dataset)):
        image, owner, objects = dataset.render(index)
        item_id = dataset.item_id(index)
        # owner -1 (background) and -2 (distractor) index the last two entries of the lookup
        class_lookup = np.array([SHAPE_CLASSES.index(o.kind) + 1 for o in objects] + [VOID_ID, BACKGROUND_ID])
        object_labels = np.where(owner == -2, VOID_ID, owner + 1)
        for folder, labels in (("SegmentationClass", class_lookup[owner]), ("SegmentationObject", object_labels)):
            png = Image.fromarray(labels.astype(np.uint8))
            png.putpalette(palette)
            png.save(folders[folder] / f"{item_id}.png")
        pixels = (image * 255).round().astype(np.uint8).transpose(1, 2, 0)
        Image.fromarray(pixels).save(folders["JPEGImages"] / f"{item_id}.jpg", quality=95)
        ids.append(item_id)
    (voc / "ImageSets" / "Segmentation" / f"{image_set}.txt").write_text("".join(f"{i}\n" for i in ids))
    (voc / "classes.txt").write_text("\n".join(("background", *SHAPE_CLASSES)) + "\n")
    return voc


__all__ = ["SHAPE_CLASSES", "Shape", "SyntheticShapes", "shape_mask", "voc_palette", "write_voc"]
