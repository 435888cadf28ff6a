import pandas as pd
import pytest

from lafam_utils import filters


@pytest.fixture
def table() -> pd.DataFrame:
    labels = [
        ("aeroplane",),
        ("person",),
        ("dog", "person"),
        (),
        ("bottle",),
        ("cat", "dog"),
        ("cat", "dog", "sofa"),
        ("cat",),
    ]
    return pd.DataFrame({"id": [f"im{i}" for i in range(len(labels))], "labels": labels}, index=range(10, 18))


def test_with_n_classes_counts_object_classes(table):
    assert filters.with_n_classes(table, 0)["id"].tolist() == ["im3"]
    assert filters.with_n_classes(table, 1)["id"].tolist() == ["im0", "im1", "im4", "im7"]
    assert filters.multi_object(table)["id"].tolist() == ["im2", "im5"]


def test_without_classes_drops_any_image_with_an_excluded_class(table):
    kept = filters.without_classes(table, ["person", "sofa"])
    assert kept["id"].tolist() == ["im0", "im3", "im4", "im5", "im7"]


def test_paper_rules(table):
    assert filters.voc_paper(table)["id"].tolist() == ["im0", "im7"]  # person and bottle excluded
    assert filters.imagenet_s_paper(table)["id"].tolist() == ["im0", "im1", "im4", "im7"]
    assert set(filters.VOC_EXCLUDED) == {"person", "tvmonitor", "sofa", "pottedplant", "diningtable", "chair", "bottle"}


def test_rules_keep_the_original_index(table):
    assert filters.voc_paper(table).index.tolist() == [10, 17]


def test_class_histogram_counts_every_class_of_an_image(table):
    counts = filters.class_histogram(table)
    assert counts.to_dict() == {"cat": 3, "dog": 3, "person": 2, "aeroplane": 1, "bottle": 1, "sofa": 1}
    assert counts.iloc[0] == 3 and counts.iloc[-1] == 1
    assert filters.class_histogram(filters.voc_paper(table)).to_dict() == {"aeroplane": 1, "cat": 1}


def test_empty_table_and_missing_column():
    empty = pd.DataFrame({"id": [], "labels": []})
    assert len(filters.voc_paper(empty)) == 0
    assert filters.class_histogram(empty).empty
    with pytest.raises(KeyError, match="'labels' column"):
        filters.voc_paper(pd.DataFrame({"id": ["a"]}))
