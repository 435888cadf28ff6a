"""The paper's setup: its models per dataset and its (model, method) columns."""

import pytest

from lafam_utils import paper
from lafam_utils.paper import PAPER_PAIRS


def test_dataset_models_follow_the_paper_and_accept_overrides():
    assert paper.dataset_models("voc") == ("resnet50", ("simclr", "swav"))
    assert paper.dataset_models("synthetic") == ("shapes-supervised", ("shapes-simclr",))
    assert paper.dataset_models("imagenet-s", encoders=["swav"]) == ("resnet50", ("swav",))
    with pytest.raises(ValueError, match="dataset must be one of"):
        paper.dataset_models("coco")


def test_pairs_are_the_papers_columns():
    assert paper.model_method_pairs("resnet50", ["simclr", "swav"]) == list(PAPER_PAIRS)
