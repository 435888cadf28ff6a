"""The official ResNet50 releases of six self-supervised methods, as torchvision ResNet50 encoders.

Each release is one declarative ``Release`` record: its official URL, the file name it is cached
under, the hash its authors publish (MoCo v2 only: an md5 prefix), the file layouts it comes in
(``Layout``: where the state dict sits in the file, the key prefix of the ResNet50, of the
projection head, and the parts no embedding uses, dropped by name), the head as the release's own
code builds it, and a one-line training recipe. ``load_release`` turns any of them into a
torchvision ResNet50 whose ``fc`` gives the embedding: ``nn.Identity()`` (pooled 2048-d ``layer4``
features, ``embedding="backbone"``, the default) or the release's projection head
(``embedding="projection"``). Every ResNet50 weight is loaded exactly; a key that is neither the
backbone, the head nor a named unused part, a missing key or a wrong shape is an error naming it.

The layouts follow the releases' own loading code: DINO ``hubconf.py`` / ``utils.load_pretrained_weights``,
MoCo ``main_lincls.py`` + ``moco/builder.py``, MoCo v3 ``main_lincls.py`` + ``moco/builder.py``,
Barlow Twins ``hubconf.py`` + ``main.py``, VICReg ``hubconf.py`` + ``resnet.py`` + ``main_vicreg.py``,
SwAV ``hubconf.py`` + ``src/resnet50.py`` (all in github.com/facebookresearch). SwAV's and VICReg's
own ResNet50 pad by 1 pixel before a padding-2 ``conv1``, which equals torchvision's padding 3,
and otherwise use torchvision's names; so the weights carry over unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from .checkpoints import CheckpointError, load_weights, read_checkpoint, torchvision_names
from .downloads import check_md5, fetch
from .heads import EMBEDDINGS, WIDTH, L2Normalized, NormalizedProjection


def mlp(sizes: tuple[int, ...], bias: bool, last_bias: bool, last_bn: bool = False) -> nn.Sequential:
    """Linear -> BatchNorm1d -> ReLU per hidden layer, then a Linear (and an affine-free BatchNorm1d)."""
    layers: list[nn.Module] = []
    for width_in, width_out in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(width_in, width_out, bias=bias), nn.BatchNorm1d(width_out), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(sizes[-2], sizes[-1], bias=last_bias))
    if last_bn:
        layers.append(nn.BatchNorm1d(sizes[-1], affine=False))
    return nn.Sequential(*layers)


def mocov2_head() -> nn.Module:
    """MoCo v2's ``encoder_q.fc`` (``--mlp``): Linear 2048-2048, ReLU, Linear 2048-128; ``q`` is L2-normalised."""
    return L2Normalized(nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, 128))


def mocov3_head() -> nn.Module:
    """MoCo v3's ResNet projector ``_build_mlp(2, 2048, 4096, 256)``: Linear-BN-ReLU, Linear, BN without affine."""
    return mlp((WIDTH, 4096, 256), bias=False, last_bias=False, last_bn=True)


def barlowtwins_head(width: int = 8192) -> nn.Module:
    """Barlow Twins' projector ``8192-8192-8192``, every Linear without bias."""
    return mlp((WIDTH, width, width, width), bias=False, last_bias=False)


def vicreg_head(width: int = 8192) -> nn.Module:
    """VICReg's ``Projector`` ``8192-8192-8192``: hidden Linears with bias, the last without."""
    return mlp((WIDTH, width, width, width), bias=True, last_bias=False)


def swav_head() -> nn.Module:
    """SwAV's ``projection_head`` 2048-2048-BN-ReLU-128 with its L2-normalised output (``l2norm``)."""
    return NormalizedProjection(out_bias=True)


@dataclass(frozen=True)
class Layout:
    """One file layout of a release: where the state dict sits, and what its keys are.

    Attributes:
        description: the layout in words, for error messages.
        container: the checkpoint entry holding the state dict (None: the file is the state dict).
        backbone: the key prefix of the backbone.
        head: the key prefix of the projection head (None: no head).
        unused: key prefix -> what it is, for the parts no embedding uses; they are dropped.
        marker: a key (after ``backbone``) that every file of this layout has.
    """

    description: str
    container: str | None
    backbone: str
    head: str | None = None
    unused: Mapping[str, str] = field(default_factory=dict)
    marker: str = "conv1.weight"

    def matches(self, checkpoint: Mapping[str, Any]) -> bool:
        """Whether ``checkpoint`` is in this layout: its state dict has the backbone's ``marker`` key."""
        state = checkpoint.get(self.container) if self.container else checkpoint
        return isinstance(state, Mapping) and f"{self.backbone}{self.marker}" in state


