"""Per-object coverage of multi-object scenes."""

import math

import numpy as np
import pytest
import torch

from lafam_utils.metrics.coverage import (
    best_covered,
    coverage_table,
    least_covered,
    object_coverage,
    two_object_coverage,
)


def test_object_coverage_counts_pixels_at_or_above_the_threshold():
    maps = torch.zeros(1, 4, 4)
    maps[0, :2] = 0.5  # exactly the threshold: covered
    maps[0, 2:, :2] = 0.49
    masks = torch.zeros(1, 3, 4, 4, dtype=torch.bool)
    masks[0, 0, :2, :2] = True  # fully covered
    masks[0, 1, 1:3, :] = True  # half covered
    coverage = object_coverage(maps, masks, threshold=0.5)
    assert coverage[0, 0] == 1.0 and coverage[0, 1] == 0.5
    assert math.isnan(coverage[0, 2])  # empty mask


def test_object_coverage_rejects_maps_at_layer_resolution():
    with pytest.raises(ValueError, match="upsample the maps"):
        object_coverage(torch.rand(2, 7, 7), torch.ones(2, 2, 28, 28, dtype=torch.bool))


def test_coverage_table_separates_finding_one_from_finding_both():
    one = torch.tensor([[1.0, 0.0], [0.8, 0.2]])
    both = torch.tensor([[0.7, 0.6], [0.5, 0.9]])
    table = coverage_table({"Grad-CAM": one, "LaFAM": both}, both_at_least=0.5)
    assert table.loc["Grad-CAM", "best-covered object"] == pytest.approx(0.9)
    assert table.loc["Grad-CAM", "least-covered object"] == pytest.approx(0.1)
    assert table.loc["LaFAM", "least-covered object"] == pytest.approx(0.55)
    assert table.loc["LaFAM", "all objects >= 0.5"] == 1.0
    assert table.loc["Grad-CAM", "all objects >= 0.5"] == 0.0


def test_coverage_table_skips_images_without_objects():
    values = torch.tensor([[float("nan"), float("nan")], [0.4, float("nan")]])
    table = coverage_table({"m": values})
    assert table.loc["m", "images"] == 1
    assert table.loc["m", "least-covered object"] == pytest.approx(0.4)


def test_best_and_least_covered_per_image_skip_empty_masks():
    values = torch.tensor([[0.25, 0.75], [0.5, float("nan")], [float("nan"), float("nan")]])
    np.testing.assert_array_equal(best_covered(values), [0.75, 0.5, np.nan])  # exact in float32
    np.testing.assert_array_equal(least_covered(values), [0.25, 0.5, np.nan])


class TwoObjects(torch.utils.data.Dataset):
    """Items with two object masks (left and right half), or one object when ``index`` is odd."""

    def __len__(self) -> int:
        return 5

    def __getitem__(self, index: int) -> dict:
        masks = torch.zeros(2 if index % 2 == 0 else 1, 8, 8, dtype=torch.bool)
        masks[0, :, :4] = True
        masks[-1, :, 4:] = True
        return {"image": torch.full((3, 8, 8), float(index)), "mask": masks.any(0), "masks": masks, "id": str(index)}


def left_half(x: torch.Tensor) -> torch.Tensor:
    maps = torch.zeros(len(x), *x.shape[-2:])
    maps[..., :4] = 1.0
    return maps


def test_two_object_coverage_keeps_only_two_object_items():
    coverage = two_object_coverage(TwoObjects(), {"left": left_half}, batch_size=2)
    assert torch.equal(coverage["left"], torch.tensor([[1.0, 0.0]] * 3))


def test_two_object_coverage_without_two_object_items_says_so():
    one_object = torch.utils.data.Subset(TwoObjects(), [1, 3])
    with pytest.raises(ValueError, match="no item with exactly two object masks"):
        two_object_coverage(one_object, {"left": left_half})


def test_object_coverage_of_several_maps_takes_each_objects_best_map():
    masks = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    masks[0, 0, :2] = True  # top half
    masks[0, 1, 2:] = True  # bottom half
    concepts = torch.zeros(1, 3, 4, 4)
    concepts[0, 0, :2, :2] = 1.0  # half of the top object
    concepts[0, 1, :2] = 1.0  # all of the top object
    concepts[0, 2, 3] = 1.0  # half of the bottom object
    assert object_coverage(concepts, masks).tolist() == [[1.0, 0.5]]
    torch.testing.assert_close(object_coverage(concepts[:, 1], masks), object_coverage(concepts[:, 1:2], masks))
