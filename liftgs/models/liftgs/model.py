"""The assembled LIFT-GS model (paper Fig. 5): point cloud + query vectors -> Gaussians + masks.

The text encoder is not part of the model: it is frozen (Sec 3.3.3) and runs outside, so the
model takes query token vectors. Point clouds of a batch are concatenated with cumulative end
offsets (Pointcept style).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liftgs.models.liftgs.config import ModelConfig
from liftgs.models.liftgs.factors import FactoredGrounding, MaskFactors
from liftgs.models.pretrained import (
    CONFIG_NAME, WEIGHTS_HASH_FIELD, WEIGHTS_NAME, load_model_folder, save_model_folder,
)
from liftgs.modules.decoder import GroundingDecoder
from liftgs.modules.gaussian_head import GaussianHead
from liftgs.modules.position import FourierPosition
from liftgs.modules.sparse_unet import SparseUNet
from liftgs.modules.voxelize import VoxelBatch, group_cells, scatter_mean, voxelize
from liftgs.types import Gaussians, Grounding

FAMILY = "liftgs"  # the model folder's config.json names it (liftgs.models.load_model)
__all__ = ["CONFIG_NAME", "FAMILY", "WEIGHTS_HASH_FIELD", "WEIGHTS_NAME", "FourierPosition", "LiftGS",
           "PointEncoding", "build_liftgs"]


@dataclass
class PointEncoding:
    """Encoder outputs for a batch of scenes, reusable across query sets."""

    voxels: VoxelBatch
    point_features: Tensor  # [P, C] per input point (its voxel's UNet feature)
    mask_features: Tensor | None  # [V, D'] per voxel: the mask head's basis (see
    # LiftGS.fold_mask_embeddings); None when encoded with lazy_masks (LiftGS.voxel_mask_basis)
    tokens: Tensor  # [B, L, C] pooled point tokens for the decoder (zero-padded)
    token_xyz: Tensor  # [B, L, 3] scene-centred token positions
    token_pad: Tensor  # [B, L] True = padding
    point_offsets: Tensor  # [B] cumulative end index of each scene's points
    voxel_features: Tensor | None = None  # [V, C] the UNet's output per voxel
    voxel_xyz: Tensor | None = None  # [V, 3] scene-centred voxel centres


class LiftGS(nn.Module):
    """Point encoder + Gaussian head + grounding decoder.

    ``config`` is kept only so :meth:`save_pretrained` can write it; the modules are built by
    :func:`build_liftgs` and passed in.
    """

    def __init__(self, encoder: SparseUNet, gaussian_head: GaussianHead, decoder: GroundingDecoder,
                 mask_proj: nn.Module, voxel_size: float, token_stride: int, text_dim: int,
                 config: ModelConfig | None = None, mask_position: nn.Module | None = None):
        super().__init__()
        self.mask_position = mask_position  # scene-centred xyz -> added to the mask features
        self.encoder = encoder
        self.gaussian_head = gaussian_head
        self.decoder = decoder
        self.mask_proj = mask_proj
        self.voxel_size = float(voxel_size)
        self.token_stride = int(token_stride)
        self.text_dim = int(text_dim)
        self.config = config
        self.source_dir: Path | None = None  # the folder it was loaded from (from_pretrained)
        self._text_encoders: dict[str | None, object] = {}  # ground()'s encoders by name, loaded once

    # ------------------------------------------------------------------ forward
    def forward(self, points: Tensor, colors: Tensor, offsets: Tensor, queries: Tensor,
                query_mask: Tensor, query_scene: Tensor | None = None,
                lazy_masks: bool = False) -> list[tuple[Gaussians, Grounding]]:
        """points [P, 3], colors [P, 3] in [0, 1], offsets [B] cumulative ends, queries [Bq, T, Fq]
        zero-padded, query_mask [Bq, T] True = real token -> one (Gaussians, Grounding) per query set.

        Normally there is one query set per scene (Bq = B). ``query_scene`` [Bq] (scene index of
        each query set) lets several query sets share one scene's encoding and Gaussians, e.g.
        several views of a scene rendered from one encoder pass (multi-view pre-training).
        ``lazy_masks``: see :meth:`decode`."""
        dtype = self.mask_proj[0].weight.dtype  # inputs follow the model's precision (no in-place casts)
        points, colors = points.to(dtype), colors.to(dtype)
        encoding = self.encode(points, colors, offsets, lazy_masks=lazy_masks)
        groundings = self.decode(encoding, queries, query_mask, query_scene, lazy_masks=lazy_masks)
        gaussians = self.gaussian_head(encoding.point_features, points, colors)
        starts = [0] + encoding.point_offsets[:-1].tolist()
        ends = encoding.point_offsets.tolist()
        per_scene = [gaussians.point_slice(s, e) for s, e in zip(starts, ends)]
        scene_of = _scene_of_queries(query_scene, len(per_scene), len(groundings))
        return [(per_scene[b], groundings[i]) for i, b in enumerate(scene_of)]

    def encode(self, points: Tensor, colors: Tensor, offsets: Tensor, lazy_masks: bool = False) -> PointEncoding:
        """Voxelise, run the UNet, pool decoder tokens (queries are not needed here).
        ``lazy_masks``: leave the per-voxel mask basis to be computed where needed.

        Gathers use ``index_select`` (backward = deterministic ``index_add``) rather than
        advanced indexing, whose CPU backward accumulates in a thread-dependent order."""
        _check_points(points, colors, offsets)
        dtype = self.mask_proj[0].weight.dtype
        points, colors = points.to(dtype), colors.to(dtype)
        offsets = offsets.to(device=points.device, dtype=torch.long)
        vox = voxelize(points, colors, offsets, self.voxel_size)
        feats = self.encoder(vox.features, vox.coords, vox.batch_size)  # [V, C]
        tokens, token_xyz, token_pad = self._pool_tokens(vox, feats)
        vbatch = vox.coords[:, 0].long()
        xyz = vox.centers - scatter_mean(vox.centers, vbatch, vox.batch_size)[vbatch]
        return PointEncoding(
            voxels=vox, point_features=torch.index_select(feats, 0, vox.point_to_voxel),
            mask_features=None if lazy_masks else self.voxel_mask_basis(feats, xyz),
            tokens=tokens, token_xyz=token_xyz, token_pad=token_pad, point_offsets=offsets,
            voxel_features=feats, voxel_xyz=xyz,
        )

    def voxel_mask_basis(self, voxel_features: Tensor, voxel_xyz: Tensor, rows: Tensor | None = None,
                         hidden: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """The mask head's per-voxel basis [V, D'] (or of voxels ``rows``): its hidden layer
        ``gelu(W1 f + b1)``, plus the Fourier features of the scene-centred position when
        ``mask_position`` is on (a proposal can select a place as well as a look). The output
        layers are folded into the mask embeddings (:meth:`fold_mask_embeddings`).
        ``hidden``: (W1, b1) to use instead of the layer's own parameters (views of them)."""
        if rows is not None:
            voxel_features, voxel_xyz = voxel_features.index_select(0, rows), voxel_xyz.index_select(0, rows)
        w1, b1 = hidden if hidden is not None else (self.mask_proj[0].weight, self.mask_proj[0].bias)
        basis = self.mask_proj[1](F.linear(voxel_features, w1, b1))
        if self.mask_position is not None:
            basis = torch.cat([basis, self.mask_position.encode(voxel_xyz)], 1)
        return basis

    def _voxel_basis(self, encoding: PointEncoding) -> Tensor:
        """``encoding.mask_features``, computed (and kept) when it was encoded lazily."""
        if encoding.mask_features is None:
            encoding.mask_features = self.voxel_mask_basis(encoding.voxel_features, encoding.voxel_xyz)
        return encoding.mask_features

    def decode(self, encoding: PointEncoding, queries: Tensor, query_mask: Tensor,
               query_scene: Tensor | None = None, lazy_masks: bool = False) -> list[Grounding]:
        """Grounding per query set. A one-scene encoding is shared by every query set in
        ``queries`` (used to ground many phrases in one scene without re-encoding it);
        ``query_scene`` [Bq] names each query set's scene for several scenes.

        ``lazy_masks``: return the mask logits factored (:class:`FactoredGrounding`, read with
        ``logits_at``) instead of computing them for every point. Pre-training renders only
        the Gaussians a view sees (~40 % of a room), so it evaluates only those."""
        B = encoding.tokens.shape[0]
        Bq = queries.shape[0]
        _check_queries(queries, query_mask, self.text_dim)
        scene = _scene_of_queries(query_scene, B, Bq)  # validates the set -> scene mapping
        tokens = encoding.tokens
        use_pool = self.decoder.pool_proj is not None
        lazy = lazy_masks and not use_pool  # pooling needs every point's logits in the decoder
        feats = None if lazy else self._point_mask_features(encoding)
        computed: list[list[Tensor]] = []  # mask logits per layer per query set, when pooling

        def pool(mask_emb: Tensor) -> Tensor:  # [Bq, m, D] -> [Bq, m, C]: mask-weighted features
            logits = [self.mask_logits(mask_emb[i], feats[b])[0] for i, b in enumerate(scene)]  # [m, N_b]
            computed.append(logits)
            return torch.stack([_mask_pool(lg, encoding.point_features, encoding.point_offsets, b)
                                for lg, b in zip(logits, scene)])

        # the decoder's scene-level work (point projections, attention keys / values) runs
        # once per scene, however many query sets share it
        layers = self.decoder(tokens, encoding.token_xyz, encoding.token_pad, queries.to(tokens.dtype),
                              query_mask.bool(), pool=pool if use_pool else None, scene=scene)
        factors = self._mask_factors(encoding, scene, layers) if lazy else None
        out = []
        for i, b in enumerate(scene):  # without pooling: every layer's logits from one product
            if lazy:
                preds = [FactoredGrounding(mask_logits=None, token_logits=logits[i], mask_factors=f)
                         for f, (_, logits) in zip(factors[i], layers)]
                out.append(FactoredGrounding(None, preds[-1].token_logits, aux=preds[:-1],
                                             mask_factors=preds[-1].mask_factors))
                continue
            masks = ([computed[j][i] for j in range(len(layers))] if use_pool else
                     self.mask_logits(torch.cat([emb[i] for emb, _ in layers]), feats[b], len(layers)))
            preds = [Grounding(mask_logits=mask, token_logits=logits[i]) for mask, (_, logits) in zip(masks, layers)]
            final = preds[-1]
            out.append(Grounding(final.mask_logits, final.token_logits, aux=preds[:-1]))
        return out

    def fold_mask_embeddings(self, mask_emb: Tensor) -> tuple[Tensor, Tensor]:
        """Mask embeddings [k, D] -> (basis weights [k, D'], offsets [k]) such that
        ``basis @ weights.T + offsets`` = mask embedding . mask feature, for every point.

        The mask feature of a voxel is ``W2 gelu(W1 f + b1) + b2`` (``mask_proj``), plus
        ``Wp phi(x) + bp`` with the position's Fourier features phi (``mask_position``). Both
        output layers are linear, so ``e . feature = (e W2) . gelu(W1 f + b1) + (e Wp) . phi(x)
        + e . (b2 + bp)``: the [V, D] x [D, D] products move to the k query side (k = 3 x 32 in
        the CPU preset against ~19k voxels). Same function up to rounding;
        :meth:`reference_mask_features` is the unfolded form the tests compare against."""
        out = self.mask_proj[2]
        weights, offsets = mask_emb @ out.weight, mask_emb @ out.bias
        if self.mask_position is not None:
            proj = self.mask_position.proj
            weights = torch.cat([weights, mask_emb @ proj.weight], 1)
            offsets = offsets + mask_emb @ proj.bias
        return weights, offsets

    def mask_logits(self, mask_emb: Tensor, point_basis: Tensor, parts: int = 1) -> list[Tensor]:
        """Mask logits of ``parts`` equal blocks of embeddings [parts * m, D] against one scene's
        point basis [N, D'] -> ``parts`` x [m, N], each the transpose of a point-major [N, m]
        block (a view).

        Point-major, because ``emb @ feats.T`` hands the [N, D'] basis a transposed gradient
        that is then accumulated and run through GELU backward in that strided layout; and
        the renderer wants [N, m] anyway (``sigmoid(logits).T`` is then contiguous)."""
        weights, offsets = self.fold_mask_embeddings(mask_emb)
        logits = torch.addmm(offsets, point_basis, weights.T)  # [N, parts * m]
        return [block.T for block in logits.chunk(parts, dim=1)]

    def _mask_factors(self, encoding: PointEncoding, scene: list[int], layers) -> list[list[MaskFactors]]:
        """Per query set, per decoder layer: the factored mask logits over its scene's points
        (the voxel basis, each point's voxel, the folded embeddings)."""
        vox = encoding.voxels
        v_ends, p_ends = vox.voxel_offsets.tolist(), encoding.point_offsets.tolist()
        # the hidden layer runs after forward (on the Gaussians a view sees): its parameters go
        # in as views, which the outputs hold, so DDP's graph walk finds them used
        layer = self.mask_proj[0]
        hidden = (layer.weight.view_as(layer.weight), layer.bias.view_as(layer.bias))
        out = []
        for i, b in enumerate(scene):
            vs, ps = (v_ends[b - 1], p_ends[b - 1]) if b else (0, 0)
            rows = vox.point_to_voxel[ps:p_ends[b]] - vs
            basis_fn = functools.partial(self.voxel_mask_basis, encoding.voxel_features[vs:v_ends[b]],
                                         encoding.voxel_xyz[vs:v_ends[b]], hidden=hidden)
            weights, offsets = self.fold_mask_embeddings(torch.cat([emb[i] for emb, _ in layers]))
            out.append([MaskFactors(None, w, o, rows, basis_fn=basis_fn, basis_inputs=hidden) for w, o in
                        zip(weights.chunk(len(layers)), offsets.chunk(len(layers)))])
        return out

    def reference_mask_features(self, encoding: PointEncoding) -> Tensor:
        """The unfolded per-voxel mask features [V, D] (for tests): ``mask_proj(f)`` plus the
        projected position features."""
        hidden = self.mask_proj[0].out_features
        basis = self._voxel_basis(encoding)
        feats = self.mask_proj[2](basis[:, :hidden])
        if self.mask_position is not None:
            feats = feats + self.mask_position.proj(basis[:, hidden:])
        return feats

    def _point_mask_features(self, encoding: PointEncoding) -> list[Tensor]:
        """Per-point mask basis [N_b, D'] of each scene (``PointEncoding.mask_features``).
        Gathered once and shared by every layer: one row gather (one row scatter in backward)
        instead of a column gather of each layer's [m, V] logits."""
        vox = encoding.voxels
        basis = self._voxel_basis(encoding)
        v_starts = [0] + vox.voxel_offsets[:-1].tolist()
        p_ends = encoding.point_offsets.tolist()
        p_starts = [0] + p_ends[:-1]
        return [torch.index_select(basis[vs:int(ve)], 0,
                                   vox.point_to_voxel[ps:pe] - vs)
                for vs, ve, ps, pe in zip(v_starts, vox.voxel_offsets.tolist(), p_starts, p_ends)]

    def _pool_tokens(self, vox: VoxelBatch, feats: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean-pool voxel features over cells of ``token_stride`` voxels -> padded [B, L, C]."""
        coords = vox.coords.long()
        vbatch = coords[:, 0]
        cells, inverse, cell_offsets = group_cells(coords[:, 1:] // self.token_stride, vbatch, vox.batch_size)
        U = cells.shape[0]
        pooled = scatter_mean(feats, inverse, U)
        xyz = scatter_mean(vox.centers, inverse, U)
        scene_mean = scatter_mean(vox.centers, vbatch, vox.batch_size)
        cbatch = cells[:, 0]
        xyz = xyz - scene_mean[cbatch]
        counts = torch.diff(cell_offsets, prepend=cell_offsets.new_zeros(1))
        L = int(counts.max()) if U else 1
        slot = torch.arange(U, device=feats.device) - (cell_offsets - counts)[cbatch]
        B, C = vox.batch_size, feats.shape[1]
        tokens = feats.new_zeros(B, L, C).index_put((cbatch, slot), pooled)
        token_xyz = xyz.new_zeros(B, L, 3).index_put((cbatch, slot), xyz)
        pad = torch.ones(B, L, dtype=torch.bool, device=feats.device).index_put(
            (cbatch, slot), torch.zeros(U, dtype=torch.bool, device=feats.device))
        return tokens, token_xyz, pad

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``config.json`` (the family, the weights' sha256 and the :class:`ModelConfig`) and
        ``model.safetensors`` into directory ``path`` (atomically per file;
        :func:`liftgs.models.pretrained.save_model_folder`)."""
        if self.config is None:
            raise ValueError("save_pretrained needs the model's ModelConfig; build the model with build_liftgs")
        return save_model_folder(self, self.config, FAMILY, path)

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu", *,
                        revision: str | None = None, cache_dir: str | Path | None = None,
                        local_files_only: bool = True) -> "LiftGS":
        """Load a directory written by :meth:`save_pretrained`, checking the weights' sha256
        (folders written before the checksum existed load unverified, with a warning). ``path``
        may also be a Hugging Face repo id (``owner/name``) whose snapshot is in the local Hugging
        Face cache (``cache_dir``, ``revision``; downloaded only with ``local_files_only=False``)."""
        from liftgs.hub import local_or_hub

        path = local_or_hub(path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
        model = load_model_folder(path, FAMILY, ModelConfig(), build_liftgs, label="LIFT-GS",
                                  writer="LiftGS.save_pretrained", map_location=map_location)
        model.source_dir = Path(path)  # its run's config.json (mode, training ranges) sits near it
        return model

    def push_to_hub(self, repo_id: str, *, token: str | None = None, private: bool | None = None,
                    revision: str | None = None, commit_message: str = "Upload LIFT-GS model", api=None):
        """Upload this model with a generated model card to the Hugging Face repo ``repo_id``
        (:func:`liftgs.hub.push_to_hub`); ``from_pretrained(repo_id)`` loads it back."""
        from liftgs.hub import push_to_hub

        return push_to_hub(self, repo_id, token=token, private=private, revision=revision,
                           commit_message=commit_message, api=api)

    # ------------------------------------------------------------------ one-call grounding
    @torch.no_grad()
    def ground(self, points, colors, phrases: list[str] | str, text_encoder=None, **options):
        """Ground ``phrases`` in a point cloud: one result per phrase with ``masks`` [k, P] bool,
        ``scores`` [k], ``boxes`` [k, 6] (min xyz, max xyz), ``point_mask_ids`` [P] (rank of a
        point's best mask, -1 none) and ``warnings`` — ranked exactly as ``liftgs ground`` ranks
        them (:mod:`liftgs.models.liftgs.grounding`).

        ``points`` [P, 3] metres (z up), ``colors`` [P, 3] in [0, 1], numpy or torch.
        ``text_encoder``: an encoder object, a name / folder / repo id, or None for the one
        this model records (loaded once and kept). ``options``: ``mode`` ("auto", "zero-shot",
        "phrase", "expression"), ``top_k`` (3), ``threshold`` (0.5), ``min_score``,
        ``component_radius`` (0.1 m), ``target`` (expression mode), ``max_points`` (500,000).
        Runs in eval mode on the model's device; the model's train/eval state is restored."""
        from liftgs.models.liftgs.grounding import ground_phrases

        encoder = self._grounding_encoder(text_encoder)
        was_training = self.training
        self.eval()
        try:
            return ground_phrases(self, encoder, points, colors, phrases, model_dir=self.source_dir, **options)
        finally:
            self.train(was_training)

    def _grounding_encoder(self, text_encoder):
        if text_encoder is not None and not isinstance(text_encoder, (str, Path)):
            return text_encoder
        from liftgs.models.provenance import text_encoder_for

        key = None if text_encoder is None else str(text_encoder)
        if key not in self._text_encoders:
            device = next(self.parameters()).device
            self._text_encoders[key] = text_encoder_for(self.source_dir, key, device=device, model=self)
        return self._text_encoders[key]


def build_liftgs(config: ModelConfig) -> LiftGS:
    """Build every component from ``config`` and assemble :class:`LiftGS`."""
    c = config
    encoder = SparseUNet(6, c.encoder_channels, c.encoder_out, blocks=c.encoder_blocks, stem_blocks=c.stem_blocks,
                         fuse_kernel=c.fuse_kernel)
    head = GaussianHead(c.encoder_out, c.head_hidden, c.feature_dim, c.voxel_size, offset_bound=c.offset_bound,
                        scale_init=c.scale_init, scale_max=c.scale_max, opacity_init=c.opacity_init)
    decoder = GroundingDecoder(c.encoder_out, c.text_dim, c.hidden_dim, c.num_layers, c.num_heads, c.ffn_dim,
                               c.dropout, c.num_queries, temperature_init=c.temperature_init,
                               anchored=c.anchored_queries,
                               pooled_dim=c.encoder_out if c.mask_pooled_tokens else None)
    mask_proj = nn.Sequential(nn.Linear(c.encoder_out, c.hidden_dim), nn.GELU(), nn.Linear(c.hidden_dim, c.hidden_dim))
    position = FourierPosition(c.hidden_dim) if c.mask_position else None
    return LiftGS(encoder, head, decoder, mask_proj, c.voxel_size, c.token_stride, c.text_dim, config=c,
                  mask_position=position)


def _mask_pool(mask_logits: Tensor, point_features: Tensor, point_offsets: Tensor, b: int) -> Tensor:
    """Point features of scene ``b`` averaged under each soft mask: [m, N_b] -> [m, C].

    The weights are detached: the token loss then teaches what a covered region *means*
    without pulling the masks towards regions that look like the phrase."""
    start = int(point_offsets[b - 1]) if b > 0 else 0
    feats = point_features[start:int(point_offsets[b])]  # [N_b, C]
    w = torch.sigmoid(mask_logits.detach())
    return (w @ feats) / w.sum(1, keepdim=True).clamp_min(1e-6)


def _check_points(points: Tensor, colors: Tensor, offsets: Tensor) -> None:
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be [P, 3], got {list(points.shape)}")
    if colors.shape != points.shape:
        raise ValueError(f"colors must be [P, 3] like points {list(points.shape)}, got {list(colors.shape)}")
    if offsets.ndim != 1 or offsets.numel() == 0:
        raise ValueError(f"offsets must be [B] cumulative end indices, got shape {list(offsets.shape)}")
    starts = torch.cat([offsets.new_zeros(1), offsets[:-1]])
    if ((offsets - starts) < 1).any() or int(offsets[-1]) != points.shape[0]:
        raise ValueError(f"offsets must be strictly increasing and end at P={points.shape[0]} "
                         f"(every scene needs a point), got {offsets.tolist()}")


def _scene_of_queries(query_scene: Tensor | None, num_scenes: int, num_sets: int) -> list[int]:
    """Scene index of every query set: ``query_scene`` when given, else one set per scene (or
    every set on the single scene)."""
    if query_scene is None:
        if num_sets != num_scenes and num_scenes != 1:
            raise ValueError(f"{num_sets} query sets for {num_scenes} scenes; give one per scene or query_scene")
        return list(range(num_scenes)) if num_sets == num_scenes else [0] * num_sets
    scene = [int(b) for b in query_scene.reshape(-1).tolist()]
    if len(scene) != num_sets or (scene and not 0 <= min(scene) <= max(scene) < num_scenes):
        raise ValueError(f"query_scene must hold {num_sets} scene indices in [0, {num_scenes}), got {scene}")
    return scene


def _check_queries(queries: Tensor, query_mask: Tensor, text_dim: int) -> None:
    if queries.ndim != 3 or queries.shape[2] != text_dim:
        raise ValueError(f"queries must be [B, T, {text_dim}] (the model's text_dim), got {list(queries.shape)}")
    if query_mask.shape != queries.shape[:2]:
        raise ValueError(f"query_mask must be [B, T] = {list(queries.shape[:2])}, got {list(query_mask.shape)}")
