"""VOC 2012 and ImageNet-S loaders on small datasets written here in the exact on-disk formats."""

import os
import urllib.error
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from voc_files import VOC_OBJECTS, rgb_image, save_palette_png, voc_labels, write_voc

import lafam_utils as lu
from lafam_utils import datasets
from lafam_utils.datasets import VOC2012, ImageNetS, index_cache
from lafam_utils.datasets import imagenet_s as imagenet_s_module
from lafam_utils.datasets import voc as voc_module


def square_nearest(labels: np.ndarray, size: int) -> np.ndarray:
    """Reference geometry with PIL: centre square crop, nearest-neighbour resize."""
    height, width = labels.shape
    side = min(height, width)
    left, top = (width - side) // 2, (height - side) // 2
    image = Image.fromarray(labels).crop((left, top, left + side, top + side))
    return np.asarray(image.resize((size, size), Image.Resampling.NEAREST))


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    write_voc(tmp_path)
    return tmp_path


def test_subsets_follow_the_paper_rules(voc_root):
    paper = VOC2012(voc_root, subset="paper")
    assert paper.table["id"].tolist() == ["2007_000001", "2007_000007"]
    assert paper.table["labels"].tolist() == [("aeroplane",), ("sheep",)]
    assert paper.table["dataset_idx"].tolist() == [0, 6]  # position in the split file
    multi = VOC2012(voc_root, subset="multi")
    assert multi.table["labels"].tolist() == [("dog", "person"), ("cat", "dog")]
    everything = VOC2012(voc_root, subset=None)
    assert len(everything) == len(VOC_OBJECTS) and len(everything.skipped) == 0
    assert everything.table.loc[3, "labels"] == ()  # only background and void
    empty = everything[3]
    assert empty["masks"].shape == (0, 224, 224) and empty["mask"].shape == (224, 224) and not empty["mask"].any()
    custom = VOC2012(voc_root, subset=lambda t: t[t["labels"].map(lambda names: "dog" in names)])
    assert custom.table["id"].tolist() == ["2007_000002", "2007_000005", "2007_000006"]


def test_pixel_counts_leave_out_background_and_void(voc_root):
    table = VOC2012(voc_root, subset=None).table.set_index("id")
    assert table.loc["2007_000001", "class_pixels"] == (20 * 28,)
    assert table.loc["2007_000002", "class_ids"] == (12, 15)
    assert table.loc["2007_000002", "class_pixels"] == (20 * 15, 25 * 20)


@pytest.mark.parametrize("item_id", ["2007_000001", "2007_000002", "2007_000007"])
def test_masks_match_the_reference_geometry(voc_root, item_id):
    ds = VOC2012(voc_root, subset=None, size=64)
    item = ds[ds.table.index[ds.table["id"] == item_id][0]]
    labels = np.asarray(Image.open(voc_root / f"VOCdevkit/VOC2012/SegmentationClass/{item_id}.png"))
    expected = square_nearest(labels, 64)
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (64, 64) and item["mask"].dtype == torch.bool
    assert item["masks"].shape == (len(item["labels"]), 64, 64)
    for mask, class_id in zip(item["masks"], item["label_ids"]):
        assert torch.equal(mask, torch.from_numpy(expected == class_id))
    assert torch.equal(item["mask"], torch.from_numpy(np.isin(expected, item["label_ids"])))
    assert not item["mask"][torch.from_numpy(expected == 255)].any()  # void is background


