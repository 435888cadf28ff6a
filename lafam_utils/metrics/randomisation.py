"""Model randomisation sanity checks: MPRT (Adebayo et al. 2018), eMPRT and sMPRT (Hedström et al. 2023).

Does a map depend on what the model learned? Each check compares the maps of a model with those
of the same model with its parameters randomised, as Quantus 0.6.0 defines them:

- the randomised layers are the modules that have ``reset_parameters`` (convolutions, linear
  layers, norms), in ``named_modules`` order ("bottom_up") or reversed ("top_down", the cascade
  of Adebayo et al.); each is re-initialised by its own ``reset_parameters`` after seeding torch
  with ``seed + 1`` (so its new weights depend on the seed and its shape, not on the order, and
  the fully randomised model is the same for every order);
- **MPRT**: the similarity (Spearman rank correlation by default) of the map of the original model
  and the map after each step of the cascade, maps taken in absolute value and divided by their
  maximum; its score is the similarity after the last step (every layer randomised, Quantus'
  ``return_last_correlation``); lower means the map depends more on the learned weights;
- **eMPRT**: the discrete entropy (100 equal-width bins) of the fully randomised model's map over
  that of the original's (Quantus' ``scores_fraction_explanation``; Quantus returns this ratio
  minus 1); higher means randomisation makes the map more complex, i.e. it depended on the weights;
- **sMPRT**: MPRT between the fully randomised and the original model on maps averaged over
  ``samples`` noisy copies of the image (Gaussian noise of ``noise_magnitude`` times the image's
  value range; the last copy noise-free), each map divided by the root of its mean square.

Differences from Quantus (docs/metrics.md measures them): maps are normalised per map, not over
the batch; the same noise draws (from ``seed``) serve the original and the randomised model in
sMPRT, where Quantus draws new ones from NumPy's global generator; parameters are reset on the CPU
so that a seed gives the same randomised model on every device; torch's global generator is left
as it was.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

Order = Literal["top_down", "bottom_up"]
Similarity = Literal["spearman", "pearson", "ssim"]
ExplainerFactory = Callable[[nn.Module], Callable[..., Tensor]]
"""Builds the explainer of a model: ``factory(model)(x)`` gives (B, H, W) maps."""

ORDERS = ("top_down", "bottom_up")
SSIM_WINDOW = 7
SSIM_K1, SSIM_K2 = 0.01, 0.03
ENTROPY_BINS = 100


def randomisable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules Quantus randomises: those with ``reset_parameters``, in ``named_modules`` order."""
    return [(name, module) for name, module in model.named_modules() if hasattr(module, "reset_parameters")]


def reset_layer(module: nn.Module, seed: int) -> None:
    """Re-initialise ``module`` in place as Quantus does: seed torch with ``seed + 1``, ``reset_parameters()``.

    The reset runs on the CPU (the module is moved there and back), so a seed gives the same
    weights on every device; torch's global random state is restored afterwards.
    """
    device = next(module.parameters(), next(module.buffers(), torch.empty(0))).device
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed + 1)
        if device.type != "cpu":
            module.to("cpu")
        module.reset_parameters()
        if device.type != "cpu":
            module.to(device)


