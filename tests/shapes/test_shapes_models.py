import hashlib
import json
import shutil
import time
from dataclasses import asdict, replace

import pytest
import torch
import torch.nn.functional as F

import lafam_utils as lu
from lafam_utils import metrics
from lafam_utils.hooks import layer_output
from lafam_utils.shapes import retrain as shapes_retrain
from lafam_utils.shapes import shipped
from lafam_utils.shapes.dataset import SHAPE_CLASSES
from lafam_utils.shapes.network import ShapesNet
from lafam_utils.shapes.quality import fit_linear_probe, linear_probe_accuracy
from lafam_utils.shapes.shipped import (
    SHAPES_MODELS,
    WEIGHTS_DIR,
    ShippedModelError,
    load_shapes_model,
    load_shipped_state,
    model_file_bytes,
    ship_model,
)
from lafam_utils.shapes.training import RECIPES, TrainConfig, TrainingBatches, augment, nt_xent, train_shapes_model

TINY = TrainConfig(size=32, steps=2, batch_size=4)


def held_out(n: int, size: int):
    ds = lu.SyntheticShapes(n, "single", seed=0, size=size)
    items = [ds[i] for i in range(n)]
    images = torch.stack([it["image"] for it in items])
    return images, torch.tensor([it["label_ids"][0] for it in items]), torch.stack([it["mask"] for it in items])


def test_layer4_is_at_one_32nd_of_the_input():
    model = ShapesNet().eval()
    with lu.capture(model, ["layer1", "layer4"]) as rec:
        logits = model(torch.randn(2, 3, 224, 224))
    assert logits.shape == (2, len(SHAPE_CLASSES))
    assert rec.outputs["layer1"].shape[-2:] == (56, 56) and rec.outputs["layer4"].shape[-2:] == (7, 7)
    assert ShapesNet(num_classes=None)(torch.randn(1, 3, 97, 131)).shape == (1, 128)


def test_random_init_models_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("LAFAM_CACHE", str(tmp_path))
    supervised = load_shapes_model("shapes-supervised", weights=None)
    encoder = load_shapes_model("shapes-simclr", weights=None)
    assert not supervised.training and supervised.class_names == list(SHAPE_CLASSES)
    assert encoder(torch.randn(2, 3, 64, 64)).shape == (2, 128)
    maps = lu.LaFAM(encoder)(torch.randn(1, 3, 96, 96))
    assert maps.shape == (1, 96, 96) and 0 <= maps.min() and maps.max() <= 1
    assert not any(tmp_path.iterdir())  # nothing trained, nothing cached


def test_augment_gives_distinct_views_reproducibly():
    x = lu.SyntheticShapes(2, size=64)[0]["image"].expand(3, -1, -1, -1)
    first = augment(x, torch.Generator().manual_seed(0))
    assert first.shape == x.shape and not torch.equal(first[0], first[1])
    assert torch.equal(first, augment(x, torch.Generator().manual_seed(0)))