def test_image_and_mask_stay_aligned(tmp_path):
    """A white object on black: the bright image pixels are the mask pixels after crop and resize."""
    voc = write_voc(tmp_path, {"2008_000001": (81, 117, [(7, slice(20, 60), slice(50, 100))])})
    labels = np.asarray(Image.open(voc / "SegmentationClass/2008_000001.png"))
    pixels = np.where((labels == 7)[..., None], 255, 0).astype(np.uint8).repeat(3, axis=2)
    Image.fromarray(pixels).save(voc / "JPEGImages/2008_000001.jpg", quality=100)
    item = VOC2012(tmp_path)[0]
    bright = lu.datasets.transforms.denormalize(item["image"]).mean(dim=0) > 0.5
    assert item["image"].shape == (3, 224, 224) and item["labels"] == ("car",)
    assert (bright == item["mask"]).float().mean() > 0.99  # only bilinear edge pixels may differ


def test_items_carry_labels_ids_and_index(voc_root):
    ds = VOC2012(voc_root, subset="paper")
    item = ds[-1]
    assert item["id"] == "2007_000007" and item["labels"] == ("sheep",) and item["label_ids"] == (17,)
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_bad_files_are_skipped_and_reported(voc_root):
    voc = voc_root / "VOCdevkit" / "VOC2012"
    seg = voc / "SegmentationClass"
    truncated = (seg / "2007_000002.png").read_bytes()
    (seg / "2007_000002.png").write_bytes(truncated[: len(truncated) // 2])
    (seg / "2007_000003.png").write_bytes(b"not a png at all")
    rgb_image(40, 40).save(seg / "2007_000004.png", format="JPEG")  # a JPEG with a .png name
    (voc / "JPEGImages" / "2007_000005.jpg").unlink()
    (seg / "2007_000006.png").unlink()
    save_palette_png(np.full((37, 91), 30, np.uint8), seg / "2007_000007.png")  # id 30 is not a VOC class
    with pytest.warns(UserWarning, match=r"skipped 6 of 7 images") as record:
        ds = VOC2012(voc_root, subset=None)
    message = str(record[0].message)
    assert ds.table["id"].tolist() == ["2007_000001"]
    reasons = dict(zip(ds.skipped["id"], ds.skipped["reason"]))
    assert "2007_000002.png" in reasons["2007_000002"] and "truncated" in reasons["2007_000002"].lower()
    assert "2007_000003.png" in reasons["2007_000003"] and "expected a PNG" in reasons["2007_000003"]
    assert "got JPEG data" in reasons["2007_000004"]
    assert "2007_000005.jpg: image missing" in reasons["2007_000005"]
    assert "2007_000006.png: mask missing" in reasons["2007_000006"]
    assert "expected class ids 0..20 or 255" in reasons["2007_000007"] and "[30]" in reasons["2007_000007"]
    assert all(reason in message for reason in reasons.values())


def test_rgb_mask_and_size_mismatch_are_skipped(tmp_path):
    objects = {
        "a": (30, 40, [(1, slice(5, 20), slice(5, 20))]),
        "b": (30, 40, []),
        "c": (30, 40, []),
        "d": (30, 40, []),
    }
    voc = write_voc(tmp_path, objects)
    rgb_image(30, 40).save(voc / "SegmentationClass/b.png")  # colour-rendered mask
    save_palette_png(np.zeros((40, 30), np.uint8), voc / "SegmentationClass/c.png")  # transposed
    save_palette_png(np.zeros((30, 41), np.uint8), voc / "SegmentationClass/d.png")  # one column too many
    with pytest.warns(UserWarning):
        ds = VOC2012(tmp_path, subset=None)
    assert ds.table["id"].tolist() == ["a"]
    reasons = dict(zip(ds.skipped["id"], ds.skipped["reason"]))
    assert "mode P or L, got mode RGB" in reasons["b"]
    assert "expected a mask of the image's size 40x30" in reasons["c"] and "got 30x40" in reasons["c"]
    assert "got 41x30" in reasons["d"]


def test_a_downscaled_mask_with_the_image_aspect_ratio_stays_aligned(tmp_path):
    """ImageNet-S keeps the masks of very large images at 1000 pixels on the longer side."""
    voc = write_voc(tmp_path, {"big": (100, 151, [(3, slice(10, 40), slice(40, 70))])})
    labels = np.asarray(Image.open(voc / "SegmentationClass/big.png"))
    small = labels[::2, ::2][:50, :75]  # half of 151x100, rounded down
    save_palette_png(small, voc / "SegmentationClass/big.png")
    pixels = np.where((labels == 3)[..., None], 255, 0).astype(np.uint8).repeat(3, axis=2)
    Image.fromarray(pixels).save(voc / "JPEGImages/big.jpg", quality=100)
    item = VOC2012(tmp_path)[0]
    bright = lu.datasets.transforms.denormalize(item["image"]).mean(dim=0) > 0.5
    assert item["labels"] == ("bird",) and (bright == item["mask"]).float().mean() > 0.98


def declare_size(png: Path, width: int, height: int) -> None:
    """Rewrite a PNG's IHDR to declare another size (CRC fixed), leaving its pixel data as it was."""
    data = bytearray(png.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    png.write_bytes(bytes(data))


def test_a_mask_declaring_a_huge_size_is_skipped_and_reported(voc_root):
    """A PNG header claiming 20,000 x 20,000 pixels makes Pillow raise DecompressionBombError: one file,
    not the dataset."""
    declare_size(voc_root / "VOCdevkit/VOC2012/SegmentationClass/2007_000001.png", 20_000, 20_000)
    with pytest.warns(UserWarning, match=r"skipped 1 of 7 images"):
        ds = VOC2012(voc_root)
    assert "2007_000001" not in ds.table["id"].tolist() and len(ds.table) >= 1
    reason = dict(zip(ds.skipped["id"], ds.skipped["reason"]))["2007_000001"]
    assert "2007_000001.png: expected a PNG" in reason and "exceeds limit" in reason


@pytest.mark.parametrize("kept", [0.5, 0.9, 0.99])
def test_truncated_image_is_skipped_when_the_index_is_built(voc_root, kept):
    """Problem 5: a JPEG cut short past its header used to pass the index and crash a notebook."""
    path = voc_root / "VOCdevkit/VOC2012/JPEGImages/2007_000001.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * kept)])
    with pytest.warns(UserWarning, match=r"skipped 1 of 7 images"):
        ds = VOC2012(voc_root)
    assert ds.table["id"].tolist() == ["2007_000007"]
    reason = dict(zip(ds.skipped["id"], ds.skipped["reason"]))["2007_000001"]
    assert "2007_000001.jpg: expected an image file that decodes" in reason and "truncated" in reason
    with pytest.warns(UserWarning, match=r"skipped 1 of 7 images"):  # the verdict is cached with the index
        assert VOC2012(voc_root).table["id"].tolist() == ["2007_000007"]


def test_duplicate_ids_in_the_split_file_are_included_once(voc_root):
    split = voc_root / "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt"
    split.write_text(split.read_text() + "2007_000001\n2007_000007\n2007_000001\n")
    with pytest.warns(UserWarning, match=r"lists 3 id\(s\) more than once \(2007_000001, 2007_000007\)"):
        ds = VOC2012(voc_root, subset=None)
    assert ds.table["id"].tolist() == list(VOC_OBJECTS)


def test_layout_errors_name_the_path_and_the_layout(tmp_path, voc_root):
    with pytest.raises(FileNotFoundError, match=r"(?s)VOCdevkit/VOC2012 does not exist.*JPEGImages"):
        VOC2012(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"pass its grandparent"):
        VOC2012(voc_root / "VOCdevkit" / "VOC2012")
    with pytest.raises(FileNotFoundError, match=r"(?s)train\.txt does not exist.*splits found: \['val'\]"):
        VOC2012(voc_root, split="train")
    with pytest.raises(ValueError, match=r"subset must be one of \['paper', 'multi', None\]"):
        VOC2012(voc_root, subset="single")
    assert not list((voc_root / "VOCdevkit/VOC2012").glob(".lafam_index*"))  # checked before indexing
    (voc_root / "VOCdevkit/VOC2012/ImageSets/Segmentation/empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="lists no image ids"):
        VOC2012(voc_root, split="empty")


def count_mask_reads(monkeypatch, name: str) -> list[Path]:
    """Count the mask reads of ``name`` ("read_voc_labels" | "read_imagenet_s_labels") where its dataset calls it."""
    module = voc_module if name == "read_voc_labels" else imagenet_s_module
    reads: list[Path] = []
    original = getattr(module, name)

    def counting(path: Path) -> np.ndarray:
        reads.append(Path(path))
        return original(path)

    monkeypatch.setattr(module, name, counting)
    return reads


def test_index_is_cached_and_refreshed_per_changed_file(voc_root, monkeypatch):
    reads = count_mask_reads(monkeypatch, "read_voc_labels")
    first = VOC2012(voc_root, subset=None).full_table
    assert len(reads) == len(VOC_OBJECTS)
    assert list((voc_root / "VOCdevkit/VOC2012").glob(".lafam_index*"))  # next to the data
    reads.clear()
    pd.testing.assert_frame_equal(VOC2012(voc_root, subset=None).full_table, first)
    assert reads == []  # second build: nothing reread
    mask = voc_root / "VOCdevkit/VOC2012/SegmentationClass/2007_000004.png"
    save_palette_png(voc_labels(33, 45, (9, slice(5, 20), slice(5, 30))), mask)
    os.utime(mask, ns=(1, 1))  # a changed file is noticed by its size or mtime
    ds = VOC2012(voc_root, subset=None)
    assert reads == [mask]
    assert ds.table.set_index("id").loc["2007_000004", "labels"] == ("chair",)
    for path in mask.parent.iterdir():
        path.unlink()
    with pytest.warns(UserWarning, match="skipped 7 of 7"):
        assert len(VOC2012(voc_root, subset=None)) == 0


def test_cache_falls_back_to_the_user_cache_dir(voc_root, tmp_path, monkeypatch):
    """A place next to the data that cannot take the file (here: a folder of that name) is skipped."""
    voc = voc_root / "VOCdevkit/VOC2012"
    (voc / f".lafam_index_v{index_cache.CACHE_VERSION}_voc_val.parquet").mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    reads = count_mask_reads(monkeypatch, "read_voc_labels")
    VOC2012(voc_root)
    assert len(list((tmp_path / "cache" / "lafam_utils").glob("*voc_val.parquet"))) == 1
    reads.clear()
    VOC2012(voc_root)
    assert reads == []


def test_a_broken_cache_is_rebuilt(voc_root, tmp_path):
    VOC2012(voc_root, cache_dir=tmp_path / "c")
    cache = next((tmp_path / "c").iterdir())
    cache.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable index cache"):
        ds = VOC2012(voc_root, cache_dir=tmp_path / "c")
    assert len(ds) == 2


def test_download_fails_offline_with_a_clear_message(tmp_path, monkeypatch):
    import torchvision.datasets.voc as tv_voc

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_voc, "download_and_extract_archive", offline)
    with pytest.raises(
        ConnectionError, match=r"could not download PASCAL VOC 2012 from https://.*VOCtrainval_11-May-2012"
    ):
        VOC2012.download(tmp_path)


def test_download_skips_an_existing_dataset(voc_root, monkeypatch):
    import torchvision.datasets.voc as tv_voc

    monkeypatch.setattr(tv_voc, "download_and_extract_archive", lambda *a, **k: pytest.fail("downloaded again"))
    assert VOC2012.download(voc_root) == voc_root / "VOCdevkit" / "VOC2012"


# ImageNet-S


def encode(ids: np.ndarray) -> Image.Image:
    """ImageNet-S encoding: R = id % 256, G = id // 256, B = 0."""
    rgb = np.stack([ids % 256, ids // 256, np.zeros_like(ids)], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


def s_id(wnid: str) -> int:
    return datasets.imagenet_s_wnids().index(wnid) + 1


TENCH, GOLDFISH, SUNGLASS = "n01440764", "n01443537", "n04355933"


def imagenet_s_masks() -> dict[tuple[str, str], np.ndarray]:
    single = np.zeros((53, 75), np.int32)
    single[10:40, 20:60] = s_id(TENCH)
    single[40:45, 20:60] = 1000  # ignore region: the mask's maximum, but not the object
    multi = np.zeros((64, 48), np.int32)
    multi[5:30, 5:40] = s_id(GOLDFISH)
    multi[35:60, 10:30] = 300  # an id above 255 needs the G channel
    sunglass = np.full((41, 41), 1000, np.int32)
    sunglass[10:30, 10:30] = s_id(SUNGLASS)
    return {
        (TENCH, "ILSVRC2012_val_00000001"): single,
        (GOLDFISH, "ILSVRC2012_val_00000002"): multi,
        (SUNGLASS, "ILSVRC2012_val_00000003"): sunglass,
    }


def write_imagenet_s(root: Path, per_wnid_images: bool = False) -> tuple[Path, Path]:
    masks_root, images_root = root / "ImageNetS919", root / "val"
    for seed, ((wnid, name), ids) in enumerate(imagenet_s_masks().items()):
        (masks_root / "validation-segmentation" / wnid).mkdir(parents=True, exist_ok=True)
        encode(ids).save(masks_root / "validation-segmentation" / wnid / f"{name}.png")
        folder = images_root / wnid if per_wnid_images else images_root
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".png" if seed == 2 else ".JPEG"  # the third holds JPEG data under a .png name
        rgb_image(*ids.shape, seed).save(folder / f"{name}{suffix}", format="JPEG")
    return masks_root, images_root


@pytest.fixture
def imagenet_s(tmp_path: Path) -> tuple[Path, Path]:
    return write_imagenet_s(tmp_path)


def test_wnid_resources_are_complete_and_sorted():
    wnids, s919 = datasets.imagenet_wnids(), datasets.imagenet_s_wnids()
    assert len(wnids) == len(set(wnids)) == 1000 and list(wnids) == sorted(wnids)
    assert len(s919) == len(set(s919)) == 919 and list(s919) == sorted(s919) and set(s919) <= set(wnids)
    merged = {"n04356056", "n04493381", "n03642806", "n04008634", "n03887697"}  # merged per the ImageNet-S README
    assert not merged & set(s919) and {"n04355933", "n02808440", "n03832673", "n03773504", "n15075141"} <= set(s919)
    names = datasets.imagenet_categories()
    assert len(names) == 1000
    assert names[wnids.index(TENCH)] == "tench" and names[wnids.index("n15075141")] == "toilet tissue"
    assert names[wnids.index("n02123045")] == "tabby" and names[wnids.index("n04356056")] == "sunglasses"


def test_imagenet_s_subsets_and_labels(imagenet_s):
    full = ImageNetS(*imagenet_s, subset=None)
    table = full.table.set_index("id")
    assert table.loc["ILSVRC2012_val_00000001", "class_ids"] == (s_id(TENCH),)  # 1000 is not a class
    assert table.loc["ILSVRC2012_val_00000002", "class_ids"] == (s_id(GOLDFISH), 300)
    assert table.loc["ILSVRC2012_val_00000002", "labels"] == (
        "goldfish",
        datasets.imagenet_categories()[datasets.imagenet_wnids().index(datasets.imagenet_s_wnids()[299])],
    )
    paper = ImageNetS(*imagenet_s)
    assert paper.table["id"].tolist() == ["ILSVRC2012_val_00000001", "ILSVRC2012_val_00000003"]
    assert ImageNetS(*imagenet_s, subset="multi").table["id"].tolist() == ["ILSVRC2012_val_00000002"]


def test_imagenet_s_mask_is_the_class_not_the_maximum(imagenet_s):
    ds = ImageNetS(*imagenet_s, size=64)
    ids = imagenet_s_masks()[(TENCH, "ILSVRC2012_val_00000001")]
    item = ds[0]
    assert item["labels"] == ("tench",) and item["label_ids"] == (s_id(TENCH),)
    expected = square_nearest(ids, 64)
    assert torch.equal(item["mask"], torch.from_numpy(expected == s_id(TENCH)))
    assert expected.max() == 1000 and not item["mask"][torch.from_numpy(expected == 1000)].any()
    sunglass = ds[1]  # ignore everywhere but the object; JPEG data under a .png name
    assert sunglass["mask"].sum() > 0 and sunglass["image"].shape == (3, 64, 64)


def test_imagenet_s_multi_object_masks_follow_labels(imagenet_s):
    item = ImageNetS(*imagenet_s, subset="multi", size=96)[0]
    expected = square_nearest(imagenet_s_masks()[(GOLDFISH, "ILSVRC2012_val_00000002")], 96)
    assert item["masks"].shape == (2, 96, 96)
    for mask, class_id in zip(item["masks"], item["label_ids"]):
        assert torch.equal(mask, torch.from_numpy(expected == class_id)) and mask.any()
    assert torch.equal(item["mask"], item["masks"].any(dim=0))


def test_imagenet_ground_truth_class(tmp_path):
    flat = ImageNetS(*write_imagenet_s(tmp_path / "flat"), subset=None)
    wnids = datasets.imagenet_wnids()
    assert flat[0]["imagenet_class"] == wnids.index(TENCH) == 0 and flat[0]["wnid"] == TENCH
    assert flat.table["imagenet_label"].tolist() == ["tench", "goldfish", "sunglass"]
    # per-wnid image folders give the image's own ImageNet-1k class, e.g. for a class ImageNet-S merged
    masks_root, images_root = write_imagenet_s(tmp_path / "nested", per_wnid_images=True)
    (images_root / SUNGLASS).rename(images_root / "n04356056")
    nested = ImageNetS(masks_root, images_root, subset=None)
    assert nested.table["imagenet_class"].tolist() == [0, 1, wnids.index("n04356056")]
    assert nested.table["labels"].tolist() == flat.table["labels"].tolist()
    # file names with the wnid, as in the Hugging Face copy of ImageNet
    masks_root, images_root = write_imagenet_s(tmp_path / "named")
    (images_root / "ILSVRC2012_val_00000003.png").rename(images_root / "ILSVRC2012_val_00000003_n04356056.png")
    named = ImageNetS(masks_root, images_root, subset=None)
    assert named.table["imagenet_class"].tolist() == [0, 1, wnids.index("n04356056")]
    assert named.table["imagenet_label"].tolist() == ["tench", "goldfish", "sunglasses"]


def test_imagenet_s_bad_files_are_skipped(imagenet_s):
    masks_root, images_root = imagenet_s
    seg = masks_root / "validation-segmentation"
    (images_root / "ILSVRC2012_val_00000002.JPEG").unlink()
    encode(np.full((20, 20), 950)).save(seg / SUNGLASS / "ILSVRC2012_val_00000003.png")
    (seg / "not_a_wnid").mkdir()
    encode(np.zeros((5, 5), np.int32)).save(seg / "not_a_wnid" / "ILSVRC2012_val_00000009.png")
    Image.fromarray(np.zeros((53, 75), np.uint8)).save(seg / TENCH / "ILSVRC2012_val_00000004.png")  # grayscale
    rgb_image(53, 75).save(images_root / "ILSVRC2012_val_00000004.JPEG")
    with pytest.warns(UserWarning, match="skipped 4 of 5"):
        ds = ImageNetS(masks_root, images_root, subset=None)
    assert ds.table["id"].tolist() == ["ILSVRC2012_val_00000001"]
    reasons = dict(zip(ds.skipped["id"], ds.skipped["reason"]))
    assert "ILSVRC2012_val_00000002.JPEG: image missing" in reasons["ILSVRC2012_val_00000002"]
    assert "expected class ids 0..919 or 1000" in reasons["ILSVRC2012_val_00000003"]
    assert "folder named by an ImageNet wnid, got 'not_a_wnid'" in reasons["ILSVRC2012_val_00000009"]
    assert "mode RGB or RGBA, got mode L" in reasons["ILSVRC2012_val_00000004"]


def test_imagenet_s_layout_errors(imagenet_s, tmp_path):
    masks_root, images_root = imagenet_s
    with pytest.raises(FileNotFoundError, match=r"validation-segmentation does not exist"):
        ImageNetS(tmp_path / "nowhere", images_root)
    with pytest.raises(
        FileNotFoundError, match=r"does not exist; expected the folder of the ImageNet-1k validation images"
    ):
        ImageNetS(masks_root, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"found no ILSVRC2012_val_\*\.JPEG"):
        ImageNetS(masks_root, tmp_path / "empty")


def test_imagenet_s_index_cache(imagenet_s, monkeypatch):
    masks_root, images_root = imagenet_s
    reads = count_mask_reads(monkeypatch, "read_imagenet_s_labels")
    first = ImageNetS(masks_root, images_root).full_table
    assert len(reads) == 3 and list(masks_root.glob(".lafam_index*"))
    reads.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pd.testing.assert_frame_equal(ImageNetS(masks_root, images_root).full_table, first)
    assert reads == []
    removed = masks_root / "validation-segmentation" / GOLDFISH / "ILSVRC2012_val_00000002.png"
    removed.unlink()
    assert len(ImageNetS(masks_root, images_root, subset=None)) == 2 and reads == []


def test_notebooks_skip_a_broken_image_with_a_one_line_note(voc_root, capsys):
    path = voc_root / "VOCdevkit/VOC2012/JPEGImages/2007_000001.jpg"
    path.write_bytes(path.read_bytes()[:-200])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = lu.datasets.open_dataset("voc", "paper", voc_root)
    note = capsys.readouterr().out
    assert note.count("\n") == 1 and note.startswith("note: 1 file(s) skipped") and "2007_000001.jpg" in note
    assert [data[i]["id"] for i in range(len(data))] == ["2007_000007"]


def test_an_image_broken_after_indexing_keeps_its_id_in_the_error_row(voc_root, tmp_path):
    from evaluation_toy import toy_models

    data = VOC2012(voc_root, size=32)
    path = voc_root / "VOCdevkit/VOC2012/JPEGImages/2007_000001.jpg"
    path.write_bytes(path.read_bytes()[:-200])
    table = lu.evaluate(data, [("toynet", "lafam")], results_dir=tmp_path, models=toy_models(), progress=False)
    broken = table[table["error"] != ""]
    assert broken["id"].tolist() == ["2007_000001"] and "truncated" in broken["error"].iloc[0]
    assert table.loc[table["error"] == "", "id"].tolist() == ["2007_000007"]


def test_imagenet_s_encoded_items_decode_to_the_items_images(imagenet_s):
    from lafam_utils.datasets.transforms import IMAGENET_STD, decode_images

    data = ImageNetS(*imagenet_s, subset=None, size=40)
    raws = [data.encoded_item(i) for i in range(len(data))]
    decoded = decode_images([raw["encoded"] for raw in raws], 40)
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    for index, (raw, image) in enumerate(zip(raws, decoded)):
        item = data[index]
        assert raw["id"] == item["id"] and raw["wnid"] == item["wnid"] and torch.equal(raw["mask"], item["mask"])
        assert ((image - item["image"]).abs() * std).max() <= 1 / 255 + 1e-6
