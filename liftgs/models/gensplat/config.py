"""Typed configuration of the GenSplat model, with a CPU preset and paper-like sizes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GenSplatConfig:
    """Sizes of the GenSplat Gaussian encoder, cluster-mean pooling and instance decoder
    (GenSplat summary, Key Designs 1, stages I and II).

    What the summary gives: the Gaussian encoder E_g is "a standard SparseConvUNet" mapping
    every Gaussian to a semantic latent l_j; its latents are pooled by cluster means "based on
    geometric position and semantics" into m tokens L^; the instance decoder has learnable
    object queries initialised from L^ and n layers of cross-attention to L^ and
    self-attention, giving instance embeddings O_ins [N_q, C] with a mask head and a
    classification head. It gives no widths, no layer count n, no N_q, no m and no voxel size.

    What we chose: ``tiny`` trains on a 2-core CPU (UNet (16, 32, 48, 64) at 5 cm voxels, out
    32; latents C = 32; m = 256 tokens; decoder 128-d x 3 layers, 4 heads, FFN 256; Q = 32
    queries). ``paper`` uses paper-like widths: the SpUNet widths of the LIFT-GS paper preset
    (32, 64, 128, 256, 256), 2 blocks per level, 3x3x3 up-path fusion, out 96, at 5 cm; one
    width C = 256 for the latents and the decoder (the summary writes O_ins in R^{N_q x C}
    with the latents' C); Mask2Former-like decoder sizes (6 layers, 8 heads, FFN 1024,
    dropout 0.1, Q = 100 queries); m = 1024 tokens; text width 512 (CLIP ViT-B/16, the
    LangSplat-style 2D language features of stage I).
    """

    text_dim: int = 384  # width of the class-name / 2D-teacher text embeddings
    voxel_size: float = 0.05  # metres; the encoder's grid
    encoder_channels: tuple[int, ...] = (16, 32, 48, 64)  # UNet stem, then one entry per down level
    encoder_blocks: int = 1  # residual blocks per coarser UNet level (down and up path)
    stem_blocks: int | None = 0  # residual blocks at full resolution; None = encoder_blocks
    fuse_kernel: int = 1  # up-path fusion: 1 = per-voxel linear, 3 = 3x3x3 conv
    encoder_out: int = 32  # UNet output width per voxel
    latent_hidden: int = 64  # hidden width of the per-Gaussian latent MLP
    latent_dim: int = 32  # C: width of the per-Gaussian semantic latents l_j
    pool_tokens: int = 256  # m: cluster-mean tokens L^
    pool_iters: int = 3  # k-means-style refinements after the nearest-seed assignment
    pool_sigma: float = 0.25  # metres: distance term ||x - c|| / sigma
    pool_beta: float = 1.0  # weight of the latent term beta * (1 - cos(l, c_l))
    hidden_dim: int = 128  # D: decoder width
    num_layers: int = 3  # n: decoder layers
    num_heads: int = 4  # attention heads
    ffn_dim: int = 256  # decoder MLP width
    dropout: float = 0.0  # decoder dropout
    num_queries: int = 32  # Q: object queries
    temperature_init: float = 0.07  # initial temperature of the class cosine logits

    def __post_init__(self) -> None:
        self.encoder_channels = tuple(int(c) for c in self.encoder_channels)
        if self.stem_blocks is None:
            self.stem_blocks = self.encoder_blocks
        positive = {
            "text_dim": self.text_dim, "encoder_out": self.encoder_out, "latent_hidden": self.latent_hidden,
            "latent_dim": self.latent_dim, "pool_tokens": self.pool_tokens, "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers, "num_heads": self.num_heads, "ffn_dim": self.ffn_dim,
            "num_queries": self.num_queries,
        }
        for name, value in positive.items():
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"GenSplatConfig.{name} must be a positive integer, got {value!r}")
        for name in ("encoder_blocks", "stem_blocks", "pool_iters"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 0:
                raise ValueError(f"GenSplatConfig.{name} must be an integer >= 0, got {value!r}")
        if len(self.encoder_channels) < 2 or min(self.encoder_channels) < 1:
            raise ValueError("GenSplatConfig.encoder_channels needs a stem width plus at least one level, all "
                             f"positive, e.g. (16, 32, 64); got {self.encoder_channels}")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"GenSplatConfig.hidden_dim ({self.hidden_dim}) must be divisible by "
                             f"num_heads ({self.num_heads})")
        if self.num_queries > self.pool_tokens:
            raise ValueError(f"GenSplatConfig.num_queries ({self.num_queries}) must be <= pool_tokens "
                             f"({self.pool_tokens}): queries start from pooled tokens")
        if self.fuse_kernel not in (1, 3):
            raise ValueError(f"GenSplatConfig.fuse_kernel must be 1 (linear) or 3 (3x3x3 conv), "
                             f"got {self.fuse_kernel!r}")
        for name in ("voxel_size", "pool_sigma", "temperature_init"):
            if not getattr(self, name) > 0:
                raise ValueError(f"GenSplatConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if not self.pool_beta >= 0:
            raise ValueError(f"GenSplatConfig.pool_beta must be >= 0, got {self.pool_beta!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GenSplatConfig.dropout must be in [0, 1), got {self.dropout!r}")

    @classmethod
    def tiny(cls, text_dim: int = 384, **overrides) -> "GenSplatConfig":
        """CPU preset: a forward + backward on 30k Gaussians well under a second on 2 cores."""
        return cls(**{"text_dim": text_dim, **overrides})

    @classmethod
    def paper(cls, text_dim: int = 512, **overrides) -> "GenSplatConfig":
        """Paper-like widths (see the class docstring for which numbers the summary gives)."""
        sizes = dict(
            text_dim=text_dim, encoder_channels=(32, 64, 128, 256, 256), encoder_blocks=2, stem_blocks=2,
            fuse_kernel=3, encoder_out=96, latent_hidden=256, latent_dim=256, pool_tokens=1024, hidden_dim=256,
            num_layers=6, num_heads=8, ffn_dim=1024, dropout=0.1, num_queries=100,
        )
        return cls(**{**sizes, **overrides})