def cascade(
    model: nn.Module, order: Order = "top_down", seed: int = 42, depth: int | None = None
) -> Iterator[tuple[str, nn.Module]]:
    """Cascading randomisation: a copy of ``model`` with one more layer (or group) randomised at each step.

    Args:
        model: the network; it is not modified.
        order: "top_down" (the output layer first, Adebayo et al.'s cascade) or "bottom_up".
        seed: Quantus' seed (each layer is reset after seeding with ``seed + 1``).
        depth: None: a step after every randomisable module (Quantus); ``k``: a step after every
            group of modules that share the first ``k`` parts of their name (1: the model's
            children, e.g. a ResNet's ``layer4``); the groups' modules are reset one by one as above.

    Yields:
        (the step's layer or group name, the copy as randomised so far); the same copy every step.

    Raises:
        ValueError: ``order`` or ``depth`` is invalid, or the model has no randomisable layer.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise ValueError(f"depth must be a positive integer or None, got {depth!r}")
    randomised = copy.deepcopy(model)
    layers = randomisable_layers(randomised)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no module with reset_parameters: nothing to randomise")
    if order == "top_down":
        layers.reverse()
    for position, (name, module) in enumerate(layers):
        reset_layer(module, seed)
        step = name if depth is None else ".".join(name.split(".")[:depth])
        following = None if position + 1 == len(layers) else layers[position + 1][0]
        if depth is None or following is None or ".".join(following.split(".")[:depth]) != step:
            yield step or type(model).__name__, randomised


def fully_randomised(model: nn.Module, seed: int = 42) -> nn.Module:
    """A copy of ``model`` with every randomisable layer reset (the last step of any cascade)."""
    randomised = copy.deepcopy(model)
    for _, module in randomisable_layers(randomised):
        reset_layer(module, seed)
    return randomised


def explain(explainer: Callable[..., Tensor], x: Tensor, target: Tensor | None) -> Tensor:
    """``explainer``'s maps of ``x``, explaining ``target`` where the method explains a class score."""
    if getattr(explainer, "needs_labels", False):
        return explainer(x, target=target).detach()
    return explainer(x).detach()


def prepared(maps: Tensor, abs: bool = True, normalise: Callable[[Tensor], Tensor] | None = None) -> Tensor:  # noqa: A002
    """(B, ...) maps as (B, n) float64 rows for a similarity: ``normalise``-d first, then in absolute value."""
    flat = maps.flatten(1).double()
    flat = normalise(flat) if normalise is not None else flat
    return flat.abs() if abs else flat


def normalise_by_max(maps: Tensor) -> Tensor:
    """Each flattened map divided by its maximum magnitude (an all-zero map stays zero)."""
    peak = maps.abs().amax(dim=1, keepdim=True)
    return maps / torch.where(peak > 0, peak, 1.0)


def normalise_by_second_moment(maps: Tensor) -> Tensor:
    """Each flattened map divided by the root of its mean square (an all-zero map stays zero)."""
    scale = maps.square().mean(dim=1, keepdim=True).sqrt()
    return maps / torch.where(scale > 0, scale, 1.0)


def average_ranks(values: Tensor) -> Tensor:
    """Each row's ranks 1..n, tied values sharing their mean rank (``scipy.stats.rankdata``), float64."""
    ordered, order = values.sort(dim=1, stable=True)
    n = values.shape[1]
    positions = torch.arange(n, device=values.device).expand_as(ordered)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    first = torch.where(starts, positions, 0).cummax(dim=1).values
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    last = torch.where(ends, positions, n - 1).flip(1).cummin(dim=1).values.flip(1)
    mean_rank = (first + last).double() / 2 + 1
    return torch.empty_like(mean_rank).scatter_(1, order, mean_rank)


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Pearson correlation of (B, n) tensors in float64; NaN where a row is constant."""
    a, b = a.double(), b.double()
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.square().sum(dim=1) * b.square().sum(dim=1)).sqrt()


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Spearman rank correlation (Pearson of average ranks), as ``scipy.stats.spearmanr``."""
    return pearson(average_ranks(a), average_ranks(b))


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise SSIM of the flattened maps, as Quantus' ``ssim`` computes it (``skimage``'s 1-D SSIM).

    Windows of 7 consecutive values of the flattened map, sample covariances, K1 = 0.01,
    K2 = 0.03, the data range that of both rows together; the mean over the windows that lie
    fully inside the row.
    """
    a, b = a.double(), b.double()
    data_range = torch.maximum(a.amax(dim=1), b.amax(dim=1)) - torch.minimum(a.amin(dim=1), b.amin(dim=1))
    c1 = (SSIM_K1 * data_range)[:, None] ** 2
    c2 = (SSIM_K2 * data_range)[:, None] ** 2

    def window_mean(v: Tensor) -> Tensor:
        return v.unfold(1, SSIM_WINDOW, 1).mean(dim=2)

    mean_a, mean_b = window_mean(a), window_mean(b)
    covariance_scale = SSIM_WINDOW / (SSIM_WINDOW - 1)
    var_a = covariance_scale * (window_mean(a * a) - mean_a * mean_a)
    var_b = covariance_scale * (window_mean(b * b) - mean_b * mean_b)
    cov = covariance_scale * (window_mean(a * b) - mean_a * mean_b)
    index = (2 * mean_a * mean_b + c1) * (2 * cov + c2) / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2))
    return index.mean(dim=1)


SIMILARITIES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"spearman": spearman, "pearson": pearson, "ssim": ssim}


def similarity_function(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The similarity called ``name`` (``SIMILARITIES``).

    Raises:
        ValueError: ``name`` is unknown.
    """
    if name not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {list(SIMILARITIES)}, got {name!r}")
    return SIMILARITIES[name]