TORCHVISION_LAYOUT = Layout(
    "torchvision names, head as fc (e.g. a state dict saved from load_model(...).state_dict())",
    container=None,
    backbone="",
    head="fc.",
)
BACKBONE_ONLY = Layout("backbone only, torchvision names without fc (the default download)", None, "", head="fc.")


def full_checkpoint(**unused: str) -> Layout:
    """Barlow Twins' and VICReg's training checkpoint: ``model`` holds ``module.backbone.`` and ``module.projector.``.

    Args:
        **unused: further key prefixes that no embedding uses -> what they are.
    """
    return Layout(
        "full checkpoint (epoch, model, optimizer)",
        container="model",
        backbone="module.backbone.",
        head="module.projector.",
        unused=unused,
    )


@dataclass(frozen=True)
class Release:
    """An official ResNet50 release: where it is, how its file is laid out, its head, its recipe.

    Attributes:
        name: the model name ``load_model`` knows it by.
        url: the official download.
        file_name: the name it is cached under.
        layouts: the file layouts it comes in.
        recipe: the training recipe in one line.
        source: the release's own code the layouts follow.
        head: builds the projection head as the release's code does (None: no projection embedding).
        md5_prefix: the hash its authors publish, if any.
        head_file: where the head is published, when the default file lacks it.
    """

    name: str
    url: str
    file_name: str
    layouts: tuple[Layout, ...]
    recipe: str
    source: str
    head: Callable[[], nn.Module] | None = None
    md5_prefix: str | None = None
    head_file: str | None = None  # where the head is published, when the default file lacks it

    def layout_of(self, checkpoint: Mapping[str, Any], source: str | Path) -> Layout:
        """The first of this release's layouts (or torchvision's names) that ``checkpoint`` has (``find_layout``)."""
        layouts = self.layouts if BACKBONE_ONLY in self.layouts else (*self.layouts, TORCHVISION_LAYOUT)
        return find_layout(layouts, checkpoint, source, self.name)


def find_layout(layouts: tuple[Layout, ...], checkpoint: Mapping[str, Any], source: str | Path, name: str) -> Layout:
    """The first of ``layouts`` that ``checkpoint`` has.

    Raises:
        CheckpointError: it has none of them (the message lists each layout's marker key and the
            file's top-level keys).
    """
    for layout in layouts:
        if layout.matches(checkpoint):
            return layout
    expected = "; ".join(
        f"{layout.description}: {f'[{layout.container!r}]' if layout.container else ''}"
        f"[{layout.backbone + layout.marker!r}]"
        for layout in layouts
    )
    found = ", ".join(list(checkpoint)[:6])
    raise CheckpointError(
        f"{source} is not a {name} checkpoint: expected one of these layouts ({expected}); "
        f"its top-level keys are {found}{', ...' if len(checkpoint) > 6 else ''}"
    )


