"""Grounding decoder: MaskFormer / UniVLG-style transformer over mask proposals (paper Sec 3.3.1).

``m`` learnable mask-proposal queries attend to the scene's point tokens and to the language
query tokens, then to each other. After every layer the shared prediction heads give

* a mask embedding per proposal (its dot product with per-point features = mask logits M),
* token logits C = cos(proposal, token) / temperature over the T query tokens plus a learned
  "no-match" token (Sec 3.2.1: unused proposals are matched to no-match).

Point tokens are the UNet features mean-pooled over coarse cells (``token_stride``^3 voxels)
rather than every point: attention cost then scales with scene area, not point count, while
the mask logits still use full-resolution per-point features.

Several query sets are often decoded against one scene (fine-tuning and pre-training decode
every query set of a scene from one encoding). Everything that depends only on the scene runs
once per scene: the point-token projection and positional MLP, the anchor sampling, and in
every layer the key and value projections of the point cross-attention ([L, D] x [D, D] with
L ~ 1.4-1.7k tokens in a room, against m = 32 queries). Only the query side (queries, their attention to
the scene's keys, text attention, self-attention, FFN, heads) runs per query set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DecoderLayer(nn.Module):
    """Cross-attention to points, cross-attention to query tokens, self-attention, FFN (post-norm).

    The point cross-attention is ``point_attn`` (an ``nn.MultiheadAttention``, whose parameters
    it uses) evaluated in two parts: :meth:`point_memory` projects a scene's keys and values
    once, :meth:`forward` attends to them from each query set of that scene.

    ``text_attention=False`` builds the layer without the query-token attention (and its
    norm): cross-attention to the scene's tokens, self-attention, FFN, as GenSplat's instance
    decoder uses it; ``forward`` then takes no text."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float, text_attention: bool = True):
        super().__init__()
        self.point_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.text_attn = (nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
                          if text_attention else None)
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(4 if text_attention else 3))
        self.drop = nn.Dropout(dropout)

    def point_memory(self, points: Tensor, keyed: Tensor) -> tuple[Tensor, Tensor]:
        """Keys ``W_k keyed + b_k`` and values ``W_v points + b_v`` [B, L, D] of ``point_attn``
        for each scene's point tokens ``points`` and ``keyed`` = points + positional encoding."""
        D = points.shape[-1]
        w, b = self.point_attn.in_proj_weight, self.point_attn.in_proj_bias
        return F.linear(keyed, w[D:2 * D], b[D:2 * D]), F.linear(points, w[2 * D:], b[2 * D:])

    def attend_points(self, q: Tensor, keys: Tensor, values: Tensor, point_pad: Tensor) -> Tensor:
        """``point_attn(q, ...)`` from queries q [Bq, m, D] (positions included) to projected
        keys / values [Bq, L, D] (:meth:`point_memory`, gathered per query set); point_pad
        [Bq, L] True = ignore. Heads are split as ``nn.MultiheadAttention`` splits them.

        Attention dropout (training mode, dropout > 0) is SDPA's: like ``nn.MultiheadAttention``
        it zeroes each softmax weight with probability p and scales the rest by 1 / (1 - p),
        so the two are equal in distribution, not draw by draw."""
        attn = self.point_attn
        D = q.shape[-1]
        query = F.linear(q, attn.in_proj_weight[:D], attn.in_proj_bias[:D])

        def heads(x: Tensor) -> Tensor:  # [Bq, n, D] -> [Bq, H, n, D / H]
            return x.unflatten(-1, (attn.num_heads, D // attn.num_heads)).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(query), heads(keys), heads(values),
                                             attn_mask=~point_pad[:, None, None, :],
                                             dropout_p=attn.dropout if attn.training else 0.0)
        return attn.out_proj(out.transpose(1, 2).flatten(2))

    def forward(self, q: Tensor, q_pos: Tensor, keys: Tensor, values: Tensor, point_pad: Tensor,
                text: Tensor | None = None, text_pad: Tensor | None = None) -> Tensor:
        """q [Bq, m, D]; keys / values [Bq, L, D] from :meth:`point_memory`; text [Bq, T+1, D]
        (required with text attention, ignored without); *_pad True = ignore."""
        norms = iter(self.norms)
        a = self.attend_points(q + q_pos, keys, values, point_pad)
        q = next(norms)(q + self.drop(a))
        if self.text_attn is not None:
            if text is None:
                raise ValueError("DecoderLayer: this layer attends to query tokens; pass text= and text_pad=")
            a = self.text_attn(q + q_pos, text, text, key_padding_mask=text_pad, need_weights=False)[0]
            q = next(norms)(q + self.drop(a))
        k = q + q_pos
        a = self.self_attn(k, k, q, need_weights=False)[0]
        q = next(norms)(q + self.drop(a))
        return next(norms)(q + self.drop(self.ffn(q)))


def farthest_tokens(xyz: Tensor, pad: Tensor, m: int) -> Tensor:
    """Indices [B, m] of ``m`` tokens per scene chosen by farthest-point sampling over the
    non-padded tokens of ``xyz`` [B, L, 3] (deterministic: starts at the first real token;
    repeats tokens when a scene has fewer than ``m``). No gradient."""
    B, L, _ = xyz.shape
    with torch.no_grad():
        x = xyz.detach().float()
        inf = torch.finfo(x.dtype).max
        first = (~pad).float().argmax(1)  # [B] first real token
        dist = torch.where(pad, torch.full_like(x[..., 0], -1.0), torch.full_like(x[..., 0], inf))  # [B, L]
        out = torch.empty(B, m, dtype=torch.long, device=xyz.device)
        cur = first
        rows = torch.arange(B, device=xyz.device)
        for j in range(m):
            out[:, j] = cur
            d = (x - x[rows, cur][:, None, :]).square().sum(-1)  # [B, L]
            dist = torch.where(pad, dist, torch.minimum(dist, d))
            cur = dist.argmax(1)
    return out


class GroundingDecoder(nn.Module):
    """Returns, for every layer, mask embeddings [B, m, D] and token logits [B, m, T+1]."""

    def __init__(self, point_dim: int, text_dim: int, hidden_dim: int, num_layers: int, num_heads: int,
                 ffn_dim: int, dropout: float, num_queries: int, temperature_init: float = 0.07,
                 anchored: bool = False, pooled_dim: int | None = None):
        super().__init__()
        D = hidden_dim
        # mask-pooled point features [B, m, pooled_dim] added to each proposal's token vector
        self.pool_proj = nn.Linear(pooled_dim, D) if pooled_dim else None
        self.anchored = bool(anchored)
        self.query_feat = nn.Parameter(torch.randn(num_queries, D) * 0.02)
        self.query_pos = nn.Parameter(torch.randn(num_queries, D) * 0.02)
        self.point_in = nn.Sequential(nn.Linear(point_dim, D), nn.LayerNorm(D))
        self.point_pos = nn.Sequential(nn.Linear(3, D), nn.GELU(), nn.Linear(D, D))
        self.text_in = nn.Sequential(nn.Linear(text_dim, D), nn.LayerNorm(D))
        # an always-present memory slot, so attention over text never sees only padding
        self.no_match_memory = nn.Parameter(torch.randn(1, 1, D) * 0.02)
        self.layers = nn.ModuleList(DecoderLayer(D, num_heads, ffn_dim, dropout) for _ in range(num_layers))
        self.out_norm = nn.LayerNorm(D)
        self.mask_embed = nn.Sequential(nn.Linear(D, D), nn.GELU(), nn.Linear(D, D), nn.GELU(), nn.Linear(D, D))
        self.token_query = nn.Linear(D, D)
        self.token_text = nn.Linear(text_dim, D)
        self.no_match = nn.Parameter(torch.randn(D) * 0.02)  # learned no-match token (Sec 3.2.1)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature_init)))

    def forward(self, point_tokens: Tensor, point_xyz: Tensor, point_pad: Tensor, text: Tensor,
                text_mask: Tensor, pool: Callable[[Tensor], Tensor] | None = None,
                scene: Tensor | Sequence[int] | None = None) -> list[tuple[Tensor, Tensor]]:
        """point_tokens [B, L, Cp], point_xyz [B, L, 3] (scene-centred), point_pad [B, L] True = pad
        per scene; text [Bq, T, Ft], text_mask [Bq, T] True = real token per query set.

        ``scene`` [Bq] (LongTensor or ints): the scene of each query set; default one set per
        scene (Bq = B). Scene-level work (point projection, positions, anchors, the point
        keys / values of every layer) runs once per scene and is gathered per query set.

        ``pool(mask_embeddings [Bq, m, D]) -> [Bq, m, pooled_dim]``: the point features averaged
        under each proposal's mask (needed when the decoder was built with ``pooled_dim``)."""
        if (pool is None) != (self.pool_proj is None):
            raise ValueError("GroundingDecoder: pass pool= exactly when the decoder has pooled_dim")
        B, Bq = point_tokens.shape[0], text.shape[0]
        index = _scene_index(scene, B, Bq, point_tokens.device)  # None = identity
        per_set = (lambda t: t) if index is None else (lambda t: torch.index_select(t, 0, index))
        points = self.point_in(point_tokens)  # [B, L, D]
        pos = self.point_pos(point_xyz)
        keyed = points + pos
        pad = per_set(point_pad)
        memory = torch.cat([self.text_in(text), self.no_match_memory.expand(Bq, -1, -1)], dim=1)
        real = torch.cat([text_mask, text_mask.new_ones(Bq, 1)], dim=1)  # [Bq, T+1]
        keys = F.normalize(torch.cat([self.token_text(text), self.no_match.expand(Bq, 1, -1)], dim=1), dim=-1)
        q = self.query_feat.expand(Bq, -1, -1)
        q_pos = self.query_pos.expand(Bq, -1, -1)
        if self.anchored:  # each proposal starts at a scene location (Mask3D-style queries)
            anchor = farthest_tokens(point_xyz, point_pad, q.shape[1])  # [B, m]
            take = anchor[..., None].expand(-1, -1, q.shape[2])
            q = q + per_set(torch.gather(points, 1, take))
            q_pos = q_pos + per_set(torch.gather(pos, 1, take))
        outputs = []
        for layer in self.layers:
            point_keys, point_values = layer.point_memory(points, keyed)  # once per scene
            q = layer(q, q_pos, per_set(point_keys), per_set(point_values), pad, memory, ~real)
            outputs.append(self._predict(q, keys, real, pool))
        return outputs

    def _predict(self, q: Tensor, keys: Tensor, real: Tensor,
                 pool: Callable[[Tensor], Tensor] | None) -> tuple[Tensor, Tensor]:
        h = self.out_norm(q)
        mask_emb = self.mask_embed(h)
        vec = self.token_query(h)
        if pool is not None:  # what the mask covers speaks for the proposal too
            vec = vec + self.pool_proj(pool(mask_emb))
        scale = self.logit_scale.clamp(max=math.log(100.0)).exp()
        logits = torch.einsum("bmd,btd->bmt", F.normalize(vec, dim=-1), keys) * scale
        logits = logits.masked_fill(~real[:, None, :], float("-inf"))
        return mask_emb, logits


def _scene_index(scene: Tensor | Sequence[int] | None, num_scenes: int, num_sets: int,
                 device: torch.device) -> Tensor | None:
    """``scene`` as a LongTensor [Bq] on ``device``, or None when it is one set per scene in
    order (nothing to gather)."""
    if scene is None:
        if num_sets != num_scenes:
            raise ValueError(f"GroundingDecoder: {num_sets} query sets for {num_scenes} scenes; pass scene=")
        return None
    ids = [int(b) for b in (scene.reshape(-1).tolist() if isinstance(scene, Tensor) else scene)]
    if len(ids) != num_sets or (ids and not 0 <= min(ids) <= max(ids) < num_scenes):
        raise ValueError(f"GroundingDecoder: scene must hold {num_sets} scene indices in [0, {num_scenes}), "
                         f"got {ids}")
    if ids == list(range(num_scenes)):
        return None
    return torch.tensor(ids, dtype=torch.long, device=device)
