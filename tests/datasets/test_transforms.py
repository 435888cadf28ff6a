import numpy as np
import torch
from PIL import Image

from lafam_utils.datasets.transforms import denormalize, preprocess_image, preprocess_mask, square_box


def test_square_box_is_centred():
    assert square_box(500, 366) == (67, 0, 433, 366)
    assert square_box(334, 500) == (0, 83, 334, 417)


def test_image_and_mask_stay_aligned_for_odd_sizes():
    height, width = 301, 457
    labels = np.zeros((height, width), dtype=np.uint8)
    labels[100:200, 150:300] = 7
    labels[0:5, :] = 255
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    rgb[labels == 7] = 255
    image = preprocess_image(Image.fromarray(rgb))
    mask = preprocess_mask(labels)
    assert image.shape == (3, 224, 224) and mask.shape == (224, 224) and mask.dtype == torch.uint8
    assert set(mask.unique().tolist()) == {0, 7, 255}
    bright = denormalize(image).mean(0) > 0.5
    agree = (bright == (mask == 7)).float().mean()
    assert agree > 0.99  # only the bilinear edge pixels may differ


def test_mask_keeps_large_label_values():
    labels = np.full((40, 60), 1000, dtype=np.int32)
    labels[10:30, 20:40] = 513
    mask = preprocess_mask(labels, size=20)
    assert mask.dtype == torch.int32 and set(mask.unique().tolist()) == {513, 1000}


def test_denormalize_inverts_normalisation():
    pixels = torch.rand(3, 8, 8)
    image = preprocess_image(Image.fromarray((pixels.permute(1, 2, 0).numpy() * 255).astype(np.uint8)), size=8)
    assert torch.allclose(denormalize(image), pixels, atol=1 / 255 + 1e-6)