RELEASES: dict[str, Release] = {
    release.name: release
    for release in (
        Release(
            name="dino-resnet50",
            url="https://dl.fbaipublicfiles.com/dino/dino_resnet50_pretrain/dino_resnet50_pretrain.pth",
            file_name="dino_resnet50_pretrain.pth",
            layouts=(
                BACKBONE_ONLY,
                Layout(
                    "full checkpoint, teacher's backbone (DINO's evaluations read the teacher)",
                    container="teacher",
                    backbone="module.backbone.",
                    unused={"module.head.": "DINO head (MLP to the prototype scores), not an embedding"},
                ),
            ),
            recipe=(
                "self-distillation (student/teacher, centring, multi-crop) on ImageNet-1k; k-NN 67.5 %, "
                "linear 75.3 %"
            ),
            source=(
                "facebookresearch/dino hubconf.py dino_resnet50, utils.load_pretrained_weights, "
                "main_dino.py"
            ),
        ),
        Release(
            name="mocov2",
            url="https://dl.fbaipublicfiles.com/moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar",
            file_name="moco_v2_800ep_pretrain.pth.tar",
            md5_prefix="a04e12f8",
            layouts=(
                Layout(
                    "main_moco.py checkpoint (epoch, arch, state_dict, optimizer)",
                    container="state_dict",
                    backbone="module.encoder_q.",
                    head="module.encoder_q.fc.",
                    unused={
                        "module.encoder_k.": "momentum (key) encoder",
                        "module.queue": "queue of 65,536 negative keys and its pointer",
                    },
                ),
            ),
            head=mocov2_head,
            recipe=(
                "momentum contrast, 65,536-key queue, MLP head, aug+, cosine schedule, 800 epochs, batch "
                "256, ImageNet-1k; linear 71.1 %"
            ),
            source="facebookresearch/moco main_lincls.py (module.encoder_q.), moco/builder.py, main_moco.py",
        ),
        Release(
            name="mocov3-resnet50",
            url="https://dl.fbaipublicfiles.com/moco-v3/r-50-1000ep/r-50-1000ep.pth.tar",
            file_name="r-50-1000ep.pth.tar",
            layouts=(
                Layout(
                    "main_moco.py checkpoint (epoch, arch, state_dict, optimizer, scaler)",
                    container="state_dict",
                    backbone="module.base_encoder.",
                    head="module.base_encoder.fc.",
                    unused={
                        "module.momentum_encoder.": "momentum encoder with its projector",
                        "module.predictor.": "predictor MLP",
                    },
                ),
            ),
            head=mocov3_head,
            recipe=(
                "momentum encoder + predictor, no queue, LARS lr 0.3, wd 1.5e-6, momentum 0.996 (cosine to "
                "1), 1000 epochs, batch 4096, ImageNet-1k; linear 74.6 %"
            ),
            source=(
                "facebookresearch/moco-v3 main_lincls.py (module.base_encoder.), moco/builder.py "
                "MoCo_ResNet, main_moco.py"
            ),
        ),
        Release(
            name="barlowtwins",
            url="https://dl.fbaipublicfiles.com/barlowtwins/ljng/resnet50.pth",
            file_name="barlowtwins_ljng_resnet50.pth",
            layouts=(
                BACKBONE_ONLY,
                full_checkpoint(**{"module.bn.": "affine-free BatchNorm of the loss's cross-correlation"}),
            ),
            head=barlowtwins_head,
            head_file="https://dl.fbaipublicfiles.com/barlowtwins/ljng/checkpoint.pth",
            recipe=(
                "cross-correlation of two views' 8192-d projections driven to the identity (lambda "
                "0.0051), LARS, 1000 epochs, batch 2048, ImageNet-1k; linear 73.5 %"
            ),
            source=(
                "facebookresearch/barlowtwins hubconf.py, main.py (BarlowTwins, checkpoint and "
                "resnet50.pth saving), evaluate.py"
            ),
        ),
        Release(
            name="vicreg",
            url="https://dl.fbaipublicfiles.com/vicreg/resnet50.pth",
            file_name="vicreg_resnet50.pth",
            layouts=(
                BACKBONE_ONLY,
                full_checkpoint(),
            ),
            head=vicreg_head,
            head_file="https://dl.fbaipublicfiles.com/vicreg/resnet50_fullckpt.pth",
            recipe=(
                "variance-invariance-covariance loss on an 8192-8192-8192 projector, LARS base lr 0.2, "
                "1000 epochs, batch 2048, ImageNet-1k; linear 73.2 %"
            ),
            source=(
                "facebookresearch/vicreg hubconf.py, resnet.py (torchvision names, no fc), main_vicreg.py "
                "(VICReg, Projector), evaluate.py"
            ),
        ),
        Release(
            name="swav-fair",
            url="https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar",
            file_name="swav_800ep_pretrain.pth.tar",
            layouts=(
                Layout(
                    "released state dict (module. prefix)",
                    container=None,
                    backbone="module.",
                    head="module.projection_head.",
                    unused={"module.prototypes.": "3000 prototypes"},
                ),
                Layout(
                    "main_swav.py checkpoint (epoch, state_dict, optimizer, amp)",
                    container="state_dict",
                    backbone="module.",
                    head="module.projection_head.",
                    unused={"module.prototypes.": "3000 prototypes"},
                ),
            ),
            head=swav_head,
            recipe=(
                "online clustering (Sinkhorn, 3000 prototypes), multi-crop 2x224 + 6x96, LARS, 800 epochs, "
                "batch 4096, ImageNet-1k; linear 75.3 %"
            ),
            source=(
                "facebookresearch/swav hubconf.py resnet50 (module. prefix), src/resnet50.py, "
                "eval_linear.py, main_swav.py"
            ),
        ),
    )
}


