"""Typed configuration of the LIFT-GS model, with a CPU preset and the paper's sizes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelConfig:
    """Sizes of every LIFT-GS component (paper Sec 3.3, appendix A).

    ``tiny`` trains on a 2-core CPU; ``paper`` holds appendix A's numbers (UNet out 96 with
    channels up to 256, decoder 8 layers x 512 hidden, 8 heads, FFN 2048, dropout 0.15,
    256 mask queries, CLIP-L text width 768).
    """

    text_dim: int = 384  # width of the query token vectors (the frozen text encoder's output)
    voxel_size: float = 0.05  # metres; the UNet's grid (paper: 5 cm)
    encoder_channels: tuple[int, ...] = (32, 32, 48, 64)  # stem, then one entry per down level (CPU
    # preset; (32, 48, 64, 96) costs ~15 % more per training step, docs/model.md "Speed")
    encoder_blocks: int = 1  # residual blocks per coarser UNet level (down and up path)
    stem_blocks: int | None = 0  # residual blocks at full resolution; None = encoder_blocks (the
    # full-resolution level holds ~3/4 of the voxels, so the CPU preset keeps it thin)
    encoder_out: int = 64  # per-point feature width (paper: 96)
    fuse_kernel: int = 1  # up-path fusion of upsampled + skip features: 1 = per-voxel linear (CPU
    # preset: the full-resolution 3x3x3 fusion was 27 % of the UNet's multiply-adds), 3 = 3x3x3 conv
    token_stride: int = 4  # decoder point tokens = UNet features mean-pooled over stride^3 voxels
    hidden_dim: int = 128  # decoder width (paper: 512)
    num_layers: int = 3  # decoder layers (paper: 8)
    num_heads: int = 4  # attention heads (paper: 8)
    ffn_dim: int = 256  # decoder MLP width (paper: 2048)
    dropout: float = 0.0  # decoder dropout (paper: 0.15)
    num_queries: int = 32  # learnable mask proposals m (paper: 256)
    mask_position: bool = False  # add Fourier features of the scene-centred position to the
    # per-voxel mask features (tiny preset: masks become spatially compact far sooner)
    anchored_queries: bool = False  # add the features / positions of m farthest-point-sampled scene
    # tokens to the learnable proposals (Mask3D-style), so each proposal starts at a place
    mask_pooled_tokens: bool = False  # add the UNet point features averaged under a proposal's
    # (detached) mask to its token vector, so the phrase it matches depends on what it covers
    head_hidden: int = 64  # Gaussian-head MLP width
    feature_dim: int | None = None  # per-Gaussian feature width; None = text_dim (eq. 7 needs it)
    offset_bound: float = 1.0  # max |position offset| per axis, in voxels
    scale_init: float = 0.6  # initial Gaussian scale, in voxels
    scale_max: float = 3.0  # largest Gaussian scale, in voxels
    opacity_init: float = 0.7  # initial opacity
    temperature_init: float = 0.07  # initial temperature of the token logits (Sec 3.2.1)
    # how the model was made (written by the recipes, read by fine-tuning, eval, ground, view;
    # None = not recorded): the frozen text encoder whose vectors the queries are (a name or
    # folder for liftgs.text.load_text_encoder), the size preset and the last training recipe
    text_encoder: str | None = None
    preset: str | None = None
    recipe: str | None = None

    def __post_init__(self) -> None:
        self.encoder_channels = tuple(int(c) for c in self.encoder_channels)
        if self.feature_dim is None:
            self.feature_dim = self.text_dim
        if self.stem_blocks is None:
            self.stem_blocks = self.encoder_blocks
        if int(self.stem_blocks) != self.stem_blocks or self.stem_blocks < 0:
            raise ValueError(f"ModelConfig.stem_blocks must be an integer >= 0, got {self.stem_blocks!r}")
        positive = {
            "text_dim": self.text_dim, "encoder_out": self.encoder_out, "token_stride": self.token_stride,
            "hidden_dim": self.hidden_dim, "num_layers": self.num_layers, "num_heads": self.num_heads,
            "ffn_dim": self.ffn_dim, "num_queries": self.num_queries, "head_hidden": self.head_hidden,
            "feature_dim": self.feature_dim, "encoder_blocks": self.encoder_blocks,
        }
        for name, value in positive.items():
            if int(value) != value or value < (0 if name == "encoder_blocks" else 1):
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if len(self.encoder_channels) < 2 or min(self.encoder_channels) < 1:
            raise ValueError(
                "ModelConfig.encoder_channels needs a stem width plus at least one level, all positive, "
                f"e.g. (32, 64, 96); got {self.encoder_channels}"
            )
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                f"ModelConfig.hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.fuse_kernel not in (1, 3):
            raise ValueError(f"ModelConfig.fuse_kernel must be 1 (linear) or 3 (3x3x3 conv), got {self.fuse_kernel!r}")
        if not self.voxel_size > 0:
            raise ValueError(f"ModelConfig.voxel_size must be > 0 metres, got {self.voxel_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.scale_init < self.scale_max:
            raise ValueError(
                f"ModelConfig needs 0 < scale_init < scale_max (voxels), got {self.scale_init}, {self.scale_max}"
            )
        if not 0.0 < self.opacity_init < 1.0:
            raise ValueError(f"ModelConfig.opacity_init must be in (0, 1), got {self.opacity_init}")
        if not self.offset_bound > 0 or not self.temperature_init > 0:
            raise ValueError("ModelConfig.offset_bound and temperature_init must be > 0")

    @classmethod
    def tiny(cls, text_dim: int = 384, **overrides) -> "ModelConfig":
        """CPU preset. Proposals are anchored at scene locations: on a 3D fine-tuning probe
        (one room, 6 instances, lr 1e-3) the matched masks' dice fell from 0.98 to 0.26 in 35
        steps with anchors and only to 0.79 with purely learned proposals, whose Hungarian
        assignment stays unstable for the first ~40 steps."""
        return cls(**{"text_dim": text_dim, "anchored_queries": True, "mask_position": True, **overrides})

    @classmethod
    def paper(cls, text_dim: int = 768, **overrides) -> "ModelConfig":
        """Appendix A: UNet 8 layers (4 down, 4 up) up to 256 channels, out 96; decoder 8x512."""
        sizes = dict(
            text_dim=text_dim, encoder_channels=(32, 64, 128, 256, 256), encoder_blocks=2, encoder_out=96,
            stem_blocks=2, token_stride=2, hidden_dim=512, num_layers=8, num_heads=8, ffn_dim=2048,
            dropout=0.15, num_queries=256, head_hidden=128, fuse_kernel=3,
        )
        return cls(**{**sizes, **overrides})
