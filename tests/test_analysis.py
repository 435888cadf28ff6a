import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn

from lafam_utils import analysis
from lafam_utils.evaluation import PAPER_PAIRS


def test_dataset_models_follow_the_paper_and_accept_overrides():
    assert analysis.dataset_models("voc") == ("resnet50", ("simclr", "swav"))
    assert analysis.dataset_models("synthetic") == ("shapes-supervised", ("shapes-simclr",))
    assert analysis.dataset_models("imagenet-s", encoders=["swav"]) == ("resnet50", ("swav",))
    with pytest.raises(ValueError, match="dataset must be one of"):
        analysis.dataset_models("coco")


def test_pairs_are_the_papers_columns():
    assert analysis.model_method_pairs("resnet50", ["simclr", "swav"]) == list(PAPER_PAIRS)


def test_predict_in_batches_equals_one_pass():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)).eval()
    images = torch.randn(7, 3, 17, 19)
    expected = model(images).argmax(dim=1)
    assert torch.equal(analysis.predict(model, images, batch_size=3), expected)
    assert analysis.predict(model, images[:1]).shape == (1,)


def test_object_coverage_counts_pixels_at_or_above_the_threshold():
    maps = torch.zeros(1, 4, 4)
    maps[0, :2] = 0.5  # exactly the threshold: covered
    maps[0, 2:, :2] = 0.49
    masks = torch.zeros(1, 3, 4, 4, dtype=torch.bool)
    masks[0, 0, :2, :2] = True  # fully covered
    masks[0, 1, 1:3, :] = True  # half covered
    coverage = analysis.object_coverage(maps, masks, threshold=0.5)
    assert coverage[0, 0] == 1.0 and coverage[0, 1] == 0.5
    assert math.isnan(coverage[0, 2])  # empty mask


def test_object_coverage_rejects_maps_at_layer_resolution():
    with pytest.raises(ValueError, match="upsample the maps"):
        analysis.object_coverage(torch.rand(2, 7, 7), torch.ones(2, 2, 28, 28, dtype=torch.bool))


def test_coverage_table_separates_finding_one_from_finding_both():
    one = torch.tensor([[1.0, 0.0], [0.8, 0.2]])
    both = torch.tensor([[0.7, 0.6], [0.5, 0.9]])
    table = analysis.coverage_table({"Grad-CAM": one, "LaFAM": both}, both_at_least=0.5)
    assert table.loc["Grad-CAM", "best-covered object"] == pytest.approx(0.9)
    assert table.loc["Grad-CAM", "least-covered object"] == pytest.approx(0.1)
    assert table.loc["LaFAM", "least-covered object"] == pytest.approx(0.55)
    assert table.loc["LaFAM", "all objects >= 0.5"] == 1.0
    assert table.loc["Grad-CAM", "all objects >= 0.5"] == 0.0


def test_coverage_table_skips_images_without_objects():
    values = torch.tensor([[float("nan"), float("nan")], [0.4, float("nan")]])
    table = analysis.coverage_table({"m": values})
    assert table.loc["m", "images"] == 1
    assert table.loc["m", "least-covered object"] == pytest.approx(0.4)


def test_correctness_split_matches_pandas_and_scipy():
    rng = np.random.default_rng(0)
    n = 40
    results = pd.DataFrame(
        {
            "model": ["resnet50"] * n,
            "method": ["gradcam"] * 20 + ["lafam"] * 20,
            "correct": rng.random(n) < 0.6,
            "AUC": rng.random(n),
        }
    )
    results.loc[3, "AUC"] = np.nan
    split = analysis.correctness_split(results, ["AUC"])
    assert list(split["method"]) == ["gradcam", "lafam"]
    for _, row in split.iterrows():
        group = results[results["method"] == row["method"]].dropna()
        right, wrong = group.loc[group.correct, "AUC"], group.loc[~group.correct, "AUC"]
        assert row["correct mean"] == pytest.approx(right.mean())
        assert row["wrong mean"] == pytest.approx(wrong.mean())
        assert (row["n correct"], row["n wrong"]) == (len(right), len(wrong))
        assert row["p (Mann-Whitney U)"] == pytest.approx(stats.mannwhitneyu(right, wrong).pvalue)


def test_correctness_split_with_no_wrong_predictions_has_nan_p():
    results = pd.DataFrame({"model": "m", "method": "lafam", "correct": [True, True], "AUC": [0.2, 0.4]})
    row = analysis.correctness_split(results, ["AUC"]).iloc[0]
    assert row["n wrong"] == 0 and math.isnan(row["wrong mean"]) and math.isnan(row["p (Mann-Whitney U)"])
    assert row["correct mean"] == pytest.approx(0.3)


def test_correctness_split_names_missing_columns():
    with pytest.raises(KeyError, match="correct"):
        analysis.correctness_split(pd.DataFrame({"model": [], "method": [], "AUC": []}), ["AUC"])


class TinyNet(nn.Module):
    """A small classifier with a ``layer4`` feature map, enough for every explainer."""

    def __init__(self) -> None:
        super().__init__()
        self.layer4 = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer4(x))


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
    coverage = analysis.two_object_coverage(TwoObjects(), {"left": left_half}, batch_size=2)
    assert torch.equal(coverage["left"], torch.tensor([[1.0, 0.0]] * 3))


def test_two_object_coverage_without_two_object_items_says_so():
    one_object = torch.utils.data.Subset(TwoObjects(), [1, 3])
    with pytest.raises(ValueError, match="no item with exactly two object masks"):
        analysis.two_object_coverage(one_object, {"left": left_half})


def test_stack_items_batches_images_and_keeps_other_keys():
    batch = analysis.stack_items(TwoObjects(), [0, 3])
    assert batch["image"].shape == (2, 3, 8, 8) and batch["mask"].dtype == torch.bool
    assert batch["id"] == ["0", "3"] and [len(m) for m in batch["masks"]] == [2, 1]


def test_mark_correct_gives_every_row_of_an_image_the_classifiers_verdict():
    results = pd.DataFrame(
        {
            "index": [0, 1, 0, 1],
            "labels": ["cat|dog", "car", "cat|dog", "car"],
            "model": ["clf", "clf", "enc", "enc"],
            "prediction": ["dog", "bus", "", ""],
        }
    )
    assert analysis.mark_correct(results, "clf")["correct"].tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="no rows of the classifier"):
        analysis.mark_correct(results, "resnet50")


def test_open_dataset_maps_subsets_to_synthetic_splits():
    data = analysis.open_dataset("synthetic", "hard", n_images=3, seed=1)
    assert len(data) == 3 and data.split == "hard" and data.seed == 1
    with pytest.raises(ValueError, match="subset must be one of"):
        analysis.open_dataset("synthetic", "val")
    with pytest.raises(ValueError, match="needs data_root"):
        analysis.open_dataset("voc")


def test_build_explainers_gives_one_callable_per_pair():
    torch.manual_seed(0)
    model = TinyNet().eval()
    pairs = [("clf", "gradcam"), ("clf", "lafam"), ("clf", "relax")]
    explainers = analysis.build_explainers(pairs, {"clf": model}, upsample=None, relax_masks=8, seed=3)
    assert list(explainers) == pairs
    assert explainers[("clf", "relax")].n_masks == 8 and explainers[("clf", "relax")].seed == 3
    maps = explainers[("clf", "lafam")](torch.randn(2, 3, 16, 16))
    assert maps.shape == (2, 4, 4)
