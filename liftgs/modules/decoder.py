"""Grounding decoder: MaskFormer / UniVLG-style transformer over mask proposals (paper Sec 3.3.1).

``m`` learnable mask-proposal queries attend to the scene's point tokens and to the language
query tokens, then to each other. After every layer the shared prediction heads give

* a mask embedding per proposal (its dot product with per-point features = mask logits M),
* token logits C = cos(proposal, token) / temperature over the T query tokens plus a learned
  "no-match" token (Sec 3.2.1: unused proposals are matched to no-match).

Point tokens are the UNet features mean-pooled over coarse cells (``token_stride``^3 voxels)
rather than every point: attention cost then scales with scene area, not point count, while
the mask logits still use full-resolution per-point features.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DecoderLayer(nn.Module):
    """Cross-attention to points, cross-attention to query tokens, self-attention, FFN (post-norm)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.point_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.text_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(4))
        self.drop = nn.Dropout(dropout)

    def forward(self, q: Tensor, q_pos: Tensor, points: Tensor, point_pos: Tensor, point_pad: Tensor,
                text: Tensor, text_pad: Tensor) -> Tensor:
        """q [B, m, D]; points [B, L, D]; text [B, T+1, D]; *_pad True = ignore."""
        a = self.point_attn(q + q_pos, points + point_pos, points, key_padding_mask=point_pad, need_weights=False)[0]
        q = self.norms[0](q + self.drop(a))
        a = self.text_attn(q + q_pos, text, text, key_padding_mask=text_pad, need_weights=False)[0]
        q = self.norms[1](q + self.drop(a))
        k = q + q_pos
        a = self.self_attn(k, k, q, need_weights=False)[0]
        q = self.norms[2](q + self.drop(a))
        return self.norms[3](q + self.drop(self.ffn(q)))


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
                text_mask: Tensor, pool: Callable[[Tensor], Tensor] | None = None) -> list[tuple[Tensor, Tensor]]:
        """point_tokens [B, L, Cp], point_xyz [B, L, 3] (scene-centred), point_pad [B, L] True = pad;
        text [B, T, Ft], text_mask [B, T] True = real token.

        ``pool(mask_embeddings [B, m, D]) -> [B, m, pooled_dim]``: the point features averaged
        under each proposal's mask (needed when the decoder was built with ``pooled_dim``)."""
        if (pool is None) != (self.pool_proj is None):
            raise ValueError("GroundingDecoder: pass pool= exactly when the decoder has pooled_dim")
        B = point_tokens.shape[0]
        points = self.point_in(point_tokens)
        pos = self.point_pos(point_xyz)
        memory = torch.cat([self.text_in(text), self.no_match_memory.expand(B, -1, -1)], dim=1)
        real = torch.cat([text_mask, text_mask.new_ones(B, 1)], dim=1)  # [B, T+1]
        keys = F.normalize(torch.cat([self.token_text(text), self.no_match.expand(B, 1, -1)], dim=1), dim=-1)
        q = self.query_feat.expand(B, -1, -1)
        q_pos = self.query_pos.expand(B, -1, -1)
        if self.anchored:  # each proposal starts at a scene location (Mask3D-style queries)
            anchor = farthest_tokens(point_xyz, point_pad, q.shape[1])  # [B, m]
            take = anchor[..., None].expand(-1, -1, q.shape[2])
            q = q + torch.gather(points, 1, take)
            q_pos = q_pos + torch.gather(pos, 1, take)
        outputs = []
        for layer in self.layers:
            q = layer(q, q_pos, points, pos, point_pad, memory, ~real)
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
