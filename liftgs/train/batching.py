"""Batch variable-size scenes as one flat point tensor plus offsets (Pointcept style).

Both recipes feed the model the same way: B scenes concatenated, ``offsets`` [B] the
cumulative end index of each scene, and per-scene query token sets zero-padded to a common
length with a boolean mask (True = real token).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class PointBatch:
    """Model inputs for B scenes."""

    points: Tensor  # [P, 3] float32, scenes concatenated
    colors: Tensor  # [P, 3] in [0, 1]
    offsets: Tensor  # [B] int64 cumulative end index
    queries: Tensor  # [B, T, F] zero-padded query tokens
    query_mask: Tensor  # [B, T] bool, True = real token

    def to(self, device: torch.device | str) -> "PointBatch":
        return PointBatch(*(t.to(device) for t in (self.points, self.colors, self.offsets,
                                                      self.queries, self.query_mask)))

    @property
    def num_scenes(self) -> int:
        return int(self.offsets.numel())


def collate_points(points: list[Tensor], colors: list[Tensor], queries: list[Tensor],
                   query_dim: int) -> PointBatch:
    """points / colors: B x [P_b, 3]; queries: Bq x [T_b, F] (T_b may be 0) -> PointBatch.

    Bq = B (one query set per scene) or more, when several query sets share a scene (the
    model's ``query_scene``). The padded length is at least 1 so the decoder always sees a
    (masked) token slot.
    """
    if len(points) != len(colors) or not points or len(queries) < len(points):
        raise ValueError("collate_points needs the same, non-zero number of point sets and colour "
                         "sets, and at least one query set per scene")
    lengths = torch.tensor([p.shape[0] for p in points], dtype=torch.long)
    T = max(1, max(q.shape[0] for q in queries))
    B = len(queries)
    padded = torch.zeros(B, T, query_dim, dtype=torch.float32)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, q in enumerate(queries):
        if q.shape[0]:
            if q.shape[1] != query_dim:
                raise ValueError(f"query set {b} has width {q.shape[1]}, the model expects {query_dim}")
            padded[b, : q.shape[0]] = q
            mask[b, : q.shape[0]] = True
    return PointBatch(points=torch.cat(points).float(), colors=torch.cat(colors).float(),
                      offsets=lengths.cumsum(0), queries=padded, query_mask=mask)


def collate_groups(groups: list[list], query_dim: int) -> tuple[PointBatch, Tensor]:
    """Samples grouped by scene (each sample has ``points``, ``colors``, ``queries``; a group's
    samples share their scene) -> the batch with one point set per group and every sample's
    query set, plus ``query_scene`` [Bq]: the group index of each query set (see LiftGS)."""
    batch = collate_points([g[0].points for g in groups], [g[0].colors for g in groups],
                           [s.queries for g in groups for s in g], query_dim)
    query_scene = torch.tensor([b for b, g in enumerate(groups) for _ in g], dtype=torch.long)
    return batch, query_scene


def one_hot_tokens(num_targets: int, num_tokens: int) -> Tensor:
    """Positive map [K, T + 1] where target k matches token k (pseudo-queries, appendix A.1)."""
    out = torch.zeros(num_targets, num_tokens + 1)
    if num_targets:
        out[torch.arange(num_targets), torch.arange(num_targets)] = 1.0
    return out


def positive_map(token_sets: list[list[int]], num_tokens: int) -> Tensor:
    """[K, T + 1] rows uniform over each target's positive tokens (rows sum to 1).

    A target without any positive token (its span fell outside the tokenised text) points at
    nothing real; it is given the whole text uniformly rather than silently dropped.
    """
    out = torch.zeros(len(token_sets), num_tokens + 1)
    for k, toks in enumerate(token_sets):
        toks = [t for t in toks if 0 <= t < num_tokens] or list(range(num_tokens))
        if toks:
            out[k, toks] = 1.0 / len(toks)
    return out
