import math

import numpy as np
import pytest
import torch
from PIL import Image

import lafam_utils as lu
from lafam_utils.datasets.transforms import denormalize
from lafam_utils.shapes.dataset import SHAPE_CLASSES, Shape, shape_mask, voc_palette, write_voc

# exact areas of the shapes with circumradius 1 (square half-side 0.7, ring inner radius 0.55,
# cross arms 1.8 x 0.6, star with inner radius 0.45: ten triangles of area R r sin(36 deg) / 2)
UNIT_AREAS = {
    "disc": math.pi,
    "square": 1.4**2,
    "triangle": 3 * math.sqrt(3) / 4,
    "star": 10 * 0.5 * 0.45 * math.sin(math.pi / 5),
    "ring": math.pi * (1 - 0.55**2),
    "cross": 2 * 1.8 * 0.6 - 0.6**2,
}


def test_item_has_the_dataset_form():
    item = lu.SyntheticShapes(3, "multi", size=96)[1]
    assert item["image"].shape == (3, 96, 96) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (96, 96) and item["mask"].dtype == torch.bool
    assert item["masks"].shape == (2, 96, 96) and item["masks"].dtype == torch.bool
    assert len(item["labels"]) == 2 and all(name in SHAPE_CLASSES for name in item["labels"])
    assert item["label_ids"] == tuple(SHAPE_CLASSES.index(name) for name in item["labels"])
    assert isinstance(item["id"], str)
    assert torch.equal(item["mask"], item["masks"].any(0))


def test_image_is_imagenet_normalised():
    ds = lu.SyntheticShapes(1, size=64)
    raw, _, _ = ds.render(0)
    assert torch.allclose(denormalize(ds[0]["image"]), torch.from_numpy(raw), atol=1e-6)


def test_deterministic_by_seed_split_and_index():
    a, b = lu.SyntheticShapes(5, seed=3, size=64), lu.SyntheticShapes(50, seed=3, size=64)
    assert torch.equal(a[4]["image"], b[4]["image"]) and torch.equal(a[4]["mask"], b[4]["mask"])
    assert not torch.equal(a[4]["image"], lu.SyntheticShapes(5, seed=4, size=64)[4]["image"])
    assert not torch.equal(a[4]["image"], a[3]["image"])
    assert a[4]["id"] != lu.SyntheticShapes(5, "hard", seed=3, size=64)[4]["id"]


def test_background_views_share_the_objects_and_nothing_else():
    ds = lu.SyntheticShapes(4, "hard", size=64, noise=0.0)
    for i in range(len(ds)):
        (image, owner, objects), (view, view_owner, view_objects) = ds.render(i), ds.render(i, background=0)
        assert objects == view_objects and np.array_equal(owner, view_owner)
        assert np.array_equal(image[:, owner != -1], view[:, owner != -1])
        assert np.abs(image[:, owner == -1] - view[:, owner == -1]).mean() > 0.02
    noisy = lu.SyntheticShapes(2, size=64)
    assert torch.equal(noisy.item(1, background=3)["image"], noisy.item(1, background=3)["image"])
    assert not torch.equal(noisy.item(1, background=3)["image"], noisy.item(1, background=4)["image"])
    assert torch.equal(noisy.item(1)["image"], noisy[1]["image"])
    with pytest.raises(ValueError, match="background must be"):
        noisy.render(0, background=-1)


def test_colour_views_share_geometry_and_background_but_not_colours():
    ds = lu.SyntheticShapes(6, "hard", size=64, noise=0.0)
    for i in range(len(ds)):
        (image, owner, objects), (view, view_owner, view_objects) = ds.render(i), ds.render(i, colours=0)
        assert np.array_equal(owner, view_owner)
        assert [(o.kind, o.center, o.radius, o.angle) for o in objects] == [
            (o.kind, o.center, o.radius, o.angle) for o in view_objects
        ]
        assert all(o.color != v.color for o, v in zip(objects, view_objects))
        assert np.array_equal(image[:, owner == -1], view[:, owner == -1])
        for k, o in enumerate(view_objects):
            assert np.allclose(view[:, owner == k], np.asarray(o.color, dtype=np.float32)[:, None])
    both, owner, _ = ds.render(2, background=1, colours=1)
    assert np.array_equal(both, ds.render(2, background=1, colours=1)[0])
    assert not np.array_equal(both, ds.render(2, background=1, colours=2)[0])
    assert np.array_equal(ds.render(2, background=1)[0][:, owner == -1], both[:, owner == -1])
    with pytest.raises(ValueError, match="colours must be"):
        ds.render(0, colours=1.5)


def test_single_split_has_one_object_whose_mask_is_its_shape():
    ds = lu.SyntheticShapes(12, "single", size=64)
    for i in range(len(ds)):
        item, (obj,) = ds[i], ds.scene(i)[0]
        assert item["masks"].shape[0] == 1 and item["labels"] == (obj.kind,)
        assert np.array_equal(item["mask"].numpy(), shape_mask(obj, 64))
        assert item["mask"].any()