def discrete_entropy(maps: Tensor, bins: int = ENTROPY_BINS) -> Tensor:
    """Each map's entropy (natural log) over ``bins`` equal-width bins between its minimum and maximum.

    NumPy's ``histogram`` binning (a constant map's range widened by 1/2 either side; the maximum in
    the last bin) computed in the maps' own dtype as NumPy does, then ``scipy.stats.entropy`` of the
    counts. (B, ...) maps -> (B,) float64.
    """
    values = maps.flatten(1)
    low, high = values.amin(dim=1, keepdim=True), values.amax(dim=1, keepdim=True)
    constant = low == high
    low, high = torch.where(constant, low - 0.5, low), torch.where(constant, high + 0.5, high)
    span = high - low
    index = ((values - low) / span * bins).long().clamp(max=bins - 1)
    step = span / bins
    positions = torch.arange(bins + 1, device=values.device, dtype=values.dtype)
    edges = positions * step + low
    edges[:, -1:] = high
    index = index - (values < edges.gather(1, index)).long()
    index = index + ((values >= edges.gather(1, index + 1)) & (index != bins - 1)).long()
    counts = torch.zeros(len(values), bins, dtype=torch.float64, device=values.device)
    counts.scatter_add_(1, index, torch.ones_like(index, dtype=torch.float64))
    p = counts / values.shape[1]
    return -(torch.where(p > 0, p * p.log(), 0.0)).sum(dim=1)


@dataclass(frozen=True)
class MPRTResult:
    """MPRT of a batch: one similarity per image and cascade step.

    Attributes:
        layers: the steps' layer (or group) names, in the order they were randomised.
        similarities: (B, steps) float64: the similarity of each image's map after each step
            with its map from the original model.
        randomised: the fully randomised copy of the model (the last step).
        randomised_maps: (B, H, W) the maps of the fully randomised model.
    """

    layers: list[str]
    similarities: Tensor
    randomised: nn.Module
    randomised_maps: Tensor

    @property
    def score(self) -> Tensor:
        """(B,) the similarity after the last step: every layer randomised."""
        return self.similarities[:, -1]


def cascade_maps(
    model: nn.Module,
    factory: ExplainerFactory,
    x: Tensor,
    target: Tensor | None = None,
    order: Order = "top_down",
    seed: int = 42,
    depth: int | None = None,
) -> Iterator[tuple[str, nn.Module, Tensor]]:
    """The maps of ``x`` at every step of the cascade (``cascade``), for a figure or MPRT.

    Args:
        model: the network (not modified).
        factory: builds the explainer of a model (called once, on the randomised copy).
        x: (B, 3, H, W) images on the model's device.
        target: the classes a label-needing method explains (the original model's predictions).
        order, seed, depth: as in ``cascade``.

    Yields:
        (step name, the copy randomised up to that step, its (B, H, W) maps).
    """
    explainer = None
    for name, randomised in cascade(model, order, seed, depth):
        explainer = explainer or factory(randomised)
        yield name, randomised, explain(explainer, x, target)


