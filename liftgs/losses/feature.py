"""Contrastive feature loss (paper eq. 7, as in PonderV2).

Each labelled pixel's rendered feature must pick its own segment's embedding among the
frame's unique segment embeddings. Both sides are L2-normalised and divided by a
temperature (the paper writes a plain dot product; rendered features are alpha-weighted sums
whose norm varies with coverage, so we compare directions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

FEATURE_TEMPERATURE = 0.07  # eq. 7's temperature; zero-shot ranking reads the field with it too
SAME_CAPTION_COSINE = 0.8  # an extra negative this close to the pixel's own embedding is not one


def feature_contrastive_loss(rendered: Tensor, segment_ids: Tensor, embeddings: Tensor,
                             temperature: float = FEATURE_TEMPERATURE, negatives: Tensor | None = None,
                             same_above: float = SAME_CAPTION_COSINE) -> Tensor:
    """rendered [Np, F]; segment_ids [Np] int (-1 ignored); embeddings [S, F] -> scalar loss.

    ``negatives`` [Kn, F]: extra wrong answers for every pixel (segment embeddings of other
    scenes, :class:`liftgs.train.negatives.NegativeBank`); one whose cosine with the pixel's
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
    valid = segment_ids >= 0
    if not bool(valid.any()) or embeddings.shape[0] == 0:
        return rendered.sum() * 0.0
    f = F.normalize(rendered[valid], dim=-1)
    e = F.normalize(embeddings.to(rendered), dim=-1)
    target = segment_ids[valid].long()
    if negatives is None or negatives.shape[0] == 0:
        return F.cross_entropy(f @ e.T / temperature, target)  # [Nv, S]
    n = F.normalize(negatives.to(rendered), dim=-1)
    logits = f @ torch.cat([e, n]).T / temperature  # [Nv, S + Kn]
    same = (e @ n.T > same_above)[target]  # [Nv, Kn] a negative that names the pixel's segment
    logits = torch.cat([logits[:, :e.shape[0]], logits[:, e.shape[0]:].masked_fill(same, float("-inf"))], 1)
    return F.cross_entropy(logits, target)
