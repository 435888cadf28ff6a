import pytest
import torch
import torch.nn.functional as F
from relax_xai import relax as relax_xai
from relax_xai.masking_functions import mask_generator
from torch import nn

import lafam_utils as lu
from lafam_utils.explainers import relax as relax_module
from lafam_utils.explainers.relax import masked_per_forward

GIB = 2**30


class OneCellEncoder(nn.Module):
    """Embedding = (mean of the image over one grid cell per channel, 1): only that cell matters."""

    def __init__(self, cell: tuple[int, int], cells: int, size: int) -> None:
        super().__init__()
        side = size // cells
        self.rows = slice(cell[0] * side, (cell[0] + 1) * side)
        self.cols = slice(cell[1] * side, (cell[1] + 1) * side)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        region = x[:, :, self.rows, self.cols].mean(dim=(2, 3))
        return torch.cat([region, torch.ones(len(x), 1)], dim=1)


def tiny_encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()).eval()


@pytest.fixture
def small_images() -> torch.Tensor:
    return torch.rand(3, 3, 20, 20, generator=torch.Generator().manual_seed(2)) + 0.5


def test_importance_peaks_at_the_only_cell_the_encoder_sees(small_images):
    relax = lu.RELAX(OneCellEncoder((1, 2), cells=4, size=20), n_masks=64, cells=4, upsample=None)
    maps = relax(small_images)
    assert maps.shape == (3, 4, 4)
    for importance in relax.importance:
        assert importance.flatten().argmax() == 1 * 4 + 2
        assert importance[1, 2] == pytest.approx(1.0, abs=1e-6)  # kept cell: embedding unchanged
        assert importance.flatten().topk(2).values[1] < 0.99


def test_original_variant_peaks_in_the_same_region(small_images):
    relax = lu.RELAX(OneCellEncoder((1, 2), cells=4, size=20), n_masks=96, cells=4, variant="original")
    maps = relax(small_images)
    assert maps.shape == relax.importance.shape == (3, 20, 20)
    for importance in relax.importance:
        row, col = divmod(int(importance.flatten().argmax()), 20)
        assert 3 <= row <= 12 and 8 <= col <= 17  # the cell's 5x5 pixels plus the soft masks' reach


@pytest.mark.parametrize("variant", ["paper", "original"])
def test_same_seed_bit_identical_other_seed_differs(small_images, variant):
    encoder = tiny_encoder()
    first = lu.RELAX(encoder, n_masks=16, cells=3, seed=5, variant=variant)(small_images)
    again = lu.RELAX(encoder, n_masks=16, cells=3, seed=5, variant=variant)(small_images)
    other = lu.RELAX(encoder, n_masks=16, cells=3, seed=6, variant=variant)(small_images)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("batch_size", [None, 5, 7, 40, 60, 1000])
def test_batch_and_chunking_do_not_change_the_maps(small_images, batch_size):
    # 60 and 1000: all three images' 20 masks in one forward, as the CUDA rule sizes it
    encoder = tiny_encoder()
    relax = lu.RELAX(encoder, n_masks=20, cells=3, batch_size=batch_size, upsample=None)
    batch = relax(small_images)
    reference = lu.RELAX(encoder, n_masks=20, cells=3, batch_size=1, upsample=None)
    single = torch.cat([reference(small_images[i : i + 1]) for i in range(3)])
    assert torch.allclose(batch, single, atol=1e-5)


def test_device_sized_batches_do_not_change_the_maps(small_images, monkeypatch):
    encoder = tiny_encoder()
    default = lu.RELAX(encoder, n_masks=20, cells=3, upsample=None)(small_images)
    sizes = []

    def as_on_a_large_gpu(size, n_masked, device_type, free_bytes=None):
        sizes.append(masked_per_forward(size, n_masked, "cuda", 80 * GIB))
        return sizes[-1]

    monkeypatch.setattr(relax_module, "masked_per_forward", as_on_a_large_gpu)
    gpu_sized = lu.RELAX(encoder, n_masks=20, cells=3, upsample=None)(small_images)
    assert sizes == [60]  # every masked image in one forward
    assert torch.allclose(gpu_sized, default, atol=1e-5)


