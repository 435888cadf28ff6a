"""The Vision Transformer of DINO and DINOv2, written from the official code with its module names.

``VisionTransformer`` follows facebookresearch/dino ``vision_transformer.py`` and
facebookresearch/dinov2 ``dinov2/models/vision_transformer.py`` + ``dinov2/layers``: the same
modules under the same names (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``register_tokens``, ``blocks.N`` with ``norm1``, ``attn`` (``qkv``, ``attn_drop``, ``proj``),
``ls1``, ``norm2``, ``mlp`` (``fc1``, ``fc2``), ``ls2``, then ``norm``), so an official
checkpoint loads key for key and a layer name means the same as in the official code. Tokens
are ``[CLS, registers..., patches...]``; the position embeddings (CLS + a square patch grid) are
added before the registers are inserted and are interpolated for other image sizes exactly as
the official ``interpolate_pos_encoding`` does. The attention probabilities are computed
explicitly and pass through ``attn.attn_drop`` (as in DINO's code), so a hook there reads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LAYER_NORM_EPS = 1e-6  # both releases: partial(nn.LayerNorm, eps=1e-6)


@dataclass(frozen=True)
class ViTConfig:
    """The architecture of one release.

    ``img_size``: the training size that fixes the position-embedding grid (``img_size //
    patch_size`` per side). ``layer_scale``: LayerScale's initial value (``ls1``/``ls2``, DINOv2),
    None for none (DINO). ``interpolate_offset`` / ``interpolate_antialias``: the official
    position-embedding interpolation (offset > 0: bicubic by ``scale_factor`` of ``(grid +
    offset) / side``; 0: bicubic to the exact ``size``). ``whole_patches``: images must be a
    multiple of the patch size (DINOv2's ``PatchEmbed`` asserts it; DINO's convolution drops the
    remainder).
    """

    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    img_size: int = 224
    mlp_ratio: float = 4.0
    layer_scale: float | None = None
    num_register_tokens: int = 0
    interpolate_offset: float = 0.1
    interpolate_antialias: bool = False
    whole_patches: bool = False


class PatchEmbed(nn.Module):
    """(B, 3, H, W) images -> (B, h*w, D) patch embeddings by a strided convolution.

    Args:
        patch_size: the side of a patch, the convolution's kernel and stride.
        embed_dim: D.
        whole_patches: reject images that are not a whole number of patches.
    """

    def __init__(self, patch_size: int, embed_dim: int, whole_patches: bool) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.whole_patches = whole_patches
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) images -> (B, h*w, D) patch embeddings.

        Raises:
            ValueError: ``whole_patches`` is set and H or W is not a multiple of the patch size.
        """
        if self.whole_patches and (x.shape[-2] % self.patch_size or x.shape[-1] % self.patch_size):
            raise ValueError(
                f"images of {x.shape[-2]}x{x.shape[-1]} pixels are not a whole number of {self.patch_size}x"
                f"{self.patch_size} patches, which this model (as its official code) requires; resize or crop them"
            )
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with explicit probabilities: ``softmax(q k^T * scale)`` through ``attn_drop``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = self.attn_drop(((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1))
        return self.proj((attn @ v).transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel scaling of a residual branch by ``gamma`` (DINOv2)."""

    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: ``x + ls1(attn(norm1(x)))``, then ``x + ls2(mlp(norm2(x)))``."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, config.num_heads)
        self.ls1 = LayerScale(dim, config.layer_scale) if config.layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio))
        self.ls2 = LayerScale(dim, config.layer_scale) if config.layer_scale else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """DINO's / DINOv2's ViT backbone: (B, 3, H, W) images -> (B, D) CLS embeddings after ``norm``.

    Attributes besides the modules: ``patch_size``, ``num_register_tokens`` and
    ``num_prefix_tokens`` (CLS + registers, timm's name, which the explainers read to find the
    patch tokens of a (B, N, D) layer output).

    Args:
        config: the release's architecture.
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_size = config.patch_size
        self.embed_dim = config.embed_dim
        self.num_register_tokens = config.num_register_tokens
        self.num_prefix_tokens = 1 + config.num_register_tokens
        grid = config.img_size // config.patch_size
        self.patch_embed = PatchEmbed(config.patch_size, config.embed_dim, config.whole_patches)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, config.embed_dim))
        if config.num_register_tokens:
            self.register_tokens = nn.Parameter(torch.zeros(1, config.num_register_tokens, config.embed_dim))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.embed_dim, eps=LAYER_NORM_EPS)
        self.head = nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official random init.

        Truncated normal (std 0.02) for the position embeddings, the tokens and every Linear weight,
        zero biases, unit LayerNorms, LayerScale at its initial value.
        """
        for parameter in (self.pos_embed, self.cls_token, getattr(self, "register_tokens", None)):
            if parameter is not None:
                nn.init.trunc_normal_(parameter, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def interpolate_pos_encoding(self, tokens: Tensor, height: int, width: int) -> Tensor:
        """The position embeddings for ``tokens`` (CLS + patches) of an image of ``height`` x ``width``.

        As the official code: unchanged when the patch count equals the training grid's and the
        image is square; otherwise the patch grid's embeddings are resized bicubically, by the
        scale factor ``(rows + offset) / side`` (DINO, DINOv2) or to the exact size with
        antialiasing (DINOv2 with registers), computed in float32.
        """
        patches, grid_tokens = tokens.shape[1] - 1, self.pos_embed.shape[1] - 1
        if patches == grid_tokens and height == width:
            return self.pos_embed
        side = math.isqrt(grid_tokens)
        rows, cols = height // self.patch_size, width // self.patch_size
        pos_embed = self.pos_embed.float()
        grid = pos_embed[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        offset = self.config.interpolate_offset
        if offset:
            resize = {"scale_factor": ((rows + offset) / side, (cols + offset) / side)}
        else:
            resize = {"size": (rows, cols)}
        grid = F.interpolate(grid, mode="bicubic", antialias=self.config.interpolate_antialias, **resize)
        if grid.shape[-2:] != (rows, cols):
            raise RuntimeError(f"position embeddings interpolated to {tuple(grid.shape[-2:])}, expected {(rows, cols)}")
        grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat((pos_embed[:, :1], grid), dim=1).to(tokens.dtype)

    def prepare_tokens(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) images -> (B, 1 + registers + h*w, D) tokens entering the first block."""
        height, width = x.shape[-2:]
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(len(tokens), -1, -1), tokens), dim=1)
        tokens = tokens + self.interpolate_pos_encoding(tokens, height, width)
        if self.num_register_tokens:
            registers = self.register_tokens.expand(len(tokens), -1, -1)
            tokens = torch.cat((tokens[:, :1], registers, tokens[:, 1:]), dim=1)
        return tokens

    def features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) images -> (B, D) CLS tokens after the final ``norm`` (the official ``x_norm_clstoken``)."""
        tokens = self.prepare_tokens(x)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 0]

    def forward(self, x: Tensor) -> Tensor:
        """``head(features(x))``: the CLS embedding (``head`` is ``nn.Identity()`` in the releases)."""
        return self.head(self.features(x))


__all__ = ["ViTConfig", "VisionTransformer"]
