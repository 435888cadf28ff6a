"""Case 12: the randomisation checks and faithfulness metrics against Quantus 0.6.0 on the same inputs.

The shipped ``shapes-supervised`` classifier, synthetic shapes images and LaFAM's maps (made once,
outside the timing). Each contender computes the same numbers (the equality is in
tests/metrics/test_randomisation.py and test_faithfulness.py):

- ROAD, most relevant first, nine percentages: ``road_curve`` (target "accuracy", as Quantus)
  against ``quantus.ROAD``. Quantus 0.6.0's ROAD ranks the map broadcast over the 3 channels and
  indexes an (H, W) mask with those indices, which fails for RGB images; it gets the map in
  channel 0 and lower values in the others, and its percentages divided by 3 (it then counts
  3 H W entries), so that both remove the same pixels.
- Deletion, whole pixels: ``deletion`` (baseline "black", as Quantus) against
  ``quantus.PixelFlipping`` with ``features_in_step`` = 3 x pixels per step, which Quantus
  requires to divide H x W: 192 x 192 images, 192 steps of 192 pixels.
- MPRT of LaFAM, cascading from the output layer (19 layers): ``mprt`` against ``quantus.MPRT``
  with ``lu.explain_func``.

The forwards each metric needs (the explanations, for MPRT) are timed alone as a third contender:
the floor under both.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

import lafam_utils as lu
from lafam_utils.metrics import faithfulness, randomisation

from . import Case, Comparison, Contenders, Settings

PERCENTAGES = [10, 20, 30, 40, 50, 60, 70, 80, 90]


def _inputs(batch: int, size: int, device: str) -> tuple[torch.nn.Module, Tensor, Tensor]:
    model = lu.load_model("shapes-supervised").to(device).eval()
    data = lu.SyntheticShapes(n=batch, split="single", seed=0, size=size)
    x = torch.stack([data[i]["image"] for i in range(batch)]).to(device)
    maps = lu.LaFAM(model)(x)
    maps = maps + 1e-6 * torch.rand(maps.shape, generator=torch.Generator().manual_seed(0)).to(device)  # no ties
    return model, x, maps


def _forwards(model: torch.nn.Module, x: Tensor, times: int) -> None:
    """The forwards a metric cannot avoid: ``times`` passes of the batch (each perturbation step)."""
    with torch.no_grad():
        for _ in range(times):
            model(x)


def _quietly(metric, **kwargs) -> object:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return metric(channel_first=True, **kwargs)


def _road(batch: int, size: int, settings: Settings) -> Contenders:
    import quantus

    model, x, maps = _inputs(batch, size, settings.device)
    labels = model(x).argmax(dim=1).cpu().numpy()
    attributions = maps[:, None].repeat(1, 3, 1, 1)
    attributions[:, 1:] -= maps.max() + 1
    arrays = {"x_batch": x.cpu().numpy(), "y_batch": labels, "a_batch": attributions.cpu().numpy()}
    quantus_road = quantus.ROAD(percentages=[p / 3 for p in PERCENTAGES], disable_warnings=True)

    def ours() -> Tensor:
        score = faithfulness.ModelScore(model, x, "accuracy")
        return faithfulness.road_curve(x, maps, score, PERCENTAGES, most_relevant_first=True)

    return {
        "torch": ours,
        "Quantus ROAD": lambda: _quietly(quantus_road, model=model, device=settings.device, **arrays),
        "forwards": lambda: _forwards(model, x, len(PERCENTAGES)),
    }


def _deletion(batch: int, size: int, settings: Settings) -> Contenders:
    import quantus

    model, x, maps = _inputs(batch, size, settings.device)
    labels = model(x).argmax(dim=1).cpu().numpy()
    arrays = {"x_batch": x.cpu().numpy(), "y_batch": labels, "a_batch": maps[:, None].cpu().numpy()}
    quantus_flipping = quantus.PixelFlipping(features_in_step=3 * size, perturb_baseline="black", disable_warnings=True)

    def ours() -> Tensor:
        return faithfulness.deletion(x, maps, faithfulness.ModelScore(model, x), steps=size, baseline="black")[1]

    return {
        "torch": ours,
        "Quantus PixelFlipping": lambda: _quietly(quantus_flipping, model=model, device=settings.device, **arrays),
        "forwards": lambda: _forwards(model, x, size + 1),
    }


def _mprt(batch: int, size: int, settings: Settings) -> Contenders:
    import quantus

    model, x, maps = _inputs(batch, size, settings.device)
    labels = model(x).argmax(dim=1)
    arrays = {"x_batch": x.cpu().numpy(), "y_batch": labels.cpu().numpy(), "a_batch": maps[:, None].cpu().numpy()}
    quantus_mprt = quantus.MPRT(disable_warnings=True)

    def ours() -> Tensor:
        return randomisation.mprt(model, lu.LaFAM, x, maps, labels).similarities

    def peer() -> object:
        return _quietly(
            quantus_mprt,
            model=model,
            explain_func=lu.explain_func,
            explain_func_kwargs={"method": "lafam"},
            device=settings.device,
            **arrays,
        )

    explain = lu.LaFAM(model)
    layers = len(randomisation.randomisable_layers(model))
    return {"torch": ours, "Quantus MPRT": peer, "explanations": lambda: [explain(x) for _ in range(layers)]}


def cases(settings: Settings) -> list[Case]:
    batch = 2 if settings.tiny else 32 if settings.large else 8
    size = 64 if settings.tiny else 224
    deletion_size = 48 if settings.tiny else 192  # 3 x size must divide size x size (Quantus)
    notes = {
        "road": "The imputation is the work (the 9 forwards are a small part of it): the package solves each "
        "percentage's systems iteratively over the whole grid, Quantus factorises each image's sparse system.",
        "deletion": "Both run the same forwards of the batch, timed alone as the floor.",
        "mprt": "Both explain the batch once per layer, timed alone as the floor.",
    }
    return [
        Case(
            id="sanity-road",
            title=f"ROAD (MoRF, 9 percentages), batch {batch}",
            build=lambda: _road(batch, size, settings),
            comparisons=[
                Comparison("Quantus ROAD", "torch", "speed-up vs Quantus ROAD", 20, ">="),
                Comparison("torch", "forwards", "torch / its 9 forwards"),
            ],
            items=batch,
            rounds=3,
            targets_note=notes["road"],
        ),
        Case(
            id="sanity-deletion",
            title=f"Deletion ({deletion_size} steps), batch {batch}",
            build=lambda: _deletion(batch, deletion_size, settings),
            comparisons=[
                Comparison("Quantus PixelFlipping", "torch", "speed-up vs Quantus PixelFlipping", 20, ">="),
                Comparison("torch", "forwards", f"torch / its {deletion_size + 1} forwards"),
            ],
            items=batch,
            rounds=3,
            targets_note=notes["deletion"],
        ),
        Case(
            id="sanity-mprt",
            title=f"MPRT of LaFAM (19 layers), batch {batch}",
            build=lambda: _mprt(batch, size, settings),
            comparisons=[
                Comparison("Quantus MPRT", "torch", "speed-up vs Quantus MPRT", 20, ">="),
                Comparison("torch", "explanations", "torch / its 19 explanations"),
            ],
            items=batch,
            rounds=3,
            targets_note=notes["mprt"],
        ),
    ]