def test_shipped_models_match_their_recorded_sha256_and_recipe():
    manifest = json.loads((WEIGHTS_DIR / "MANIFEST.json").read_text())
    assert sorted(manifest) == sorted(SHAPES_MODELS)
    for name, (objective, config) in RECIPES.items():
        entry, data = manifest[name], (WEIGHTS_DIR / manifest[name]["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert entry["objective"] == objective and entry["recipe"] == asdict(config)
        stored = torch.load(WEIGHTS_DIR / entry["file"], weights_only=True)
        assert stored["config"] == asdict(config) and stored["objective"] == objective
        model = lu.load_model(name)
        assert all(torch.equal(v, stored["state_dict"][k]) for k, v in model.state_dict().items())
        assert len(data) < 5e6


def test_altered_file_or_recipe_gives_a_clear_error(tmp_path, monkeypatch):
    shutil.copytree(WEIGHTS_DIR, tmp_path, dirs_exist_ok=True)
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path)
    path = tmp_path / "shapes-simclr.pt"
    data = bytearray(path.read_bytes())
    data[-100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ShippedModelError, match="sha256 .* but the manifest records"):
        load_shapes_model("shapes-simclr")
    assert load_shapes_model("shapes-supervised").class_names == list(SHAPE_CLASSES)
    changed = dict(RECIPES, **{"shapes-supervised": ("supervised", TrainConfig(steps=1))})
    monkeypatch.setattr(shipped, "RECIPES", changed)
    with pytest.raises(ShippedModelError, match="shipped trained with .* but the code's recipe is"):
        load_shipped_state("shapes-supervised")
    path.unlink()
    with pytest.raises(ShippedModelError, match="does not exist"):
        load_shapes_model("shapes-simclr")


def test_retrain_reports_bit_identical_weights_and_ships(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setitem(RECIPES, "shapes-simclr", ("simclr", TINY))
    monkeypatch.setattr(shapes_retrain, "model_quality", lambda model: {"linear probe": 0.5})
    shapes_retrain.main(["shapes-simclr", "--ship", "--no-progress"])
    assert "no shipped file to compare with" in capsys.readouterr().out
    shipped_model = load_shapes_model("shapes-simclr")
    shapes_retrain.main(["shapes-simclr", "--no-progress"])
    assert "bit-identical to the shipped" in capsys.readouterr().out
    monkeypatch.setitem(RECIPES, "shapes-simclr", ("simclr", TrainConfig(size=32, steps=2, batch_size=4, seed=1)))
    ship_model("shapes-simclr", shipped_model)  # the old weights recorded under the new recipe
    shapes_retrain.main(["shapes-simclr", "--no-progress"])
    out = capsys.readouterr().out
    assert "differs from the shipped file" in out and "| linear probe | 0.500 | 0.500 | 0.000 |" in out
    monkeypatch.setitem(RECIPES, "shapes-simclr", ("simclr", TrainConfig(size=32, steps=2, batch_size=4, seed=2)))
    shapes_retrain.main(["shapes-simclr", "--no-progress"])  # the shipped file is of the previous recipe
    out = capsys.readouterr().out
    assert "the shipped file cannot be compared" in out and "but the code's recipe is" in out
    assert "| linear probe | 0.500 |" in out


def test_training_windows():
    contains = TrainingBatches(TrainConfig(size=96, crop=64, steps=2, batch_size=6, window="contains"))
    images, others, labels = contains[1]
    assert images.shape == others.shape == (6, 3, 64, 64) and torch.equal(images, others)
    for k in range(6):  # the whole object lies inside its window unless it is larger than the window
        item = contains.data[6 + k]
        ys, xs = torch.nonzero(item["mask"], as_tuple=True)
        assert labels[k] == item["label_ids"][0]
        if ys.max() - ys.min() < 64 and xs.max() - xs.min() < 64:
            found = [
                (top, left)
                for top in range(33)
                for left in range(33)
                if torch.equal(item["image"][:, top : top + 64, left : left + 64], images[k])
            ]
            (top, left), *_ = found
            assert top <= ys.min() and ys.max() < top + 64 and left <= xs.min() and xs.max() < left + 64
    views = TrainingBatches(TrainConfig(size=96, crop=64, steps=1, batch_size=4, backgrounds="independent"))
    first, second, _ = views[0]
    assert not torch.equal(first, second) and torch.equal(views[0][1], second)


def _view_windows(batches: TrainingBatches, colours: int | None) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where each item's first and second views were cut (top, left), found by search."""
    first, second, _ = batches[0]
    found = []
    for k in range(len(first)):
        item, view = batches.data[k], batches.data.item(k, background=0, colours=colours)
        pair = []
        for image, cut in ((item["image"], first[k]), (view["image"], second[k])):
            (place, *_) = [
                (top, left)
                for top in range(33)
                for left in range(33)
                if torch.equal(image[:, top : top + 64, left : left + 64], cut)
            ]
            pair.append(place)
        found.append(tuple(pair))
    return found


def test_second_views_repaint_the_object_and_cut_their_own_window():
    config = TrainConfig(
        size=96, crop=64, steps=1, batch_size=4, backgrounds="independent", colours="independent", second_window="own"
    )
    batches = TrainingBatches(config)
    assert torch.equal(batches[0][1], TrainingBatches(config)[0][1])
    own = _view_windows(batches, colours=0)
    assert sum(a != b for a, b in own) >= 3
    for k in range(4):
        item, view = batches.data[k], batches.data.item(k, background=0, colours=0)
        colour, view_colour = (x[:, item["mask"]].mean(1) for x in (item["image"], view["image"]))
        assert (colour - view_colour).abs().max() > 0.1
    same = _view_windows(TrainingBatches(replace(config, second_window="same")), colours=0)
    assert all(a == b for a, b in same) and same[0][0] == own[0][0]
    with pytest.raises(ValueError, match="second_window must be"):
        TrainConfig(second_window="other")
    with pytest.raises(ValueError, match="colours must be"):
        TrainConfig(colours="random")


def test_linear_probe_separates_separable_features():
    labels = torch.arange(6).repeat(20)
    features = torch.randn(120, 10, generator=torch.Generator().manual_seed(0))
    features[torch.arange(120), labels] += 6
    probe = fit_linear_probe(features * 100 + 7, labels)
    assert (probe(features.double() * 100 + 7).argmax(1) == labels).all()


def test_bad_names_and_weights_raise():
    with pytest.raises(ValueError, match="unknown shapes model"):
        load_shapes_model("shapes-swav")
    with pytest.raises(ValueError, match="weights must be"):
        load_shapes_model("shapes-simclr", weights="imagenet")
    with pytest.raises(ValueError, match="objective must be"):
        train_shapes_model("byol", TINY)


def test_checkpoint_loads_a_saved_state_dict(tmp_path):
    model = load_shapes_model("shapes-supervised", weights=None)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    loaded = load_shapes_model("shapes-supervised", checkpoint=tmp_path / "weights.pt")
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(model(x), loaded(x))


def test_nt_xent_equals_the_bolts_simclr_loss():
    from pl_bolts.models.self_supervised.simclr.simclr_module import SimCLR

    z1, z2 = torch.randn(2, 5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    reference = SimCLR.nt_xent_loss(None, F.normalize(z1, dim=1), F.normalize(z2, dim=1), 0.5, eps=0.0)
    assert torch.allclose(nt_xent(z1, z2, temperature=0.5), reference, atol=1e-10)


def test_nt_xent_is_low_for_matching_views_and_high_for_swapped_ones():
    z = torch.eye(4)
    assert nt_xent(z, z, temperature=0.05) < 1e-6
    assert nt_xent(z, z.roll(1, 0), temperature=0.05) > 15


def test_training_is_deterministic_cached_and_respects_lafam_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAFAM_CACHE", str(tmp_path))
    first = load_shapes_model("shapes-simclr", config=TINY, progress=False)
    (cached,) = tmp_path.glob("shapes-simclr-*.pt")
    start = time.perf_counter()
    second = load_shapes_model("shapes-simclr", config=TINY, progress=False)
    assert time.perf_counter() - start < 1.0
    retrained = train_shapes_model("simclr", TINY, progress=False, workers=0)
    from_file = load_shapes_model("shapes-simclr", checkpoint=cached)
    for name, tensor in first.state_dict().items():
        for other in (second, retrained, from_file):
            assert torch.equal(tensor, other.state_dict()[name])
    assert cached.name == f"shapes-simclr-{TINY.digest()}.pt"
    assert TrainConfig(size=32, steps=2, batch_size=4, seed=1).digest() != TINY.digest()


def test_model_file_bytes_depend_on_weights_and_recipe_only():
    model = ShapesNet(None)
    recipe = RECIPES["shapes-simclr"][1]
    decoded = TrainConfig(**json.loads(json.dumps(asdict(recipe))))  # equal strings, other objects
    assert decoded is not recipe and decoded.colours is not recipe.backgrounds
    data = model_file_bytes(model, "simclr", recipe)
    assert data == model_file_bytes(model, "simclr", decoded)
    assert data != model_file_bytes(model, "simclr", replace(recipe, steps=recipe.steps + 1))


@pytest.mark.slow
def test_a_reduced_run_of_the_supervised_recipe_learns():
    supervised = train_shapes_model(
        "supervised", replace(RECIPES["shapes-supervised"][1], size=64, crop=48, steps=200), progress=False, workers=0
    )
    images, labels, _ = held_out(96, 64)
    with torch.no_grad():
        accuracy = (supervised(images).argmax(1) == labels).float().mean().item()
    assert accuracy > 2 / len(SHAPE_CLASSES)


@pytest.mark.slow
def test_shipped_simclr_encodes_the_shape_and_its_maps_find_the_object():
    """The shipped recipe's product on held-out images (never the training seeds): LaFAM finds the
    object, the frozen embedding encodes the shape class; the negative control's maps do not."""
    encoder, control = lu.load_model("shapes-simclr"), lu.load_model("shapes-simclr-background")
    assert linear_probe_accuracy(encoder, n_train=300, n_test=300) >= 0.8
    images, _, masks = held_out(100, 224)
    scores = {
        name: metrics.compute(lu.LaFAM(m)(images), masks, metrics=("Pointing-Game", "AUC"))
        for name, m in (("recipe", encoder), ("control", control))
    }
    assert scores["recipe"]["Pointing-Game"].mean() >= 0.95 and scores["recipe"]["AUC"].mean() >= 0.9
    assert scores["control"]["AUC"].mean() < 0.5
    # a random map's maximum is a uniform layer cell: the chance that its block meets the mask
    cells = layer_output(encoder, "layer4", images).shape[-1]
    blocks = masks.unflatten(1, (cells, -1)).unflatten(3, (cells, -1)).any(4).any(2)
    assert scores["control"]["Pointing-Game"].mean() < blocks.float().mean() < scores["recipe"]["Pointing-Game"].mean()


def test_the_shapes_vit_is_dinos_vit_with_a_convolutional_stem():
    from lafam_utils.models.vit import VisionTransformer
    from lafam_utils.shapes.network import ShapesViT, new_shapes_model

    classifier, encoder = new_shapes_model("supervised", "vit"), new_shapes_model("simclr", "vit")
    assert isinstance(classifier, ShapesViT) and isinstance(classifier, VisionTransformer)
    assert classifier.class_names == list(SHAPE_CLASSES) and encoder.class_names is None
    assert {"cls_token", "pos_embed", "blocks.3.norm1.weight", "norm.weight", "head.weight"} <= set(
        classifier.state_dict()
    )
    # the grid is H // 16 x W // 16 for any size, as for a patch embedding
    for size in ((224, 224), (64, 64), (65, 70)):
        x = torch.rand(2, 3, *size)
        tokens = layer_output(encoder, "blocks.3", x)
        assert tokens.shape == (2, 1 + (size[0] // 16) * (size[1] // 16), 96)
        assert classifier(x).shape == (2, len(SHAPE_CLASSES)) and encoder(x).shape == (2, 96)
    with pytest.raises(ValueError, match="architecture must be 'cnn' or 'vit'"):
        TrainConfig(architecture="mlp")
    assert RECIPES["shapes-vit-simclr"][1].architecture == "vit" and RECIPES["shapes-simclr"][1].architecture == "cnn"