def load_release(
    name: str,
    weights: str | None = "default",
    checkpoint: str | Path | None = None,
    embedding: str | None = None,
    trust: bool = False,
    weights_dir: str | Path | None = None,
) -> nn.Module:
    """A torchvision ResNet50 with release ``name``'s weights; ``fc`` gives the chosen embedding.

    Args:
        name: a key of ``RELEASES``.
        weights: "default" or None (random init, nothing read, when no ``checkpoint`` is given).
        checkpoint: a local file in one of the release's layouts or in torchvision's names; without
            it the weights come from the official URL, cached by ``downloads.fetch`` (in
            ``weights_dir`` if given) and checked against the published hash where there is one.
        embedding: "backbone" (None: the default) or "projection".
        trust: unpickle the file fully (it can run code; see ``read_checkpoint``).
        weights_dir: the folder the download is cached in.

    Raises:
        ValueError: ``weights`` or ``embedding`` is not one of its choices, or "projection" is asked
            of a release without a head, or of a default download that holds the backbone only.
        CheckpointError: the file cannot be read safely, is in none of the release's layouts, or does not fit.
        DownloadError: the download fails or does not match the published hash.
    """
    release = RELEASES[name]
    if weights not in ("default", None):
        raise ValueError(f"weights for {name!r} must be 'default' or None, got {weights!r}")
    embedding = embedding or "backbone"
    if embedding not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {embedding!r}")
    if embedding == "projection" and release.head is None:
        raise ValueError(
            f"{name} has no projection embedding: its release ships no projection head that gives one; "
            "use embedding='backbone'"
        )
    if embedding == "projection" and checkpoint is None and weights is not None and release.head_file:
        raise ValueError(
            f"{name}'s default download ({release.url}) holds the backbone only; for embedding='projection' "
            f"download the full checkpoint {release.head_file} and pass it as checkpoint=..."
        )
    random_init = checkpoint is None and weights is None
    with torch.device("cpu" if random_init else "meta"):  # weights that are loaded need no initialisation
        model = torchvision.models.resnet50(weights=None)
        model.fc = nn.Identity() if embedding == "backbone" else release.head()
    if random_init:
        return model
    model = model.to_empty(device="cpu")
    source = Path(checkpoint) if checkpoint is not None else download(release, weights_dir)
    state = release_state_dict(release, read_checkpoint(source, trust), source, embedding)
    load_weights(model, state, source, f"{name} ({embedding} embedding)")
    return model


def release_state_dict(
    release: Release, checkpoint: Mapping[str, Any], source: str | Path, embedding: str
) -> dict[str, Any]:
    """The checkpoint's weights under torchvision's ResNet50 names, the head (for "projection") as ``fc``.

    The release's unused parts, and the head for the backbone embedding, are dropped by name;
    every other key is kept under its own name, so that loading it reports it as unexpected.

    Raises:
        CheckpointError: the file is in none of the release's layouts, or lacks the head that
            ``embedding="projection"`` needs.
    """
    layout = release.layout_of(checkpoint, source)
    state = checkpoint[layout.container] if layout.container else checkpoint
    if embedding == "projection" and not (layout.head and any(key.startswith(layout.head) for key in state)):
        hint = f"; the full checkpoint {release.head_file} has it" if release.head_file else ""
        raise CheckpointError(
            f"{source} ({release.name}, {layout.description}) holds no projection head "
            f"(keys {layout.head or 'of a head'}*); embedding='projection' needs one{hint}"
        )
    return torchvision_names(state, layout.backbone, layout.head, layout.unused, keep_head=embedding == "projection")


def download(release: Release, weights_dir: str | Path | None = None) -> Path:
    """The release's file from its official URL, cached under ``release.file_name``, hash-checked.

    Raises:
        DownloadError: the download fails or does not match the published md5.
    """
    path = fetch(release.url, weights_dir, file_name=release.file_name)
    if release.md5_prefix:
        check_md5(path, release.url, release.md5_prefix)
    return path


__all__ = ["Layout", "RELEASES", "Release", "find_layout", "load_release", "release_state_dict"]