def test_masked_images_per_forward_on_the_cpu():
    assert masked_per_forward((224, 224), 2048, "cpu") == 64
    assert masked_per_forward((112, 112), 2048, "cpu") == 256
    assert masked_per_forward((224, 224), 3 * 10, "cpu") == 30  # never more than there are
    assert masked_per_forward((4000, 3000), 2048, "cpu") == 1
    assert masked_per_forward((224, 224), 2048, "cpu", free_bytes=80 * GIB) == 64  # memory is CUDA's rule


def test_masked_images_per_forward_on_cuda_follow_free_memory():
    assert masked_per_forward((224, 224), 16 * 2048, "cuda", 120 * GIB) == 1024  # a large card
    assert masked_per_forward((224, 224), 16 * 2048, "cuda", 8 * GIB) == 8 * GIB // 2 // (512 * 224 * 224)
    assert masked_per_forward((448, 448), 16 * 2048, "cuda", 120 * GIB) == 256  # the pixels per forward
    assert masked_per_forward((224, 224), 3 * 100, "cuda", 120 * GIB) == 300  # every masked image at once
    assert masked_per_forward((224, 224), 2048, "cuda", 0) == 1


def test_free_memory_counts_what_the_caching_allocator_holds(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * GIB, 141 * GIB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 3 * GIB)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1 * GIB)
    free = relax_module.free_memory(torch.device("cuda", 0))
    assert free == 12 * GIB
    assert masked_per_forward((224, 224), 16 * 2048, "cuda", free) == 12 * GIB // 2 // (512 * 224 * 224)
    assert relax_module.free_memory(torch.device("cpu")) is None


@pytest.mark.parametrize("variant", ["paper", "original"])
def test_importance_and_uncertainty_equal_a_direct_computation(small_images, variant):
    encoder = tiny_encoder()
    relax = lu.RELAX(encoder, n_masks=24, cells=3, batch_size=7, variant=variant)
    relax(small_images)
    grids, shifts = relax.sample_grids((20, 20), small_images.device)
    image_masks, weights = relax.masks(grids, shifts, (20, 20))
    for i, image in enumerate(small_images):
        with torch.no_grad():
            reference = encoder(image[None])
            embeddings = [encoder((image * m)[None]) for m in image_masks]
            scores = torch.cat([F.cosine_similarity(reference, e) for e in embeddings])
        total = weights.sum(dim=0) + 1e-10
        importance = (scores[:, None, None] * weights).sum(dim=0) / total
        uncertainty = ((scores[:, None, None] - importance) ** 2 * weights).sum(dim=0) / total
        assert torch.allclose(relax.importance[i], importance, atol=1e-5)
        assert torch.allclose(relax.uncertainty[i], uncertainty, atol=1e-6)
        keep = relax.uncertainty[i] <= relax.uncertainty[i].flatten().median()
        assert torch.equal(relax.u_relax[i], relax.importance[i] * keep)


@pytest.mark.parametrize(("cells", "size"), [(7, (19, 23)), (4, (20, 20)), (2, (9, 5))])
def test_original_masks_are_relax_xais(cells, size):
    # relax-xai draws the grids, then the row and then the column shifts from the global generator
    torch.manual_seed(3)
    expected = next(mask_generator(12, size, "cpu", num_cells=cells, probablity_of_drop=0.5))[:, 0]
    torch.manual_seed(3)
    grids = (torch.rand(12, 1, cells, cells) < 0.5).float()[:, 0]
    shifts = torch.stack([torch.randint(0, cells, (12,)), torch.randint(0, cells, (12,))], dim=1)
    masks, weights = lu.RELAX(tiny_encoder(), cells=cells, variant="original").masks(grids, shifts, size)
    assert torch.equal(masks, expected) and weights is masks


