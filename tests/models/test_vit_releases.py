"""The DINO and DINOv2 ViT releases, loaded from checkpoints written here in each release's exact
layout (keys, shapes, LayerScale, registers, ``mask_token``, DINO's full checkpoint) and compared
with a forward written in this file from the official code (facebookresearch/dino
``vision_transformer.py``, facebookresearch/dinov2 ``dinov2/models/vision_transformer.py`` and
``dinov2/layers``), which reads the state dict directly. The files are built at a tiny width and
depth; patch size, position-embedding grid, registers, LayerScale and interpolation are the
release's own."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import lafam_utils as lu
from lafam_utils.models import CheckpointError
from lafam_utils.models.vit import VisionTransformer, ViTConfig
from lafam_utils.models.vit_releases import VIT_RELEASES
from lafam_utils.report.titles import MODEL_TITLES

NAMES = list(VIT_RELEASES)
DINO = [name for name in NAMES if name.startswith("dino-")]
DINOV2 = [name for name in NAMES if name.startswith("dinov2-")]
TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2}


def official_state(config: ViTConfig, seed: int = 0) -> dict[str, Tensor]:
    """A backbone state dict with the official keys and shapes of ``config``'s release, random values
    (norms and LayerScale around 1, so that every tensor changes the output); DINOv2's files also
    hold ``mask_token``."""
    generator = torch.Generator().manual_seed(seed)
    dim, hidden, grid = config.embed_dim, int(config.embed_dim * config.mlp_ratio), config.img_size // config.patch_size

    def noise(*shape: int, scale: float = 0.1) -> Tensor:
        return torch.randn(*shape, generator=generator) * scale

    def around_one(size: int) -> Tensor:
        return 1.0 + noise(size, scale=0.2)

    state = {
        "cls_token": noise(1, 1, dim, scale=1.0),
        "pos_embed": noise(1, grid * grid + 1, dim, scale=0.5),
        "patch_embed.proj.weight": noise(dim, 3, config.patch_size, config.patch_size),
        "patch_embed.proj.bias": noise(dim),
    }
    if config.num_register_tokens:
        state["register_tokens"] = noise(1, config.num_register_tokens, dim, scale=1.0)
    if config.layer_scale is not None:
        state["mask_token"] = noise(1, dim)
    for index in range(config.depth):
        block = f"blocks.{index}."
        state |= {
            block + "norm1.weight": around_one(dim),
            block + "norm1.bias": noise(dim),
            block + "attn.qkv.weight": noise(3 * dim, dim, scale=1.5 / dim**0.5),
            block + "attn.qkv.bias": noise(3 * dim),
            block + "attn.proj.weight": noise(dim, dim, scale=1.5 / dim**0.5),
            block + "attn.proj.bias": noise(dim),
            block + "norm2.weight": around_one(dim),
            block + "norm2.bias": noise(dim),
            block + "mlp.fc1.weight": noise(hidden, dim, scale=1.5 / dim**0.5),
            block + "mlp.fc1.bias": noise(hidden),
            block + "mlp.fc2.weight": noise(dim, hidden, scale=1.5 / hidden**0.5),
            block + "mlp.fc2.bias": noise(dim),
        }
        if config.layer_scale is not None:
            state[block + "ls1.gamma"] = around_one(dim)
            state[block + "ls2.gamma"] = around_one(dim)
    state |= {"norm.weight": around_one(dim), "norm.bias": noise(dim)}
    return state


def official_forward(state: dict[str, Tensor], config: ViTConfig, x: Tensor) -> Tensor:
    """The official forward, from the state dict: ``prepare_tokens(_with_masks)`` with
    ``interpolate_pos_encoding``, the blocks (DINO: explicit softmax attention; DINOv2:
    ``scaled_dot_product_attention`` and LayerScale), ``norm``, the CLS token."""
    batch, _, w, h = x.shape  # the official code's names: w is the height
    dim, heads = config.embed_dim, config.num_heads
    tokens = F.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=config.patch_size)
    tokens = tokens.flatten(2).transpose(1, 2)
    tokens = torch.cat((state["cls_token"].expand(batch, -1, -1), tokens), dim=1)
    pos_embed = state["pos_embed"]
    npatch, n = tokens.shape[1] - 1, pos_embed.shape[1] - 1
    if not (npatch == n and w == h):
        m = int(math.sqrt(n))
        w0, h0 = w // config.patch_size, h // config.patch_size
        if config.interpolate_offset:
            kwargs = {
                "scale_factor": (float(w0 + config.interpolate_offset) / m, float(h0 + config.interpolate_offset) / m)
            }
        else:
            kwargs = {"size": (w0, h0)}
        patch_pos_embed = F.interpolate(
            pos_embed[:, 1:].reshape(1, m, m, dim).permute(0, 3, 1, 2),
            mode="bicubic",
            antialias=config.interpolate_antialias,
            **kwargs,
        )
        assert (w0, h0) == patch_pos_embed.shape[-2:]
        pos_embed = torch.cat((pos_embed[:, :1], patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)), dim=1)
    tokens = tokens + pos_embed
    if config.num_register_tokens:
        registers = state["register_tokens"].expand(batch, -1, -1)
        tokens = torch.cat((tokens[:, :1], registers, tokens[:, 1:]), dim=1)
    count = tokens.shape[1]
    for index in range(config.depth):
        p = f"blocks.{index}."
        y = F.layer_norm(tokens, (dim,), state[p + "norm1.weight"], state[p + "norm1.bias"], eps=1e-6)
        qkv = F.linear(y, state[p + "attn.qkv.weight"], state[p + "attn.qkv.bias"])
        q, k, v = qkv.reshape(batch, count, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        if config.layer_scale is None:
            attended = ((q @ k.transpose(-2, -1)) * (dim // heads) ** -0.5).softmax(dim=-1) @ v
        else:
            attended = F.scaled_dot_product_attention(q, k, v)
        y = F.linear(
            attended.transpose(1, 2).reshape(batch, count, dim),
            state[p + "attn.proj.weight"],
            state[p + "attn.proj.bias"],
        )
        tokens = tokens + (y * state[p + "ls1.gamma"] if config.layer_scale is not None else y)
        y = F.layer_norm(tokens, (dim,), state[p + "norm2.weight"], state[p + "norm2.bias"], eps=1e-6)
        y = F.linear(
            F.gelu(F.linear(y, state[p + "mlp.fc1.weight"], state[p + "mlp.fc1.bias"])),
            state[p + "mlp.fc2.weight"],
            state[p + "mlp.fc2.bias"],
        )
        tokens = tokens + (y * state[p + "ls2.gamma"] if config.layer_scale is not None else y)
    return F.layer_norm(tokens, (dim,), state["norm.weight"], state["norm.bias"], eps=1e-6)[:, 0]


def tiny(monkeypatch: pytest.MonkeyPatch, name: str) -> ViTConfig:
    """Make release ``name`` tiny (width 32, depth 2, 2 heads) for this test; its layout stays."""
    release = VIT_RELEASES[name]
    config = dataclasses.replace(release.config, **TINY)
    monkeypatch.setitem(VIT_RELEASES, name, dataclasses.replace(release, config=config))
    return config


def images(config: ViTConfig, batch: int, rows: int, cols: int, seed: int = 1) -> Tensor:
    """A batch of rows x cols patches; DINO (which drops a remainder) gets a few extra pixels."""
    extra = 0 if config.whole_patches else 5
    size = (rows * config.patch_size + extra, cols * config.patch_size + extra)
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


def write(tmp_path: Path, content: object, file_name: str = "release.pth") -> Path:
    path = tmp_path / file_name
    torch.save(content, path)
    return path


def test_the_eight_releases_and_their_titles():
    assert NAMES == [
        "dino-vits16", "dino-vits8", "dino-vitb16", "dino-vitb8",
        "dinov2-vits14", "dinov2-vitb14", "dinov2-vits14-reg", "dinov2-vitb14-reg",
    ]
    assert all(name in MODEL_TITLES for name in NAMES)
    assert len({release.file_name for release in VIT_RELEASES.values()}) == len(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_real_architecture_sizes(name):
    config = VIT_RELEASES[name].config
    with torch.device("meta"):
        model = VisionTransformer(config)
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    grid = config.img_size // config.patch_size
    assert shapes["pos_embed"] == (1, grid * grid + 1, config.embed_dim)
    assert shapes["patch_embed.proj.weight"] == (config.embed_dim, 3, config.patch_size, config.patch_size)
    assert shapes["blocks.11.attn.qkv.weight"] == (3 * config.embed_dim, config.embed_dim)
    assert shapes["blocks.11.mlp.fc1.weight"] == (4 * config.embed_dim, config.embed_dim)
    assert ("blocks.11.ls1.gamma" in shapes) == (name in DINOV2)
    assert shapes.get("register_tokens") == ((1, 4, config.embed_dim) if name.endswith("-reg") else None)
    assert "blocks.12.norm1.weight" not in shapes
    assert all(
        isinstance(model.get_submodule(layer), torch.nn.Module)
        for layer in ("blocks.11", "blocks.11.norm1", "blocks.11.attn", "norm")
    )
    published = {"vits": 21e6, "vitb": 86e6}[name.split("-")[1][:4]]
    assert abs(sum(value.numel() for value in model.state_dict().values()) / published - 1) < 0.1  # "21 M", "86 M"


@pytest.mark.parametrize("name", NAMES)
def test_the_real_architecture_keys_equal_the_official_ones(name):
    config = VIT_RELEASES[name].config
    with torch.device("meta"):
        model = VisionTransformer(config)
        official = official_state(config)
    official.pop("mask_token", None)
    assert {key: tuple(value.shape) for key, value in model.state_dict().items()} == {
        key: tuple(value.shape) for key, value in official.items()
    }


@pytest.mark.parametrize("name", [name for name in NAMES if "vits" in name])
def test_random_init_loads_nothing_and_gives_the_cls_embedding(name, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *args, **kwargs: pytest.fail("downloaded"))
    model = lu.load_model(name, weights=None)
    assert not model.training
    x = images(model.config, 1, 2, 3)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, model.config.embed_dim)
    assert torch.isfinite(out).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in NAMES if "vitb" in name])
def test_random_init_of_the_base_models(name):
    model = lu.load_model(name, weights=None)
    with torch.no_grad():
        assert model(images(model.config, 1, 2, 2)).shape == (1, 768)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("batch", "rows", "cols"), [(2, 3, 5), (1, 1, 1), (1, 4, 4)])
def test_the_release_file_loads_exactly_and_equals_the_official_forward(name, batch, rows, cols, tmp_path, monkeypatch):
    config = tiny(monkeypatch, name)
    state = official_state(config)
    model = lu.load_model(name, checkpoint=write(tmp_path, state))
    x = images(config, batch, rows, cols)
    with torch.no_grad():
        torch.testing.assert_close(model(x), official_forward(state, config, x), rtol=1e-5, atol=1e-5)
    assert model.num_prefix_tokens == 1 + config.num_register_tokens


@pytest.mark.parametrize("name", ["dino-vits16", "dinov2-vits14", "dinov2-vitb14-reg"])
def test_at_the_training_grid_and_at_its_patch_count_on_a_non_square_image(name, tmp_path, monkeypatch):
    config = tiny(monkeypatch, name)
    state = official_state(config)
    model = lu.load_model(name, checkpoint=write(tmp_path, state))
    grid = config.img_size // config.patch_size
    square = torch.randn(1, 3, grid * config.patch_size, grid * config.patch_size)
    with torch.no_grad():
        torch.testing.assert_close(model(square), official_forward(state, config, square), rtol=1e-5, atol=1e-5)
    if grid % 2 == 0:  # as many patches as the training grid, not square: the official code interpolates
        flat = torch.randn(1, 3, grid // 2 * config.patch_size, grid * 2 * config.patch_size)
        with torch.no_grad():
            torch.testing.assert_close(model(flat), official_forward(state, config, flat), rtol=1e-5, atol=1e-5)


def test_every_tensor_of_the_file_changes_the_output(tmp_path, monkeypatch):
    config = tiny(monkeypatch, "dinov2-vits14-reg")
    state = official_state(config)
    x = images(config, 1, 2, 3)
    reference = official_forward(state, config, x)
    generator = torch.Generator().manual_seed(2)
    for key in [key for key in state if key != "mask_token"]:  # a constant shift would vanish in the LayerNorms
        changed = dict(state, **{key: state[key] + 0.5 * torch.randn(state[key].shape, generator=generator)})
        model = lu.load_model("dinov2-vits14-reg", checkpoint=write(tmp_path, changed))
        with torch.no_grad():
            assert not torch.allclose(model(x), reference, atol=1e-4), key


def test_dino_full_checkpoint_reads_the_teachers_backbone(tmp_path, monkeypatch):
    config = tiny(monkeypatch, "dino-vitb8")
    teacher, student = official_state(config, seed=0), official_state(config, seed=1)
    head = {
        "mlp.0.weight": torch.randn(64, 32),
        "last_layer.weight_g": torch.ones(10, 1),
        "last_layer.weight_v": torch.randn(10, 8),
    }
    checkpoint = {
        "student": {f"module.backbone.{k}": v for k, v in student.items()}
        | {f"module.head.{k}": v for k, v in head.items()},
        "teacher": {f"backbone.{k}": v for k, v in teacher.items()} | {f"head.{k}": v for k, v in head.items()},
        "optimizer": {"state": {}, "param_groups": []},
        "epoch": 300,
        "args": argparse.Namespace(arch="vit_base", patch_size=8, out_dim=65536),
        "dino_loss": {"center": torch.zeros(1, 65536)},
    }
    model = lu.load_model("dino-vitb8", checkpoint=write(tmp_path, checkpoint))
    x = images(config, 2, 2, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), official_forward(teacher, config, x), rtol=1e-5, atol=1e-5)


def test_a_saved_model_loads_back(tmp_path, monkeypatch):
    config = tiny(monkeypatch, "dinov2-vits14-reg")
    model = lu.load_model("dinov2-vits14-reg", checkpoint=write(tmp_path, official_state(config)))
    path = write(tmp_path, model.state_dict(), "saved.pth")
    x = images(config, 1, 2, 2)
    with torch.no_grad():
        torch.testing.assert_close(lu.load_model("dinov2-vits14-reg", checkpoint=path)(x), model(x), rtol=0, atol=0)


def test_wrong_keys_and_shapes_are_errors_naming_them(tmp_path, monkeypatch):
    config = tiny(monkeypatch, "dinov2-vitb14-reg")
    state = official_state(config)
    del state["blocks.1.ls2.gamma"]
    state["blocks.0.attn.q_norm.weight"] = torch.ones(16)
    state["pos_embed"] = torch.zeros(1, 257, 32)
    with pytest.raises(CheckpointError) as caught:
        lu.load_model("dinov2-vitb14-reg", checkpoint=write(tmp_path, state))
    message = str(caught.value)
    assert "missing keys (1): blocks.1.ls2.gamma" in message
    assert "unexpected keys (1): blocks.0.attn.q_norm.weight" in message
    assert "shape mismatches (1): pos_embed (1, 257, 32) vs (1, 1370, 32)" in message


def test_registers_are_not_optional(tmp_path, monkeypatch):
    without, with_registers = tiny(monkeypatch, "dinov2-vits14"), tiny(monkeypatch, "dinov2-vits14-reg")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): register_tokens"):
        lu.load_model("dinov2-vits14-reg", checkpoint=write(tmp_path, official_state(without)))
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): register_tokens"):
        lu.load_model("dinov2-vits14", checkpoint=write(tmp_path, official_state(with_registers)))


def test_a_foreign_layout_is_an_error_listing_the_expected_ones(tmp_path, monkeypatch):
    config = tiny(monkeypatch, "dino-vits16")
    path = write(tmp_path, {"model": {f"module.{k}": v for k, v in official_state(config).items()}})
    expected = (
        r"not a dino-vits16 checkpoint.*\['cls_token'\].*\['teacher'\]\['backbone\.cls_token'\]"
        r".*top-level keys are model"
    )
    with pytest.raises(CheckpointError, match=expected):
        lu.load_model("dino-vits16", checkpoint=path)


def test_dinov2_needs_whole_patches_as_its_official_code():
    model = lu.load_model("dinov2-vits14", weights=None)
    with pytest.raises(ValueError, match="not a whole number of 14x14 patches"):
        model(torch.randn(1, 3, 30, 28))


def test_weights_must_be_default_or_none():
    with pytest.raises(ValueError, match="must be 'default' or None"):
        lu.load_model("dino-vits16", weights="IMAGENET1K_V1")
    with pytest.raises(ValueError, match="embedding= applies to"):
        lu.load_model("dino-vits16", weights=None, embedding="projection")


def test_weights_dir_holds_the_files_under_their_download_names(tmp_path, monkeypatch):
    config = tiny(monkeypatch, "dino-vits8")
    state = official_state(config)
    write(tmp_path, state, "dino_deitsmall8_pretrain.pth")
    model = lu.load_model("dino-vits8", weights_dir=tmp_path)
    x = images(config, 1, 3, 2)
    with torch.no_grad():
        torch.testing.assert_close(model(x), official_forward(state, config, x), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_a_real_size_release_file(tmp_path):
    config = VIT_RELEASES["dinov2-vits14-reg"].config
    state = official_state(config)
    model = lu.load_model("dinov2-vits14-reg", checkpoint=write(tmp_path, state))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), official_forward(state, config, x), rtol=1e-4, atol=1e-4)
