"""The notebook explorer's logic, driven without a browser: one figure per view, a cache, the
controls offered per model and method, and the busy state while a map is computed."""

import matplotlib.pyplot as plt
import pytest
import torch

import lafam_utils as lu
from lafam_utils.notebook.explorer import Explorer

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def explorer():
    torch.manual_seed(0)
    models = {name: lu.load_model(name, weights=None).eval() for name in ("shapes-supervised", "shapes-simclr")}
    return Explorer(lu.SyntheticShapes(n=3, split="single", seed=0, size=64), models, relax_masks=8)


def test_each_view_is_one_png_and_no_pyplot_figure(explorer):
    before = plt.get_fignums()
    explorer.index.value = 1
    assert bytes(explorer.image.value).startswith(PNG_SIGNATURE)
    assert [child for child in explorer.children if child is explorer.image] == [explorer.image]
    assert plt.get_fignums() == before  # nothing left for the inline backend to show a second time


def test_changing_image_or_method_changes_the_figure_and_going_back_hits_the_cache(explorer):
    explorer.index.value = 0
    first, computed, views = explorer.image.value, explorer.computed, explorer.views
    explorer.method.value = "eigencam"
    assert explorer.image.value != first and explorer.views == views + 1 and explorer.computed == computed + 1
    explorer.index.value = 2
    assert explorer.computed == computed + 2
    hits = explorer.hits
    explorer.index.value = 0
    explorer.method.value = "lafam"
    assert explorer.computed == computed + 2  # both views back on image 0 come from the cache
    assert explorer.hits == hits + 2
    assert explorer.image.value == first


def test_sliders_act_on_release(explorer):
    assert not explorer.index.continuous_update and not explorer.threshold.continuous_update


def test_threshold_redraws_from_the_cache(explorer):
    computed, image = explorer.computed, explorer.image.value
    explorer.threshold.value = 0.5
    assert explorer.computed == computed and explorer.image.value != image
    explorer.threshold.value = 0.0
    assert explorer.image.value == image


def test_gradcam_only_for_classifiers_and_layer_disabled_for_relax(explorer):
    explorer.model.value = "shapes-supervised"
    explorer.method.value = "gradcam"
    assert "gradcam" in explorer.method.options and not explorer.layer.disabled
    explorer.model.value = "shapes-simclr"
    assert "gradcam" not in explorer.method.options
    assert explorer.method.value == "lafam"
    explorer.method.value = "relax"
    assert explorer.layer.disabled
    assert explorer.key()[3] is None
    explorer.method.value = "lafam"
    assert not explorer.layer.disabled


def test_relax_reports_progress_and_controls_are_disabled_while_computing(explorer, monkeypatch):
    seen = []
    report = explorer._report

    def record(done, total):
        seen.append((done, total, all(control.disabled for control in explorer.controls)))
        report(done, total)

    monkeypatch.setattr(explorer, "_report", record)
    explorer.model.value = "shapes-simclr"
    explorer.index.value = 1
    explorer.method.value = "relax"
    assert seen and seen[-1][:2] == (8, 8) and all(busy for *_, busy in seen)
    assert explorer.bar.value == 1.0 and "RELAX" in explorer.status.value
    assert not explorer.index.disabled and explorer.layer.disabled


def test_title_names_the_image_and_the_prediction_of_a_classifier(explorer):
    explorer.model.value = "shapes-supervised"
    explorer.method.value = "lafam"
    item = explorer.data[explorer.index.value]
    title = explorer.title()
    assert item["id"] in title and f"true: {', '.join(item['labels'])}" in title and "pred: " in title
    explorer.model.value = "shapes-simclr"
    assert "pred: " not in explorer.title()


def test_figure_is_a_fixed_size_matplotlib_figure(explorer):
    fig = explorer.figure()
    assert tuple(fig.get_size_inches()) == (4.5, 4.8)


def test_empty_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one image"):
        Explorer([], {"m": torch.nn.Identity()})


def test_methods_are_offered_where_they_apply():
    from lafam_utils.explainers import applies_to

    cnn = lu.load_model("shapes-supervised", weights=None)
    encoder = lu.load_model("shapes-simclr", weights=None)
    assert applies_to("gradcam", cnn) and not applies_to("gradcam", encoder)
    assert applies_to("relax", encoder) and applies_to("lafam", encoder)
    assert not applies_to("attention", cnn)  # a CNN has no attention to read


def test_a_vit_offers_its_blocks_and_auto_reads_each_methods_default_layer():
    from tiny_vits import tiny_dino

    models = {"shapes-simclr": lu.load_model("shapes-simclr", weights=None).eval(), "vit": tiny_dino(registers=4)}
    explorer = Explorer(lu.SyntheticShapes(n=1, split="single", seed=0, size=64), models, relax_masks=4)
    assert explorer.layer.options == ("auto", "layer1", "layer2", "layer3", "layer4") and explorer.layer.value == "auto"
    assert "attention" not in explorer.method.options
    explorer.model.value = "vit"
    layers = ("auto", "blocks.0", "blocks.0.mlp.act", "blocks.1", "blocks.1.mlp.act", "blocks.1.norm1")
    assert explorer.layer.options == layers and explorer.layer.value == "auto"
    assert "attention" in explorer.method.options
    assert explorer.title().endswith("LaFAM · blocks.1.mlp.act")
    explorer.layer.value = "blocks.0"
    assert explorer.title().endswith("LaFAM · blocks.0") and explorer.key()[3] == "blocks.0"
    explorer.layer.value = "auto"
    explorer.method.value = "attention"
    assert explorer.layer.disabled and bytes(explorer.image.value).startswith(PNG_SIGNATURE)


def test_lrp_layercam_and_fused_lafam_are_offered_where_they_apply(explorer):
    from tiny_vits import tiny_dino

    explorer.model.value = "shapes-supervised"
    assert {"lafam-lrp", "lrp", "layercam", "lafam-fused"} <= set(explorer.method.options)
    explorer.model.value = "shapes-simclr"
    assert {"lafam-lrp", "lafam-fused"} <= set(explorer.method.options)
    assert not {"lrp", "layercam"} & set(explorer.method.options)  # class scores: classifiers only
    computed = explorer.computed
    explorer.method.value = "lafam-lrp"
    assert explorer.computed == computed + 1 and not explorer.layer.disabled
    assert explorer.cache[explorer.key()].shape == (64, 64)
    explorer.method.value = "lafam"
    vit_only = Explorer(lu.SyntheticShapes(n=1, split="single", seed=0, size=64), {"vit": tiny_dino()}, relax_masks=4)
    assert not {"lafam-lrp", "lrp", "lafam-fused"} & set(vit_only.method.options)  # zennit has no ViT rules
