"""Contrastive feature loss (paper eq. 7, as in PonderV2).

Each labelled pixel's rendered feature must pick its own segment's embedding among the
frame's unique segment embeddings. Both sides are L2-normalised and divided by a
temperature (the paper writes a plain dot product; rendered features are alpha-weighted sums
whose norm varies with coverage, so we compare directions).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

FEATURE_TEMPERATURE = 0.07  # eq. 7's temperature; zero-shot ranking reads the field with it too
SAME_CAPTION_COSINE = 0.8  # an extra negative this close to the pixel's own embedding is not one


@dataclass
class LowRankFeatures:
    """Rendered features kept factored, ``basis @ weight.T + alpha * bias`` ([Np, F]).

    The Gaussian features are the Gaussian head's last linear layer over a 64-d basis and
    compositing is linear, so the renderer composites the basis (docs/training.md). The loss
    only needs dot products with a few hundred embeddings and the feature norms; both follow
    from the factors (``basis @ (E W).T``; a 64 x 64 Gram quadratic form), far cheaper than
    forming [Np, 384] first. :meth:`dense` is the plain reference.
    """

    basis: Tensor  # [Np, H] composited basis
    alpha: Tensor  # [Np] accumulated opacity (the bias is composited with it)
    weight: Tensor  # [F, H]
    bias: Tensor | None = None  # [F]

    @property
    def shape(self) -> tuple[int, int]:
        return (self.basis.shape[0], self.weight.shape[0])

    @property
    def ndim(self) -> int:
        return 2

    def dense(self) -> Tensor:  # [Np, F]
        out = self.basis @ self.weight.T
        return out if self.bias is None else out + self.alpha[:, None] * self.bias

    def rows(self, index: Tensor) -> LowRankFeatures:
        return LowRankFeatures(self.basis[index], self.alpha[index], self.weight, self.bias)

    def dot(self, vectors: Tensor) -> Tensor:  # [K, F] -> [Np, K]
        out = self.basis @ (vectors @ self.weight).T
        return out if self.bias is None else out + self.alpha[:, None] * (vectors @ self.bias)

    def norm(self) -> Tensor:  # [Np], of the dense rows
        sq = ((self.basis @ (self.weight.T @ self.weight)) * self.basis).sum(1)
        if self.bias is not None:
            cross = self.basis @ (self.weight.T @ self.bias)
            sq = sq + 2 * self.alpha * cross + self.alpha ** 2 * self.bias.dot(self.bias)
        return sq.clamp_min(1e-24).sqrt()


def feature_contrastive_loss(rendered: Tensor | LowRankFeatures, segment_ids: Tensor, embeddings: Tensor,
                             temperature: float = FEATURE_TEMPERATURE, negatives: Tensor | None = None,
                             same_above: float = SAME_CAPTION_COSINE) -> Tensor:
    """rendered [Np, F] (or factored); segment_ids [Np] int (-1 ignored); embeddings [S, F] -> loss.

    ``negatives`` [Kn, F]: extra wrong answers for every pixel (segment embeddings of other
    scenes, :class:`liftgs.recipes.negatives.NegativeBank`); one whose cosine with the pixel's
    own segment embedding exceeds ``same_above`` names the same thing and is left out.
    """
    if rendered.ndim != 2 or embeddings.ndim != 2 or rendered.shape[1] != embeddings.shape[1]:
        raise ValueError(
            f"feature_contrastive_loss needs rendered [Np, F] and embeddings [S, F] of equal F, "
            f"got {list(rendered.shape)} and {list(embeddings.shape)}"
        )
    if segment_ids.shape != rendered.shape[:1]:
        raise ValueError(f"segment_ids must be [{rendered.shape[0]}], got {list(segment_ids.shape)}")
    if negatives is not None and (negatives.ndim != 2 or negatives.shape[1] != embeddings.shape[1]):
        raise ValueError(f"negatives must be [Kn, {embeddings.shape[1]}], got {list(negatives.shape)}")
    low_rank = isinstance(rendered, LowRankFeatures)
    like = rendered.basis if low_rank else rendered
    valid = segment_ids >= 0
    if not bool(valid.any()) or embeddings.shape[0] == 0:
        return like.sum() * 0.0
    e = F.normalize(embeddings.to(like), dim=-1)
    target = segment_ids[valid].long()
    n = None if negatives is None or negatives.shape[0] == 0 else F.normalize(negatives.to(like), dim=-1)
    candidates = e if n is None else torch.cat([e, n])
    if low_rank:
        r = rendered.rows(valid)
        logits = r.dot(candidates) / (r.norm().clamp_min(1e-12)[:, None] * temperature)
    else:
        logits = F.normalize(rendered[valid], dim=-1) @ candidates.T / temperature  # [Nv, S + Kn]
    if n is not None:  # drop a negative that names the pixel's own segment
        same = torch.cat([torch.zeros(e.shape[0], e.shape[0], dtype=torch.bool, device=e.device),
                          e @ n.T > same_above], 1)  # [S, S + Kn]
        logits = logits.masked_fill(same[target], float("-inf"))
    return F.cross_entropy(logits, target)
