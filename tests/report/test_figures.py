import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from lafam_utils.datasets.transforms import denormalize
from lafam_utils.report import figures as plotting
from lafam_utils.report.summary import to_markdown
from lafam_utils.report.titles import pair_title


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_show_image_undoes_the_normalisation():
    image = torch.randn(3, 9, 11, generator=torch.Generator().manual_seed(0))
    fig, ax = plt.subplots()
    plotting.show_image(ax, image)
    shown = ax.images[0].get_array()
    assert np.allclose(shown, denormalize(image).permute(1, 2, 0).numpy(), atol=1e-6)


def test_layer_map_is_stretched_over_the_image_without_resampling():
    saliency = torch.rand(7, 7)
    fig, ax = plt.subplots()
    plotting.overlay(ax, torch.randn(3, 97, 130), saliency)
    drawn = ax.images[1]
    assert np.array_equal(drawn.get_array(), saliency.numpy())
    assert drawn.get_extent() == [-0.5, 129.5, 96.5, -0.5]
    assert drawn.get_interpolation() == "nearest"
    assert drawn.get_clim() == (0.0, 1.0)


def test_contour_follows_the_mask_border():
    mask = torch.zeros(40, 50, dtype=torch.bool)
    mask[10:20, 5:30] = True
    fig, ax = plt.subplots()
    plotting.draw_contour(ax, mask)
    vertices = np.concatenate([p.vertices for c in ax.collections for p in c.get_paths()])
    assert vertices[:, 0].min() == pytest.approx(4.5) and vertices[:, 0].max() == pytest.approx(29.5)
    assert vertices[:, 1].min() == pytest.approx(9.5) and vertices[:, 1].max() == pytest.approx(19.5)


@pytest.mark.parametrize("fill", [False, True])
def test_empty_or_full_mask_draws_no_contour(fill, recwarn):
    fig, ax = plt.subplots()
    plotting.draw_contour(ax, torch.full((8, 8), fill))
    assert not ax.collections
    assert not recwarn.list


def test_mask_of_another_size_is_rejected():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="does not match the image size"):
        plotting.overlay(ax, torch.randn(3, 16, 16), mask=torch.ones(8, 8, dtype=torch.bool))


@pytest.mark.parametrize("bad", [torch.randn(1, 16, 16), torch.randn(2, 3, 16, 16)])
def test_image_of_wrong_shape_is_rejected(bad):
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        plotting.show_image(ax, bad)


def test_grid_has_the_papers_layout():
    images = torch.randn(3, 3, 33, 45)
    maps = {"ResNet50\nGrad-CAM": torch.rand(3, 7, 7), "ResNet50\nLaFAM": torch.rand(3, 33, 45)}
    masks = torch.zeros(3, 33, 45, dtype=torch.bool)
    masks[:, 5:20, 5:20] = True
    labels = ["true: cat\npred: dog", "b", "c"]
    fig = plotting.saliency_grid(images, maps, masks, labels)
    axes = np.array(fig.axes).reshape(3, 3)
    assert [ax.get_title() for ax in axes[0]] == ["Original", *maps]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == labels
    assert all(len(ax.images) == 1 for ax in axes[:, 0])
    assert all(len(ax.images) == 2 for ax in axes[:, 1:].flat)
    assert all(ax.collections for ax in axes.flat)


def test_grid_of_one_row():
    fig = plotting.saliency_grid(torch.randn(1, 3, 16, 16), {"m": torch.rand(1, 4, 4)})
    assert len(fig.axes) == 2


def test_grid_rejects_columns_of_another_length():
    with pytest.raises(ValueError, match="column 'm'"):
        plotting.saliency_grid(torch.randn(2, 3, 16, 16), {"m": torch.rand(3, 4, 4)})


def test_channel_grid_shows_the_strongest_channels():
    acts = torch.zeros(10, 3, 3)
    acts[7] += 5.0
    acts[2] += 3.0
    fig = plotting.channel_grid(acts, n_channels=2, n_cols=2)
    assert [ax.get_title() for ax in fig.axes] == ["channel 7", "channel 2"]
    assert np.array_equal(fig.axes[0].images[0].get_array(), acts[7].numpy())


def test_save_figure_writes_png_and_pdf_reproducibly(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png, pdf = plotting.save_figure(fig, "fig9_test", tmp_path / "new")
    assert png.read_bytes().startswith(b"\x89PNG") and pdf.read_bytes().startswith(b"%PDF")
    first = png.read_bytes(), pdf.read_bytes()
    plotting.save_figure(fig, "fig9_test", tmp_path / "new")
    assert (png.read_bytes(), pdf.read_bytes()) == first


def test_png_palette_keeps_the_figure(tmp_path):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(np.random.default_rng(0).random((32, 32, 3)))
    full, _ = plotting.save_figure(fig, "full", tmp_path, png_colors=None)
    reduced, _ = plotting.save_figure(fig, "reduced", tmp_path)
    full_pixels = np.asarray(Image.open(full).convert("RGB"), dtype=float)
    reduced_image = Image.open(reduced)
    assert reduced_image.mode == "P" and len(reduced_image.getcolors()) <= 256
    reduced_pixels = np.asarray(reduced_image.convert("RGB"), dtype=float)
    assert reduced_pixels.shape == full_pixels.shape
    assert np.abs(reduced_pixels - full_pixels).mean() < 8
    with pytest.raises(ValueError, match="png_colors"):
        plotting.save_figure(fig, "bad", tmp_path, png_colors=1000)


@pytest.mark.parametrize("name", ["fig1.png", "../fig1", "", "a b"])
def test_save_figure_rejects_names_that_are_not_plain_stems(name, tmp_path):
    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match="plain file stem"):
        plotting.save_figure(fig, name, tmp_path)


def test_pair_title_names_model_and_method():
    assert pair_title("resnet50", "gradcam") == "ResNet50 Grad-CAM"
    assert pair_title("shapes-supervised", "lafam", separator="\n") == "Shapes supervised\nLaFAM"
    assert pair_title("my-net", "my-method") == "my-net my-method"


def test_figures_and_tables_name_pairs_alike():
    summary = pd.DataFrame(
        [[50.0]], index=pd.MultiIndex.from_tuples([("AUC", "mean")], names=["metric", "stat"]),
        columns=pd.MultiIndex.from_tuples([("shapes-supervised", "gradcam")], names=["model", "method"]),
    )
    assert "| Shapes supervised Grad-CAM |" in to_markdown(summary, ci=False, p_values=False)
