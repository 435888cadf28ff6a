"""The notebooks' one-call setup: typed parameters, lazy models, the comparison's pairs, explainers."""

import pytest
import torch

import lafam_utils as lu
from lafam_utils.notebook import Params, setup
from lafam_utils.notebook.paths import REPO_ROOT
from lafam_utils.notebook.runner import load_params
from lafam_utils.notebook.session import comparison_pairs, load_plugins


def test_params_reject_unknown_names_and_wrong_types():
    with pytest.raises(ValueError, match="unknown parameter.*relax_mask\\b.*the notebooks take: dataset"):
        Params.from_mapping({"relax_mask": 8})
    with pytest.raises(TypeError, match="parameter n_eval must be"):
        Params.from_mapping({"n_eval": "64"})
    with pytest.raises(TypeError, match="parameter random_init"):
        Params.from_mapping({"random_init": 1})
    with pytest.raises(TypeError, match="parameter n_images"):
        Params.from_mapping({"n_images": True})
    with pytest.raises(ValueError, match="dataset must be one of"):
        Params.from_mapping({"dataset": "coco"})
    with pytest.raises(ValueError, match="precision"):
        Params.from_mapping({"precision": "fp16"})
    params = Params.from_mapping({"encoders": ["simclr"], "n_eval": None, "checkpoints": {"simclr": "w.ckpt"}})
    assert params.encoders == ["simclr"] and params.n_eval is None
    assert params.methods == ["eigencam", "fem", "random", "lafam-lrp", "lafam-fused"]
    assert "RELAX masks" in Params.meaning("relax_masks")


def test_every_parameter_set_is_valid():
    for path in sorted((REPO_ROOT / "notebooks" / "params").glob("*.yaml")):
        Params.from_mapping(load_params(path), str(path))


def test_setup_reads_the_namespace_and_loads_models_on_first_use(capsys):
    namespace = {"random_init": True, "seed": 3, "get_ipython": object(), "In": []}
    run = setup(namespace)
    assert "classifier shapes-supervised, encoders shapes-simclr" in capsys.readouterr().out
    assert run.params.seed == 3 and run.models.loaded() == []
    assert torch.initial_seed() == 3
    classifier = run.models["shapes-supervised"]
    assert run.models.loaded() == ["shapes-supervised"] and run.models["shapes-supervised"] is classifier
    assert list(run.models) == ["shapes-supervised", "shapes-simclr"] and len(run.models) == 2
    with pytest.raises(KeyError, match="Session.model"):
        run.models["resnet50"]
    assert not classifier.training
    assert run.figures == REPO_ROOT / "figures"
    assert run.paper_pairs == lu.paper.model_method_pairs(run.classifier, run.encoders)
    first_three = [("shapes-supervised", "gradcam"), ("shapes-supervised", "lafam"), ("shapes-supervised", "eigencam")]
    assert run.pairs[:3] == first_three
    assert len(run.pairs) == 14 and set(run.paper_pairs) < set(run.pairs)


def test_weight_settings_are_checked_before_anything_loads():
    with pytest.raises(ValueError, match="checkpoints name models that are not used"):
        setup({"checkpoints": {"swav": "x.ckpt"}})
    with pytest.raises(ValueError, match="random_init=True loads no weights"):
        setup({"random_init": True, "weights_dir": "weights"})


