"""Opening a notebook's subset of a dataset, and batching items."""

import pytest
import torch

from lafam_utils.datasets import opening
from lafam_utils.shapes import SyntheticShapes


def test_stack_items_batches_images_and_keeps_other_keys():
    scenes = SyntheticShapes(4, split="multi", size=32)
    batch = opening.stack_items(scenes, [0, 3])
    assert (
        batch["image"].shape == (2, 3, 32, 32)
        and batch["mask"].shape == (2, 32, 32)
        and batch["mask"].dtype == torch.bool
    )
    assert batch["id"] == [scenes[0]["id"], scenes[3]["id"]]
    assert [len(m) for m in batch["masks"]] == [len(scenes[0]["masks"]), len(scenes[3]["masks"])]
    with pytest.raises(ValueError, match="at least one index"):
        opening.stack_items(scenes, [])


def test_open_dataset_maps_subsets_to_synthetic_splits():
    data = opening.open_dataset("synthetic", "hard", n_images=3, seed=1)
    assert len(data) == 3 and data.split == "hard" and data.seed == 1
    with pytest.raises(ValueError, match="subset must be one of"):
        opening.open_dataset("synthetic", "val")
    with pytest.raises(ValueError, match="needs data_root"):
        opening.open_dataset("voc")
