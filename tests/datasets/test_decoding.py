"""Decoding image files in batches with torchvision (``decode="device"``): on the CPU the images, annotations
and metric tables of the Pillow path, exactly; Pillow's resize reproduced bit for bit."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from voc_files import photo_image, rgb_image, write_voc

import lafam_utils as lu
from lafam_utils.datasets import VOC2012
from lafam_utils.datasets.pillow_resize import RESIZE
from lafam_utils.datasets.transforms import decode_images, preprocess_image


def encoded(image: Image.Image, **options) -> torch.Tensor:
    buffer = io.BytesIO()
    image.save(buffer, **{"format": "JPEG", **options})
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def pillow(data: torch.Tensor, size: int) -> torch.Tensor:
    with Image.open(io.BytesIO(data.numpy().tobytes())) as image:
        return preprocess_image(image, size)


@pytest.mark.parametrize("size", [224, 64, 37])
def test_decoded_images_equal_pillows(size):
    shapes = [(47, 61), (64, 50), (37, 91), (375, 500), (500, 333), (224, 224), (231, 230), (12, 1000)]
    files = [encoded(rgb_image(h, w, seed), quality=q) for seed, (h, w) in enumerate(shapes) for q in (95, 75)]
    files += [encoded(photo_image(300, 400).convert(mode), quality=90) for mode in ("L", "CMYK")]
    files.append(encoded(photo_image(50, 70), format="PNG"))  # another format: decoded by decode_image
    batch = decode_images(files, size)
    assert batch.shape == (len(files), 3, size, size) and batch.dtype == torch.float32
    for data, image in zip(files, batch, strict=True):
        assert torch.equal(image, pillow(data, size))
    torch.testing.assert_close(decode_images(files[3:5], size), batch[3:5], rtol=0, atol=0)  # batching changes nothing


def test_an_image_and_its_mask_stay_aligned():
    rgb = np.zeros((301, 457, 3), dtype=np.uint8)
    rgb[100:200, 150:300] = 255
    image = decode_images([encoded(Image.fromarray(rgb), quality=100)])[0]
    labels = np.zeros((301, 457), dtype=np.uint8)
    labels[100:200, 150:300] = 1
    mask = lu.datasets.transforms.preprocess_mask(labels) == 1
    bright = lu.datasets.transforms.denormalize(image).mean(0) > 0.5
    assert (bright == mask).float().mean() > 0.99


def test_a_file_that_does_not_decode_raises():
    data = encoded(rgb_image(40, 40))
    with pytest.raises(RuntimeError):
        decode_images([data[: len(data) // 2]])


def test_voc_encoded_items_carry_the_items_annotations(tmp_path):
    write_voc(tmp_path)
    voc = VOC2012(tmp_path, subset=None, size=48)
    for index in range(len(voc)):
        item, raw = voc[index], voc.encoded_item(index)
        assert set(raw) == set(item) - {"image"} | {"encoded"} and raw["encoded"].dtype == torch.uint8
        for key in set(item) - {"image"}:
            assert torch.equal(raw[key], item[key]) if isinstance(item[key], torch.Tensor) else raw[key] == item[key]
        assert torch.equal(decode_images([raw["encoded"]], 48)[0], item["image"])


METRIC_OBJECTS = {
    f"2008_{i:06d}": (120 + 7 * (i % 5), 160 - 9 * (i % 4), [(1 + i % 4, slice(20 + i, 70 + i), slice(30, 90 + 2 * i))])
    for i in range(16)
}  # one object of aeroplane, bicycle, bird or boat: the paper's subset


def test_device_decoding_on_the_cpu_gives_the_pillow_paths_table(tmp_path):
    write_voc(tmp_path / "voc", METRIC_OBJECTS, image=photo_image)
    voc = VOC2012(tmp_path / "voc", size=64)
    path = tmp_path / "voc/VOCdevkit/VOC2012/JPEGImages/2008_000003.jpg"
    path.write_bytes(path.read_bytes()[:-300])  # broken after indexing: an error row either way
    model = lu.load_model("shapes-supervised")
    pairs = [("shapes-supervised", "lafam"), ("shapes-supervised", "gradcam")]
    options = dict(pairs=pairs, models={"shapes-supervised": model}, batch_size=8, progress=False, num_workers=0)
    pillow_table = lu.evaluate(voc, results_dir=tmp_path / "runs", decode="dataset", **options)
    torch_table = lu.evaluate(voc, results_dir=tmp_path / "runs", decode="device", **options)
    settings = [json.loads((Path(t.attrs["run_dir"]) / "run.json").read_text())["identity"]["settings"]
                for t in (pillow_table, torch_table)]
    assert "decode" not in settings[0]  # the dataset's decoding adds nothing
    assert settings[1]["decode"] == f"device-cpu, resized as {RESIZE}"
    columns = ["id", "model", "method", "prediction"]
    pd.testing.assert_frame_equal(pillow_table[columns], torch_table[columns])
    failed = torch_table["error"] != ""
    assert torch_table.loc[failed, "id"].unique().tolist() == ["2008_000003"]
    assert torch_table.loc[failed, "error"].str.startswith("cannot decode the image file").all()
    assert pillow_table.loc[failed, "error"].str.contains("2008_000003.jpg").all()
    metrics = list(lu.metrics.METRIC_NAMES)
    pd.testing.assert_frame_equal(pillow_table.loc[~failed, metrics], torch_table.loc[~failed, metrics])
