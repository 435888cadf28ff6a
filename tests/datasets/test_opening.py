"""Opening a notebook's subset of a dataset, and batching items."""

import pytest
import torch

from lafam_utils.datasets import opening


class TwoObjects(torch.utils.data.Dataset):
    """Items with two object masks (left and right half), or one object when ``index`` is odd."""

    def __len__(self) -> int:
        return 5

    def __getitem__(self, index: int) -> dict:
        masks = torch.zeros(2 if index % 2 == 0 else 1, 8, 8, dtype=torch.bool)
        masks[0, :, :4] = True
        masks[-1, :, 4:] = True
        return {"image": torch.full((3, 8, 8), float(index)), "mask": masks.any(0), "masks": masks, "id": str(index)}


def test_stack_items_batches_images_and_keeps_other_keys():
    batch = opening.stack_items(TwoObjects(), [0, 3])
    assert batch["image"].shape == (2, 3, 8, 8) and batch["mask"].dtype == torch.bool
    assert batch["id"] == ["0", "3"] and [len(m) for m in batch["masks"]] == [2, 1]


def test_open_dataset_maps_subsets_to_synthetic_splits():
    data = opening.open_dataset("synthetic", "hard", n_images=3, seed=1)
    assert len(data) == 3 and data.split == "hard" and data.seed == 1
    with pytest.raises(ValueError, match="subset must be one of"):
        opening.open_dataset("synthetic", "val")
    with pytest.raises(ValueError, match="needs data_root"):
        opening.open_dataset("voc")
