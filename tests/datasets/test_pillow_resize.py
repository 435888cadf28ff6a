"""``resize_like_pillow`` equals Pillow's bilinear ``resize`` bit for bit: shrinking and enlarging, both pass
orders, odd sizes, one-pixel axes, grayscale, a batch; bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lafam_utils.datasets.pillow_resize import pillow_coefficients, resize_like_pillow, vertical_first


def pillow_resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow's bilinear resize of an (H, W, 3) uint8 array to (height, width) ``size``."""
    return np.asarray(Image.fromarray(pixels).resize(size[::-1], Image.Resampling.BILINEAR))


def ours(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return resize_like_pillow(torch.from_numpy(pixels).permute(2, 0, 1)[None], size)[0].permute(1, 2, 0).numpy()


SIZES = [
    ((375, 500), (224, 224)),  # landscape VOC photo, horizontal pass first
    ((500, 333), (224, 224)),  # portrait: Pillow 13 starts with the vertical pass
    ((500, 500), (7, 7)),
    ((37, 91), (64, 64)),  # enlarging one axis, shrinking the other
    ((12, 1000), (37, 37)),
    ((231, 230), (224, 224)),
    ((1, 5), (3, 9)),  # one-pixel axis
    ((64, 50), (64, 64)),  # one axis unchanged: not resampled
    ((400, 300), (123, 77)),
]


@pytest.mark.parametrize(("shape", "size"), SIZES)
def test_equals_pillow(shape, size):
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    np.testing.assert_array_equal(ours(pixels, size), pillow_resize(pixels, size))


def test_equals_pillow_on_random_sizes_and_smooth_images():
    rng = np.random.default_rng(0)
    for _ in range(40):
        shape, size = tuple(rng.integers(2, 600, 2)), tuple(rng.integers(2, 300, 2))
        coarse = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
        pixels = np.asarray(coarse.resize(shape[::-1], Image.Resampling.BICUBIC))
        np.testing.assert_array_equal(ours(pixels, size), pillow_resize(pixels, size), err_msg=f"{shape} -> {size}")


def test_a_batch_is_resized_image_by_image():
    x = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (4, 3, 90, 120), dtype=np.uint8))
    batch = resize_like_pillow(x, (31, 45))
    for image, resized in zip(x, batch, strict=True):
        assert torch.equal(resize_like_pillow(image[None], (31, 45))[0], resized)


def test_the_weights_of_each_output_pixel_sum_to_one_in_fixed_point():
    _, weight = pillow_coefficients(500, 224)
    assert np.abs(weight.sum(axis=1) - (1 << 22)).max() <= weight.shape[1]  # one rounding per tap at most


def test_pass_order_follows_pillow_13():
    assert vertical_first((500, 333), (224, 224)) and not vertical_first((375, 500), (224, 224))
    assert not vertical_first((224, 500), (224, 224))  # the height does not shrink


@pytest.mark.parametrize(
    "images", [torch.zeros(1, 3, 8, 8), torch.zeros(3, 8, 8, dtype=torch.uint8)], ids=["float", "three-dims"]
)
def test_refuses_what_is_not_a_uint8_batch(images):
    with pytest.raises(ValueError, match="expected \\(N, C, H, W\\) uint8"):
        resize_like_pillow(images, (4, 4))