def mprt(
    model: nn.Module,
    factory: ExplainerFactory,
    x: Tensor,
    maps: Tensor,
    target: Tensor | None = None,
    *,
    order: Order = "top_down",
    seed: int = 42,
    depth: int | None = None,
    similarity: Similarity = "spearman",
    abs: bool = True,  # noqa: A002 - Quantus' name
    normalise: bool = True,
) -> MPRTResult:
    """MPRT (Adebayo et al. 2018) with Quantus' definitions: the map's similarity along the cascade.

    Args:
        model: the network (not modified).
        factory: builds the explainer of a model; ``factory(model)(x)`` gave ``maps``.
        x: (B, 3, H, W) images.
        maps: (B, H, W) maps of the original model.
        target: the classes a label-needing method explains (the original model's predictions).
        order, seed, depth: the cascade (``cascade``); Quantus' MPRT: "top_down", seed 42.
        similarity: "spearman" (Quantus' default), "pearson" or "ssim" (``SIMILARITIES``).
        abs, normalise: take maps in absolute value, divide each by its maximum magnitude (Quantus' defaults).

    Returns:
        The similarities per image and step (``MPRTResult``).
    """
    compare = similarity_function(similarity)
    normaliser = normalise_by_max if normalise else None
    original = prepared(maps, abs, normaliser)
    if similarity == "spearman":  # the trained map's ranks once, not at every step
        original_ranks = average_ranks(original)
        compare = lambda _, b: pearson(original_ranks, average_ranks(b))  # noqa: E731
    layers, columns, last = [], [], None
    for name, randomised, randomised_maps in cascade_maps(model, factory, x, target, order, seed, depth):
        layers.append(name)
        columns.append(compare(original, prepared(randomised_maps, abs, normaliser)))
        last = randomised, randomised_maps
    return MPRTResult(layers, torch.stack(columns, dim=1), *last)


def cascade_panel(
    model: nn.Module,
    factories: Mapping[str, ExplainerFactory],
    x: Tensor,
    target: Tensor | None = None,
    *,
    order: Order = "top_down",
    seed: int = 42,
    depth: int | None = None,
    similarity: Similarity = "spearman",
) -> tuple[list[str], dict[str, list[Tensor]], dict[str, list[float]]]:
    """Adebayo et al.'s Fig. 2 for one image: each method's map of the trained model and after each step.

    Args:
        model: the network (not modified).
        factories: a row title -> the factory of its method's explainer.
        x: (1, 3, H, W) one image.
        target: (1,) the class a label-needing method explains (the trained model's prediction).
        order, seed, depth: the cascade (``cascade``).
        similarity: the similarity written under each map (as in ``mprt``).

    Returns:
        The steps' names, per row the maps ((H, W): trained, then after each step) and per row
        each step's similarity with the trained map.
    """
    compare = similarity_function(similarity)
    steps: list[str] = []
    rows: dict[str, list[Tensor]] = {}
    similarities: dict[str, list[float]] = {}
    for title, factory in factories.items():
        trained = explain(factory(model), x, target)
        rows[title], similarities[title], steps = [trained[0]], [], []
        for name, _, maps in cascade_maps(model, factory, x, target, order, seed, depth):
            steps.append(name)
            rows[title].append(maps[0])
            pair = (prepared(m, True, normalise_by_max) for m in (trained, maps))
            similarities[title].append(float(compare(*pair)[0]))
    return steps, rows, similarities


def efficient_mprt(maps: Tensor, randomised_maps: Tensor, bins: int = ENTROPY_BINS) -> Tensor:
    """eMPRT (Hedström et al. 2023): the fully randomised model's map entropy over the original's.

    Quantus' ``EfficientMPRT`` returns this ratio minus 1; NaN where the original map's entropy is 0.

    Args:
        maps: (B, H, W) maps of the original model (raw: Quantus' eMPRT takes no abs and no normalisation).
        randomised_maps: (B, H, W) maps of the fully randomised model (``fully_randomised``).
        bins: the histogram's equal-width bins (Quantus: 100).

    Returns:
        (B,) float64 entropy ratios.
    """
    before, after = discrete_entropy(maps, bins), discrete_entropy(randomised_maps, bins)
    return torch.where(before > 0, after / before, torch.nan)