def test_original_variant_equals_relax_xai_on_the_same_masks(small_images, monkeypatch):
    encoder = tiny_encoder()
    relax = lu.RELAX(encoder, n_masks=30, cells=3, batch_size=7, variant="original")
    relax(small_images)
    image_masks, _ = relax.masks(*relax.sample_grids((20, 20), small_images.device), (20, 20))
    for i, image in enumerate(small_images):
        batches = iter(image_masks.split(10))  # relax-xai's batches of masks, injected
        def injected(*args, batches=batches, **kwargs):
            return iter([next(batches)[:, None]])

        monkeypatch.setattr(relax_xai, "mask_generator", injected)
        with torch.no_grad():
            reference = relax_xai.RELAX(image[None], encoder, batch_size=10, num_batches=3)
            reference.forward()
        assert torch.allclose(relax.importance[i], reference.importance, atol=1e-5)
        # relax-xai keeps the running sum of weighted squared deviations: the variance times the weights
        assert torch.allclose(relax.uncertainty[i] * reference.sum_of_weights, reference.uncertainty, atol=1e-5)
        assert reference.sum_of_weights.amin() > 1  # a non-trivial weighting


def test_original_masks_need_images_larger_than_the_padding():
    with pytest.raises(ValueError, match="cells // 2 = 3 pixels"):
        lu.RELAX(tiny_encoder(), n_masks=2, cells=7, variant="original")(torch.rand(1, 3, 3, 12))


def test_masks_follow_the_configuration():
    paper = lu.RELAX(tiny_encoder(), n_masks=400, cells=4, p=0.25)
    grids, shifts = paper.sample_grids((19, 23), torch.device("cpu"))
    image_masks, weights = paper.masks(grids, shifts, (19, 23))
    assert image_masks.shape == (400, 19, 23) and torch.equal(weights, grids)
    assert set(image_masks.unique().tolist()) == {0.0, 1.0}
    assert abs(grids.mean().item() - 0.25) < 0.03
    original = lu.RELAX(tiny_encoder(), n_masks=400, cells=4, variant="original")
    image_masks, weights = original.masks(*original.sample_grids((19, 23), torch.device("cpu")), (19, 23))
    assert image_masks.shape == (400, 19, 23) and weights is image_masks
    assert image_masks.min() >= 0 and image_masks.max() <= 1 + 1e-6
    assert ((image_masks > 0) & (image_masks < 1)).any()  # soft, bilinear masks


def test_defaults_are_the_papers():
    paper, original = lu.RELAX(tiny_encoder()), lu.RELAX(tiny_encoder(), variant="original")
    assert (paper.n_masks, paper.cells, paper.p, paper.seed, paper.progress) == (2048, 7, 0.5, 0, False)
    assert original.n_masks == 3000


def test_progress_bar_can_be_shown(small_images, capsys):
    lu.RELAX(tiny_encoder(), n_masks=4, cells=2)(small_images[:1])
    assert "RELAX" not in capsys.readouterr().err
    lu.RELAX(tiny_encoder(), n_masks=4, cells=2, progress=True)(small_images[:1])
    assert "RELAX" in capsys.readouterr().err


def test_bad_encoder_and_arguments_say_what_was_expected(small_images):
    with pytest.raises(ValueError, match=r"\(B, D\) embeddings"):
        lu.RELAX(nn.Conv2d(3, 2, 3), n_masks=2, cells=2)(small_images)
    with pytest.raises(ValueError, match=r"\(B, D\) embeddings"):
        lu.RELAX(nn.Flatten(0), n_masks=2, cells=2)(small_images)
    for kwargs, message in [
        ({"n_masks": 0}, "n_masks"),
        ({"cells": 1.5}, "cells"),
        ({"batch_size": 0}, "batch_size"),
        ({"p": 0.0}, "p"),
        ({"variant": "rise"}, "variant"),
    ]:
        with pytest.raises(ValueError, match=message):
            lu.RELAX(tiny_encoder(), **kwargs)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        lu.RELAX(tiny_encoder(), n_masks=2)(small_images[0])