def test_multi_split_has_two_distinct_non_overlapping_objects():
    ds = lu.SyntheticShapes(20, "multi", size=64)
    for i in range(len(ds)):
        item = ds[i]
        assert len(set(item["labels"])) == 2
        assert item["masks"].sum((1, 2)).min() > 0
        assert not (item["masks"][0] & item["masks"][1]).any()


def test_hard_split_cycles_small_occluded_and_distractor_cases():
    single, hard = lu.SyntheticShapes(30, "single", size=128), lu.SyntheticShapes(30, "hard", size=128)
    assert [hard[i]["case"] for i in range(3)] == ["small", "occluded", "distractors"]
    small = [hard[i]["mask"].sum() for i in range(0, 30, 3)]
    assert max(small) < min(single[i]["mask"].sum() for i in range(30))
    for i in range(1, 30, 3):  # the occluder hides part of the object, never all of it
        _, owner, (obj,) = hard.render(i)
        full, visible = shape_mask(obj, 128), owner == 0
        assert visible.any() and (visible <= full).all() and visible.sum() < full.sum()
    for i in range(2, 30, 3):  # distractors are drawn, belong to no object, never cover it
        _, owner, (obj,) = hard.render(i)
        assert (owner == -2).any() and np.array_equal(owner == 0, shape_mask(obj, 128))


def test_mask_pixels_carry_exactly_the_object_colour():
    ds = lu.SyntheticShapes(6, "hard", size=80, noise=0.0)
    for i in range(len(ds)):
        image, owner, objects = ds.render(i)
        for k, obj in enumerate(objects):
            pixels = image[:, owner == k]
            assert pixels.shape[1] > 0
            assert np.array_equal(pixels, np.broadcast_to(np.float32(obj.color)[:, None], pixels.shape))


@pytest.mark.parametrize("kind", SHAPE_CLASSES)
def test_shape_areas_match_geometry_at_any_rotation(kind):
    radius = 40.0
    for angle in (0.0, 0.7, 2.0):
        mask = shape_mask(Shape(kind, (64.3, 63.9), radius, angle, (1.0, 0.0, 0.0)), 128)
        assert mask.sum() == pytest.approx(UNIT_AREAS[kind] * radius**2, rel=0.02)
        ys, xs = np.nonzero(mask)
        assert np.hypot(xs + 0.5 - 64.3, ys + 0.5 - 63.9).max() <= radius


def test_odd_size_batch_of_one_and_empty_dataset():
    ds = lu.SyntheticShapes(1, "hard", size=97)
    assert ds[0]["image"].shape == (3, 97, 97) and ds[0]["mask"].any()
    assert len(lu.SyntheticShapes(0)) == 0


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="split must be one of"):
        lu.SyntheticShapes(4, "pairs")
    with pytest.raises(ValueError, match="size must be"):
        lu.SyntheticShapes(4, size=8)
    with pytest.raises(ValueError, match="seed must be"):
        lu.SyntheticShapes(4, seed=-1)
    with pytest.raises(IndexError, match="out of range"):
        lu.SyntheticShapes(4)[4]
    with pytest.raises(ValueError, match="unknown shape"):
        shape_mask(Shape("hexagon", (5, 5), 3, 0, (0, 0, 0)), 16)


def test_voc_palette_matches_pascal_colours():
    palette = np.array(voc_palette()).reshape(256, 3)
    assert palette[0].tolist() == [0, 0, 0] and palette[1].tolist() == [128, 0, 0]
    assert palette[2].tolist() == [0, 128, 0] and palette[15].tolist() == [192, 128, 128]
    assert palette[255].tolist() == [224, 224, 192]


def test_write_voc_round_trips_through_palette_pngs(tmp_path):
    ds = lu.SyntheticShapes(4, "hard", size=64)
    voc = write_voc(ds, tmp_path, image_set="val")
    assert voc == tmp_path / "VOCdevkit" / "VOC2012"
    ids = (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert ids == [ds[i]["id"] for i in range(4)]
    assert (voc / "classes.txt").read_text().split() == ["background", *SHAPE_CLASSES]
    for i, item_id in enumerate(ids):
        item, (_, owner, _) = ds[i], ds.render(i)
        classes = Image.open(voc / "SegmentationClass" / f"{item_id}.png")
        objects = Image.open(voc / "SegmentationObject" / f"{item_id}.png")
        assert classes.mode == "P" and classes.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
        labels = np.array(classes)
        assert np.array_equal(labels == item["label_ids"][0] + 1, item["mask"].numpy())
        assert np.array_equal(labels == 255, owner == -2)
        assert np.array_equal(labels == 0, owner == -1)
        assert np.array_equal(np.array(objects) == 1, item["mask"].numpy())
        photo = np.asarray(Image.open(voc / "JPEGImages" / f"{item_id}.jpg"), dtype=np.float32) / 255
        assert photo.shape == (64, 64, 3)
        assert np.abs(photo - denormalize(item["image"]).permute(1, 2, 0).numpy()).mean() < 0.05