def test_extra_methods_join_the_pairs_on_the_models_they_fit():
    pairs = comparison_pairs("clf", ["enc1", "enc2"], ["EigenCAM", "gradcam"])
    assert pairs == [
        ("clf", "gradcam"), ("clf", "lafam"), ("clf", "eigencam"),
        ("enc1", "relax"), ("enc1", "lafam"), ("enc1", "eigencam"),
        ("enc2", "relax"), ("enc2", "lafam"), ("enc2", "eigencam"),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown explainer 'fem2'; known: attention, dff, eigencam, fem, gradcam"):
        comparison_pairs("clf", ["enc"], ["fem2"])


def test_a_method_joins_only_the_models_it_can_explain():
    """The attention map needs a ViT that exposes its attention: not the CNNs, not torchvision's ViT."""
    def applies(model: str, method: str) -> bool:
        return model == "vit" or method != "attention"

    pairs = comparison_pairs("clf", ["cnn", "vit"], ["attention", "random"], applies=applies)
    assert ("vit", "attention") in pairs and ("cnn", "attention") not in pairs and ("clf", "attention") not in pairs
    assert {("clf", "random"), ("cnn", "random"), ("vit", "random")} <= set(pairs)
    run = setup({"random_init": True, "encoders": ["shapes-simclr", "dino-vits16"], "methods": ["attention"]})
    assert run.models.loaded() == []  # the pairs are worked out on first use
    assert [pair for pair in run.pairs if pair[1] == "attention"] == [("dino-vits16", "attention")]
    assert ("dino-vits16", "relax") in run.pairs and ("dino-vits16", "lafam") in run.pairs
    explainers = run.explainers(upsample=None)
    assert explainers[("dino-vits16", "lafam")].layer == "blocks.11.mlp.act"
    assert explainers[("shapes-simclr", "lafam")].layer == "layer4"


def test_explainers_get_the_run_settings_their_constructors_take():
    run = setup({"random_init": True, "relax_masks": 8, "seed": 5, "precision": "fp32"})
    explainers = run.explainers(upsample=None)
    assert list(explainers) == run.pairs
    relax = explainers[("shapes-simclr", "relax")]
    assert relax.n_masks == 8 and relax.seed == 5 and relax.upsample is None
    assert run.method_options("lafam") == {} and run.method_options("relax", progress=True)["progress"] is True
    maps = explainers[("shapes-supervised", "lafam")](torch.randn(2, 3, 64, 64))
    assert maps.shape == (2, 2, 2)


def test_plugins_are_imported_from_files_and_modules(tmp_path):
    plugin = tmp_path / "plugin_marker.py"
    plugin.write_text("import builtins\nbuiltins.lafam_plugin_ran = True\n")
    load_plugins([str(plugin), "json"])
    import builtins

    assert builtins.lafam_plugin_ran
    del builtins.lafam_plugin_ran
    with pytest.raises(FileNotFoundError, match="expected a Python file"):
        load_plugins([str(tmp_path / "missing.py")])


def test_a_notebook_that_explains_the_classifier_loads_only_the_classifier(tmp_path):
    """Notebook 04's steps: on real data the encoders would be two checkpoint downloads for nothing."""
    run = setup({"random_init": True, "results_dir": str(tmp_path), "n_eval": 4, "image_size": 64, "batch_size": 4})
    pairs = [(run.classifier, "gradcam"), (run.classifier, "lafam")]
    table = run.evaluate(run.dataset("hard"), pairs, name="hard")
    assert len(table) == 8 and run.models.loaded() == [run.classifier]
    assert (tmp_path / "synthetic_hard").is_dir()


def test_the_sanity_notebook_adds_the_random_map_and_takes_its_sizes_from_the_parameters():
    sizes = {"smooth_samples": 3, "road_percentages": [40], "sanity_relax_masks": 4}
    run = setup({"random_init": True, "methods": [], **sizes})
    pairs = run.pairs_with(["random"])
    assert pairs == [("shapes-supervised", "gradcam"), ("shapes-supervised", "lafam"), ("shapes-supervised", "random"),
                     ("shapes-simclr", "relax"), ("shapes-simclr", "lafam"), ("shapes-simclr", "random")]
    options = run.sanity_options()
    assert options["sMPRT"] == {"samples": 3} and options["ROAD"] == {"percentages": [40]}
    assert options["Deletion"] == options["Insertion"] == {"steps": run.params.perturbation_steps}
    assert set(options) <= set(lu.metrics.MODEL_METRICS)
    relax = run.factory("relax", relax_masks=4)(run.models["shapes-simclr"])
    assert relax.n_masks == 4 and run.factory("relax")(run.models["shapes-simclr"]).n_masks == run.params.relax_masks