def smooth_maps(
    explainer: Callable[..., Tensor],
    x: Tensor,
    samples: int,
    magnitude: float,
    seed: int,
    target: Tensor | None = None,
) -> Tensor:
    """Maps averaged over ``samples`` copies of ``x``, all but the last with Gaussian noise added.

    Copy ``n < samples - 1`` is ``x + magnitude * (max(x) - min(x)) * z_n`` (per image), with
    ``z_n`` the n-th standard normal draw of one image's shape from a CPU generator seeded with
    ``seed``: the same draws on every device and for every image, so that an image's maps do not
    depend on the batch it is in.

    Args:
        explainer: the method, built on the model to explain.
        x: (B, 3, H, W) images.
        samples: the number of copies; the last one is ``x`` itself.
        magnitude: the noise's standard deviation relative to each image's value range (Quantus: 0.1).
        seed: the noise generator's seed.
        target: the classes a label-needing method explains.

    Returns:
        (B, H, W) float32 mean maps.
    """
    generator = torch.Generator().manual_seed(seed)
    scale = magnitude * (x.flatten(1).amax(dim=1) - x.flatten(1).amin(dim=1))[:, None, None, None]
    total = explain(explainer, x, target).float()
    for _ in range(samples - 1):
        draw = torch.randn(x.shape[1:], generator=generator).to(x.device, x.dtype)
        total = total + explain(explainer, x + scale * draw, target).float()
    return total / samples


def smooth_mprt(
    model: nn.Module,
    factory: ExplainerFactory,
    x: Tensor,
    target: Tensor | None = None,
    *,
    randomised: nn.Module | None = None,
    samples: int = 50,
    magnitude: float = 0.1,
    seed: int = 42,
    similarity: Similarity = "spearman",
    abs: bool = True,  # noqa: A002 - Quantus' name
    normalise: bool = True,
) -> Tensor:
    """sMPRT (Hedström et al. 2023): MPRT of the fully randomised model on noise-averaged maps.

    Args:
        model: the network (not modified).
        factory: builds the explainer of a model.
        x: (B, 3, H, W) images.
        target: the classes a label-needing method explains (the original model's predictions).
        randomised: the fully randomised model, if already made (else ``fully_randomised(model, seed)``).
        samples: copies per image, the last one noise-free (Quantus: 50).
        magnitude: the noise's standard deviation relative to each image's value range (Quantus: 0.1).
        seed: the randomisation's seed (Quantus' 42) and the noise's (``smooth_maps``: the same
            draws for both models).
        similarity: as in ``mprt``.
        abs, normalise: take maps in absolute value, divide each by the root of its mean square (Quantus' defaults).

    Returns:
        (B,) float64 similarities.

    Raises:
        ValueError: ``samples`` is below 1.
    """
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    compare = similarity_function(similarity)
    randomised = randomised if randomised is not None else fully_randomised(model, seed)
    normaliser = normalise_by_second_moment if normalise else None
    original = smooth_maps(factory(model), x, samples, magnitude, seed, target)
    after = smooth_maps(factory(randomised), x, samples, magnitude, seed, target)
    return compare(prepared(original, abs, normaliser), prepared(after, abs, normaliser))


__all__ = [
    "ENTROPY_BINS",
    "MPRTResult",
    "SIMILARITIES",
    "average_ranks",
    "cascade",
    "cascade_maps",
    "cascade_panel",
    "discrete_entropy",
    "efficient_mprt",
    "explain",
    "fully_randomised",
    "mprt",
    "normalise_by_max",
    "normalise_by_second_moment",
    "pearson",
    "prepared",
    "randomisable_layers",
    "reset_layer",
    "similarity_function",
    "smooth_maps",
    "smooth_mprt",
    "spearman",
    "ssim",
]
