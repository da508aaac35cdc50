"""GenSplat's referring decoder: instance queries + ``<SEG>`` states over the pooled tokens -> referred masks.

GenSplat summary, Key Designs 2 (MLLM-guided Reasoning Module): "The referring decoder reuses
the instance decoder architecture but processes three inputs: instance queries O_ins, projected
t^_seg, and semantic features L^. O_ins and t^_seg are concatenated as queries to interact with
L^ via cross-attention, using the updated t^_seg to predict the referred instance mask."
Key Designs 1, stage III (Free-form Text Alignment): "The MLLM is introduced to produce a <SEG>
token that aligns with instance features, completing the mapping from complex language to
instances within the referring decoder." Loss & Training: L_align = L_text + lambda_m L_mask
(:func:`liftgs.models.gensplat.reasoner.alignment_loss` takes :func:`referring_loss` as L_mask).

* Queries: [O_ins ; t^_seg] [Q + k, D]: the instance decoder's final query embeddings
  (:attr:`InstanceOutput.queries`) and the k projected ``<SEG>`` states of one sample
  (:attr:`ReasonerOutput.segs` ``[b]``), each mapped to the decoder width by a linear map and
  a LayerNorm. Their positional encodings are two learned role vectors (one shared by every
  instance row, one shared by every ``<SEG>`` row): the same for every ``<SEG>`` row, so the
  decoder treats its ``<SEG>`` rows as a set (swapping two swaps their outputs).
* Layers: :class:`liftgs.modules.decoder.DecoderLayer` without text attention, as the
  instance decoder: cross-attention to the tokens L^ (keys carry the Fourier encoding of the
  scene-centred centroid, empty clusters masked out), self-attention among all Q + k queries
  (the ``<SEG>`` rows read the instance rows and each other), FFN.
* Heads, after every layer on the ``<SEG>`` rows only (earlier layers feed deep
  supervision): mask logits [k, N] = MLP(t^_seg) · (linear(latent) + Fourier(centre − scene
  centre)) of every Gaussian, the instance decoder's mask head; an "exists" logit [k] = a
  linear function of the row: does the expression refer to anything (Multi3DRefer's
  zero-target expressions)?

View prior (``view_prior=True``; ours, not in the summary). The MLLM of the paper reads the
selected frames and can place the target in them; the compact CPU reasoner
(:mod:`liftgs.models.gensplat.compact`) cannot learn that from a few hundred expressions. So the
decoder may also take what the selected frames saw, per Gaussian j, in :data:`PRIOR_CHANNELS`
channels p_j [N, 2]: the share s_j of the frames that see it
(:meth:`liftgs.recipes.gensplat_scenes.SceneFeatures.view_prior`), and s_j times c_j, the cosine
between the text and its CLIP-aligned embedding (the stage-II semantic head,
:func:`liftgs.models.gensplat.gafs.semantic_cosine`): "seen by the frames and matching the
text". They are added to every layer's mask logits as (p_j - mean_j p_j) . beta with a learned
beta (init :data:`VIEW_PRIOR_INIT`); a channel that is flat over the Gaussians changes nothing.
Frames that show the target raise its logits, frames that miss it cannot. Off by default, so
the decoder is the summary's exactly unless asked.

Several targets are supported both ways: several ``<SEG>`` states (one mask each) or one
``<SEG>`` whose mask covers several objects (its target mask is the union); the decoder and
:func:`referring_loss` see k rows with one binary target each and do not care which. With
k = 0 (a question) the decoder returns empty outputs without running.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from liftgs.models.gensplat.config import GenSplatConfig
from liftgs.models.gensplat.pooling import PooledTokens
from liftgs.modules.decoder import DecoderLayer
from liftgs.modules.position import FourierPosition

MASK_WEIGHT = 5.0  # BCE weight (the instance criterion's, Mask2Former's)
DICE_WEIGHT = 5.0  # dice weight (idem)
EXISTS_WEIGHT = 2.0  # exists BCE weight (the instance criterion's class weight)
PRIOR_CHANNELS = ("seen share", "seen share x text cosine")  # the view prior's channels
VIEW_PRIOR_INIT = (2.0, 10.0)  # initial beta per channel (logits per unit)


@dataclass
class ReferringConfig:
    """Sizes of the referring decoder. The summary says it "reuses the instance decoder
    architecture"; :meth:`from_gensplat` copies the instance decoder's sizes of a
    :class:`GenSplatConfig` (a separate dataclass, so saved GenSplat configs stay as they are).

    ``instance_dim`` is the width of O_ins (the instance decoder's ``hidden_dim``),
    ``seg_dim`` that of the projected ``<SEG>`` states (the reasoner's ``seg_dim``)."""

    latent_dim: int = 32  # C of the per-Gaussian latents and pooled tokens
    instance_dim: int = 128  # width of O_ins
    seg_dim: int = 128  # width of t^_seg
    hidden_dim: int = 128  # D: decoder width
    num_layers: int = 3  # n
    num_heads: int = 4
    ffn_dim: int = 256
    dropout: float = 0.0
    view_prior: bool = False  # add (p - mean p) . beta, p [N, 2] = what the selected frames saw (PRIOR_CHANNELS)

    def __post_init__(self) -> None:
        for name in ("latent_dim", "instance_dim", "seg_dim", "hidden_dim", "num_layers", "num_heads", "ffn_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"ReferringConfig.{name} must be a positive integer, got {value!r}")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"ReferringConfig.hidden_dim ({self.hidden_dim}) must be divisible by "
                             f"num_heads ({self.num_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ReferringConfig.dropout must be in [0, 1), got {self.dropout!r}")

    @classmethod
    def from_gensplat(cls, config: GenSplatConfig, **overrides) -> "ReferringConfig":
        """The instance decoder's sizes of ``config`` (latent_dim, hidden_dim, num_layers,
        num_heads, ffn_dim, dropout); O_ins and t^_seg default to its hidden_dim."""
        sizes = dict(latent_dim=config.latent_dim, instance_dim=config.hidden_dim, seg_dim=config.hidden_dim,
                     hidden_dim=config.hidden_dim, num_layers=config.num_layers, num_heads=config.num_heads,
                     ffn_dim=config.ffn_dim, dropout=config.dropout)
        return cls(**{**sizes, **overrides})


@dataclass
class ReferringOutput:
    """Referred masks over one scene's N Gaussians, one row per ``<SEG>`` state."""

    mask_logits: Tensor  # [k, N] (final layer)
    exists_logits: Tensor  # [k], > 0: the <SEG> refers to something
    aux: list[tuple[Tensor, Tensor]] = field(default_factory=list)  # (mask_logits, exists_logits) of the
    # earlier layers, first layer first (deep supervision)
    segs: Tensor | None = None  # [k, D] the updated <SEG> rows of the final layer

    def layers(self) -> list[tuple[Tensor, Tensor]]:
        """(mask_logits, exists_logits) of every layer, the final one last."""
        return [*self.aux, (self.mask_logits, self.exists_logits)]


def _check_matrix(x, name: str, width: int | None = None) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"ReferringDecoder: {name} must be a tensor, got {type(x).__name__}")
    if x.ndim != 2 or (width is not None and x.shape[1] != width):
        want = f"[*, {width}]" if width is not None else "2-D"
        raise ValueError(f"ReferringDecoder: {name} must be {want}, got {list(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"ReferringDecoder: {name} must be floating point, got {x.dtype}")


class ReferringDecoder(nn.Module):
    """[O_ins ; t^_seg] over the pooled tokens L^ -> :class:`ReferringOutput`."""

    def __init__(self, config: ReferringConfig):
        super().__init__()
        c = config
        self.config = c
        C, D = c.latent_dim, c.hidden_dim
        self.token_in = nn.Sequential(nn.Linear(C, D), nn.LayerNorm(D))
        self.position = FourierPosition(D)
        self.position_mlp = nn.Sequential(nn.GELU(), nn.Linear(D, D))
        self.instance_in = nn.Sequential(nn.Linear(c.instance_dim, D), nn.LayerNorm(D))
        self.seg_in = nn.Sequential(nn.Linear(c.seg_dim, D), nn.LayerNorm(D))
        self.instance_role = nn.Parameter(torch.randn(D) * 0.02)  # positional part of every O_ins row
        self.seg_role = nn.Parameter(torch.randn(D) * 0.02)  # ... and of every <SEG> row
        self.layers = nn.ModuleList(DecoderLayer(D, c.num_heads, c.ffn_dim, c.dropout, text_attention=False)
                                    for _ in range(c.num_layers))
        self.out_norm = nn.LayerNorm(D)
        self.mask_embed = nn.Sequential(nn.Linear(D, D), nn.GELU(), nn.Linear(D, D), nn.GELU(), nn.Linear(D, D))
        self.mask_latent = nn.Linear(C, D)  # per-Gaussian mask features: latent ...
        self.mask_position = FourierPosition(D)  # ... plus position
        self.exists = nn.Linear(D, 1)
        self.prior_scale = nn.Parameter(torch.tensor(VIEW_PRIOR_INIT)) if c.view_prior else None  # beta [2]

    def check(self, latents: Tensor, means: Tensor, pooled: PooledTokens, instance_queries: Tensor,
              segs: Tensor) -> None:
        """One-line ValueError unless the inputs fit each other and this decoder's sizes."""
        c = self.config
        _check_matrix(latents, "latents", c.latent_dim)
        _check_matrix(means, "means", 3)
        _check_matrix(instance_queries, "instance_queries (O_ins)", c.instance_dim)
        _check_matrix(segs, "segs (t^_seg)", c.seg_dim)
        N = latents.shape[0]
        if means.shape[0] != N:
            raise ValueError(f"ReferringDecoder: means must be [{N}, 3] for {N} latents, got {list(means.shape)}")
        if not isinstance(pooled, PooledTokens):
            raise ValueError(f"ReferringDecoder: pooled must be PooledTokens, got {type(pooled).__name__}")
        m = pooled.tokens.shape[0]
        if pooled.tokens.ndim != 2 or pooled.tokens.shape[1] != c.latent_dim or pooled.xyz.shape != (m, 3) \
                or pooled.valid.shape != (m,):
            raise ValueError(f"ReferringDecoder: pooled tokens must be [m, {c.latent_dim}] with xyz [m, 3] and "
                             f"valid [m], got {list(pooled.tokens.shape)}, {list(pooled.xyz.shape)}, "
                             f"{list(pooled.valid.shape)}")
        if pooled.assignment.shape != (N,):
            raise ValueError(f"ReferringDecoder: pooled tokens cover {pooled.assignment.shape[0]} Gaussians, "
                             f"latents {N}")
        if not bool(pooled.valid.any()):
            raise ValueError("ReferringDecoder: pooled tokens hold no valid (non-empty) token")
        if instance_queries.shape[0] < 1:
            raise ValueError("ReferringDecoder: instance_queries (O_ins) holds no query")

    def positions(self, xyz: Tensor) -> Tensor:
        """Positional encoding [m, D] of scene-centred positions [m, 3]."""
        return self.position_mlp(self.position(xyz))

    SHARED = ("token_in", "position", "position_mlp", "layers", "out_norm", "mask_embed", "mask_latent",
              "mask_position")  # the parts that have the instance decoder's names and shapes

    @torch.no_grad()
    def init_from_instance_decoder(self, decoder: nn.Module) -> list[str]:
        """Copy the stage-II instance decoder's weights into the parts the two decoders share
        (:attr:`SHARED`: token and position encoders, decoder layers, output norm, mask head and
        per-Gaussian mask features), so stage III starts from a decoder that already outlines
        instances and t^_seg only has to pick one. The O_ins / ``<SEG>`` input maps, role
        vectors and the exists head keep their initialisation. Returns the copied names; a
        shape mismatch (another ``ReferringConfig``) is a one-line ValueError."""
        own = self.state_dict()
        theirs = decoder.state_dict()
        copied = []
        for name, value in own.items():
            if name.split(".", 1)[0] not in self.SHARED:
                continue
            if name not in theirs:
                raise ValueError(f"init_from_instance_decoder: the instance decoder has no {name!r}")
            if tuple(theirs[name].shape) != tuple(value.shape):
                raise ValueError(f"init_from_instance_decoder: {name} is {list(theirs[name].shape)} in the instance "
                                 f"decoder but {list(value.shape)} here (sizes of another ReferringConfig?)")
            value.copy_(theirs[name])
            copied.append(name)
        return copied

    def forward(self, latents: Tensor, means: Tensor, pooled: PooledTokens, instance_queries: Tensor,
                segs: Tensor, view_prior: Tensor | None = None) -> ReferringOutput:
        """latents [N, C] and centres [N, 3] of the Gaussians, their pooled tokens L^, the
        instance decoder's O_ins [Q, instance_dim] and the k projected ``<SEG>`` states
        [k, seg_dim] of one sample (k >= 0). Gradients flow into O_ins and t^_seg (detach
        O_ins to keep stage II fixed). ``view_prior`` [N, 2] (:data:`PRIOR_CHANNELS`): required
        when the config has ``view_prior``, refused otherwise."""
        self.check(latents, means, pooled, instance_queries, segs)
        if self.config.view_prior:
            if view_prior is None:
                raise ValueError("ReferringDecoder: this decoder has a view prior; pass view_prior "
                                 f"[N, {len(PRIOR_CHANNELS)}] (GenSplatLanguage.view_prior of the selected frames)")
            want = (latents.shape[0], len(PRIOR_CHANNELS))
            if tuple(view_prior.shape) != want or not torch.isfinite(view_prior).all():
                raise ValueError(f"ReferringDecoder: view_prior must be finite {list(want)}, "
                                 f"got {list(view_prior.shape)}")
        elif view_prior is not None:
            raise ValueError("ReferringDecoder: view_prior given but the decoder was built without one "
                             "(ReferringConfig.view_prior=False)")
        dtype, device = latents.dtype, latents.device
        means = means.to(device=device, dtype=dtype)
        k, N = segs.shape[0], latents.shape[0]
        if k == 0:
            empty = latents.new_zeros((0, N))
            return ReferringOutput(mask_logits=empty, exists_logits=latents.new_zeros(0),
                                   aux=[(empty, latents.new_zeros(0))] * (len(self.layers) - 1),
                                   segs=latents.new_zeros((0, self.config.hidden_dim)))
        centre = pooled.scene_centre().to(device=device, dtype=dtype)
        xyz = pooled.xyz.to(device=device, dtype=dtype) - centre
        pad = ~pooled.valid.to(device)
        tokens = self.token_in(pooled.tokens.to(device=device, dtype=dtype))  # [m, D]
        keyed = (tokens + self.positions(xyz))[None]
        ins = self.instance_in(instance_queries.to(device=device, dtype=dtype))  # [Q, D]
        seg = self.seg_in(segs.to(device=device, dtype=dtype))  # [k, D]
        Q = ins.shape[0]
        q = torch.cat([ins, seg])[None]  # [1, Q + k, D]
        q_pos = torch.cat([self.instance_role.expand(Q, -1), self.seg_role.expand(k, -1)])[None]
        hidden = []
        for layer in self.layers:
            keys, values = layer.point_memory(tokens[None], keyed)
            q = layer(q, q_pos, keys, values, pad[None])
            hidden.append(self.out_norm(q[0, Q:]))  # the <SEG> rows [k, D]
        feats = self.mask_latent(latents) + self.mask_position(means - centre)  # [N, D]
        embeddings = self.mask_embed(torch.cat(hidden))  # [n * k, D]
        logits = embeddings @ feats.T  # [n * k, N]
        if self.prior_scale is not None:
            p = view_prior.to(device=device, dtype=dtype)
            logits = logits + ((p - p.mean(0)) @ self.prior_scale)[None]
        masks = logits.chunk(len(self.layers))  # n x [k, N]
        exists = self.exists(torch.cat(hidden))[:, 0].chunk(len(self.layers))  # n x [k]
        preds = list(zip(masks, exists))
        return ReferringOutput(mask_logits=preds[-1][0], exists_logits=preds[-1][1], aux=preds[:-1],
                               segs=hidden[-1])


def build_referring_decoder(config: GenSplatConfig | ReferringConfig, **overrides) -> ReferringDecoder:
    """A freshly initialised :class:`ReferringDecoder`: of a :class:`ReferringConfig`, or with
    the instance decoder's sizes of a :class:`GenSplatConfig` (``overrides``, e.g.
    ``seg_dim=reasoner.seg_dim``, go to :meth:`ReferringConfig.from_gensplat`)."""
    if isinstance(config, GenSplatConfig):
        return ReferringDecoder(ReferringConfig.from_gensplat(config, **overrides))
    if overrides:
        raise ValueError("build_referring_decoder: overrides apply only to a GenSplatConfig")
    return ReferringDecoder(config)


def referring_loss(masks: Tensor, targets: Tensor, exists_logits: Tensor, has_target: Tensor, *,
                   logits: bool = True, mask_weight: float = MASK_WEIGHT, dice_weight: float = DICE_WEIGHT,
                   exists_weight: float = EXISTS_WEIGHT) -> tuple[Tensor, dict[str, float]]:
    """L_mask of one sample's k ``<SEG>`` rows (one decoder layer):
    ``mask_weight * BCE + dice_weight * dice + exists_weight * BCE(exists)``.

    ``masks`` [k, P] are either

    * 3D: mask logits over the N Gaussians (``logits=True``, the default; BCE from logits,
      exact) against per-Gaussian targets [k, N], or
    * 2D: rendered probabilities at P sampled pixels (``logits=False``: a composite of
      sigmoids, as the instance criterion renders them; BCE on clamped probabilities) against
      the target masks at those pixels [k, P].

    ``targets`` [k, P] in {0, 1} (bool or float; a row may be the union of several objects),
    ``exists_logits`` [k], ``has_target`` [k] bool: False for a ``<SEG>`` of a zero-target
    expression, whose mask row is left out of BCE and dice (its target row is ignored). BCE
    is the mean over P per row, dice per row (:func:`liftgs.losses.dice_loss`); both are
    averaged over the rows with a target (0 if none); the exists BCE is the mean over all k
    rows. k = 0 gives a zero loss. Returns (loss, scalars "mask", "dice", "exists", "loss")."""
    from liftgs.losses import dice_loss, focal_loss, focal_loss_with_logits

    for name, x in (("masks", masks), ("targets", targets)):
        if not isinstance(x, Tensor) or x.ndim != 2:
            raise ValueError(f"referring_loss: {name} must be a [k, P] tensor, got "
                             f"{list(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    k = masks.shape[0]
    if targets.shape != masks.shape:
        raise ValueError(f"referring_loss: targets {list(targets.shape)} must match masks {list(masks.shape)}")
    if not isinstance(exists_logits, Tensor) or exists_logits.shape != (k,):
        raise ValueError(f"referring_loss: exists_logits must be [{k}], got "
                         f"{list(exists_logits.shape) if isinstance(exists_logits, Tensor) else exists_logits!r}")
    if not isinstance(has_target, Tensor) or has_target.shape != (k,) or has_target.dtype != torch.bool:
        raise ValueError(f"referring_loss: has_target must be a bool tensor [{k}], got "
                         f"{list(has_target.shape) if isinstance(has_target, Tensor) else has_target!r}")
    if not masks.is_floating_point():
        raise ValueError(f"referring_loss: masks must be floating point, got {masks.dtype}")
    if not logits and masks.numel() and (float(masks.min()) < 0.0 or float(masks.max()) > 1.0):
        raise ValueError("referring_loss: with logits=False, masks must be probabilities in [0, 1]")
    zero = masks.sum() * 0.0 + exists_logits.sum() * 0.0  # keeps the graph for k = 0
    if k == 0:
        return zero, {"mask": 0.0, "dice": 0.0, "exists": 0.0, "loss": 0.0}
    has_target = has_target.to(masks.device)
    tgt = targets.to(device=masks.device, dtype=masks.dtype)
    exists = nn.functional.binary_cross_entropy_with_logits(exists_logits, has_target.to(exists_logits.dtype))
    if bool(has_target.any()):
        pred, tgt = masks[has_target], tgt[has_target]
        if logits:
            bce = focal_loss_with_logits(pred, tgt, alpha=-1.0, gamma=0.0).mean()
            dice = dice_loss(torch.sigmoid(pred), tgt).mean()
        else:
            bce = focal_loss(pred, tgt, alpha=-1.0, gamma=0.0).mean()
            dice = dice_loss(pred, tgt).mean()
    else:
        bce = dice = zero
    total = mask_weight * bce + dice_weight * dice + exists_weight * exists + zero
    scalars = {"mask": float(bce.detach()), "dice": float(dice.detach()), "exists": float(exists.detach()),
               "loss": float(total.detach())}
    return total, scalars


def deep_referring_loss(output: ReferringOutput, targets: Tensor, has_target: Tensor,
                        **weights) -> tuple[Tensor, dict[str, float]]:
    """:func:`referring_loss` on the Gaussian masks (3D targets [k, N]) of every decoder layer
    of ``output``, summed (deep supervision); scalars of the final layer, plus "loss" (the sum)."""
    total, scalars = None, {}
    for mask_logits, exists_logits in output.layers():
        loss, scalars = referring_loss(mask_logits, targets, exists_logits, has_target, **weights)
        total = loss if total is None else total + loss
    scalars = {**scalars, "loss": float(total.detach())}
    return total, scalars


__all__ = ["ReferringConfig", "ReferringDecoder", "ReferringOutput", "build_referring_decoder", "referring_loss",
           "deep_referring_loss"]
