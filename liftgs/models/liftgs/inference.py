"""Grounding phrases in a point cloud with a trained model (zero-shot or fine-tuned).

Zero-shot: a phrase's pooled text vector is fed as a single query token,
exactly like a pseudo-query in pre-training, where each segment embedding is one token
(appendix A.1). Proposals are ranked by the probability they give that token (the no-match
column excluded) and each proposal's mask is ``sigmoid(mask_logits) > threshold`` over the
input points, reduced to its main spatially connected piece (``component_radius``, see
:mod:`liftgs.modules.components`: a proposal is one object, and a box from the min / max of a
mask's points is ruined by one far stray point). After fine-tuning on referring expressions, :func:`ground_tokens` scores
proposals by the probability mass on the target span's tokens instead.

**Ranking by the feature field (zero-shot).** Pre-training also distils the 2D segment
embeddings into a per-Gaussian feature field (eq. 7): every Gaussian's feature is trained to
pick its pixel's segment embedding among the view's. A proposal's *relevance* to a phrase is
``exp((r - 1) / t)``, where ``r`` is the mean cosine between the phrase vector and the features
of the Gaussians inside its mask and ``t`` the temperature the field was trained with (in log
space, ``r / t`` is the field's logit). ``ground(..., rank_by=...)`` picks the score:

* ``"tokens"``: P(phrase token) x mask confidence (the decoder alone; fine-tuned models, whose
  field is no longer trained);
* ``"features"``: relevance x mask confidence (zero-shot after pre-training, the default of
  the zero-shot benchmark, the demo and ``liftgs ground`` on a pre-training run): on the CPU
  budget the decoder's token head ranks a single phrase barely above chance while the field,
  which sees every labelled pixel, ranks it well (docs/training.md);
* ``"both"``: the product of the two.

With the field, every proposal is first cut to its main connected piece and the confidence
and relevance are taken over that piece, the mask that is returned: a thresholded mask often
holds a few look-alike points elsewhere in the room, which pull its mean cosine towards
another object's. On the 30 held-out ``standard`` rooms of docs/training.md this raised
Acc@0.25 from 30.5 to 39.4 % for the same checkpoint (and from 28.6 to 35.7 % on its val
rooms). The token ranking keeps cutting only the top ``k`` masks (its score does not depend on
stray points much, and instance segmentation asks hundreds of phrases per scene).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from liftgs.losses.feature import FEATURE_TEMPERATURE
from liftgs.types import Gaussians

if TYPE_CHECKING:  # annotations only: LiftGS.ground calls into this module
    from liftgs.models.liftgs.model import LiftGS

DEFAULT_COMPONENT_RADIUS = 0.1  # metres: two 5 cm voxels; pieces further apart are separate objects
ZERO_SHOT_RANKING = "features"  # how zero-shot call sites rank proposals (see the module docstring)
RANKINGS = ("tokens", "features", "both")


@dataclass
class GroundingResult:
    """Ranked masks for one phrase: best first."""

    phrase: str
    masks: Tensor  # [k, P] bool over the input points
    scores: Tensor  # [k] ranking score of each proposal: probability of the target token(s)
    # and / or feature relevance, x mask confidence (see ground_tokens)
    query_indices: Tensor  # [k] int64 proposal index in the decoder
    mask_probs: Tensor  # [k, P] float sigmoid(mask_logits)


def _as_tensor(x: np.ndarray | Tensor, device: torch.device) -> Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x, dtype=torch.float32, device=device)


def tokens_in_span(token_spans: Sequence[tuple[int, int]], span: tuple[int, int]) -> list[int]:
    """Indices of the tokens whose character span overlaps ``span`` (start, end)."""
    a, b = span
    return [i for i, (s, e) in enumerate(token_spans) if s < b and e > a]


@torch.no_grad()
def ground_tokens(model: LiftGS, points: np.ndarray | Tensor, colors: np.ndarray | Tensor,
                  tokens: Sequence[Tensor], target_tokens: Sequence[Sequence[int]], top_k: int = 5,
                  threshold: float = 0.5, labels: Sequence[str] | None = None,
                  component_radius: float | None = DEFAULT_COMPONENT_RADIUS,
                  mask_score: bool = True, relevance_queries: Tensor | None = None,
                  feature_temperature: float = FEATURE_TEMPERATURE,
                  token_score: bool = True) -> list[GroundingResult]:
    """Ground several token sequences in one scene (encoded once).

    ``tokens[i]`` [T_i, F] are the query token vectors of sequence i; ``target_tokens[i]`` the
    indices whose probability mass ranks the proposals (e.g. the target mention's tokens).
    ``component_radius`` (metres) keeps each mask's main connected piece; None keeps it whole.
    ``mask_score`` multiplies each proposal's token probability by its mask confidence (mean
    sigmoid over the points of its mask, 0 for an empty mask), as Mask2Former scores
    instances: a proposal that names the phrase but has no confident mask ranks low.
    ``relevance_queries`` [B, F] (one vector per sequence, in the Gaussian feature space)
    multiplies each score by the feature field's relevance ``exp((r - 1) / feature_temperature)``
    (``r`` = mean cosine of the vector with the Gaussian features inside the mask, see the
    module docstring; with ``component_radius`` every proposal is cut to its main piece first
    and confidence and relevance are taken over that piece); None ranks by the decoder alone. ``token_score=False`` leaves the token
    probability out of the score (ranking by relevance x confidence needs ``relevance_queries``).
    """
    if len(tokens) != len(target_tokens):
        raise ValueError(f"{len(tokens)} token sequences but {len(target_tokens)} target index lists")
    if len(tokens) == 0:
        return []
    if relevance_queries is not None and relevance_queries.shape[0] != len(tokens):
        raise ValueError(f"relevance_queries has {relevance_queries.shape[0]} vectors for {len(tokens)} token sequences")
    if not token_score and relevance_queries is None:
        raise ValueError("token_score=False ranks by feature relevance: pass relevance_queries")
    if not feature_temperature > 0:
        raise ValueError(f"feature_temperature must be > 0, got {feature_temperature}")
    device = next(model.parameters()).device
    pts, cols = _as_tensor(points, device), _as_tensor(colors, device)
    queries, mask = _pad_tokens(tokens, model.text_dim, device)
    was_training = model.training
    model.eval()
    try:
        encoding = model.encode(pts, cols, torch.tensor([pts.shape[0]], device=device))
        groundings = model.decode(encoding, queries, mask)
        field = (_feature_similarity(model, encoding, pts, cols, relevance_queries.to(device))
                 if relevance_queries is not None else None)  # [P, B]
    finally:
        model.train(was_training)
    results = []
    for i, g in enumerate(groundings):
        targets = list(target_tokens[i]) or list(range(int(tokens[i].shape[0])))
        if max(targets) >= int(tokens[i].shape[0]) or min(targets) < 0:
            raise ValueError(f"target token indices {targets} out of range for {int(tokens[i].shape[0])} tokens")
        scores, idx, masks, mask_probs = _rank_proposals(
            g, pts, targets, top_k, threshold, component_radius, mask_score, token_score,
            None if field is None else field[:, i], feature_temperature)
        results.append(GroundingResult(labels[i] if labels is not None else "", masks, scores, idx, mask_probs))
    return results


def _rank_proposals(g, pts: Tensor, targets: list[int], top_k: int, threshold: float,
                    component_radius: float | None, mask_score: bool, token_score: bool,
                    similarity: Tensor | None, temperature: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One query set's top-k proposals: (scores, indices, masks [k, P], mask probabilities)."""
    sig = torch.sigmoid(g.mask_logits)  # [m, P]
    inside = sig > threshold
    cut_first = similarity is not None and component_radius is not None
    if cut_first:  # the field scores the piece that is returned (see the module docstring)
        inside = _main_components(pts, inside, sig, component_radius)
    prob = _proposal_scores(g.token_logits, targets, inside, sig, mask_score, token_score, similarity, temperature)
    scores, idx = prob.topk(min(int(top_k), prob.shape[0]))
    mask_probs, masks = sig[idx], inside[idx]
    if component_radius is not None and not cut_first:
        masks = _main_components(pts, masks, mask_probs, component_radius)
    return scores, idx, masks, mask_probs


def _proposal_scores(token_logits: Tensor, targets: list[int], inside: Tensor, sig: Tensor, mask_score: bool,
                     token_score: bool, similarity: Tensor | None, temperature: float) -> Tensor:
    """[m] ranking score: P(target tokens) (no-match excluded; 1 without ``token_score``) x mask
    confidence (``mask_score``) x feature relevance (when ``similarity`` [P] is given)."""
    prob = token_logits.softmax(-1)[:, targets].sum(-1) if token_score else token_logits.new_ones(inside.shape[0])
    if mask_score:  # Mask2Former's instance score: class probability x mask confidence
        prob = prob * (sig * inside).sum(1) / inside.sum(1).clamp_min(1)
    if similarity is not None:
        prob = prob * mask_relevance(inside, similarity, temperature)
    return prob


def _pad_tokens(tokens: Sequence[Tensor], dim: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """B token sequences [T_i, F] -> zero-padded queries [B, T, F] and mask [B, T] (True = real)."""
    B, T = len(tokens), max(max(int(t.shape[0]) for t in tokens), 1)
    queries = torch.zeros(B, T, dim, device=device)
    mask = torch.zeros(B, T, dtype=torch.bool, device=device)
    for i, t in enumerate(tokens):
        queries[i, : t.shape[0]] = t.to(device=device, dtype=torch.float32)
        mask[i, : t.shape[0]] = True
    return queries, mask


def _feature_similarity(model: LiftGS, encoding, points: Tensor, colors: Tensor, vectors: Tensor) -> Tensor:
    """Cosine [P, B] between every Gaussian's feature (the eq. 7 field) and each vector [B, F]."""
    features = model.gaussian_head(encoding.point_features, points, colors).feature_vectors()
    if features is None or features.shape[1] != vectors.shape[1]:
        width = None if features is None else features.shape[1]
        raise ValueError(f"feature relevance needs Gaussian features as wide as the query vectors "
                         f"({vectors.shape[1]}); this model's are {width}")
    f = torch.nn.functional.normalize(features, dim=1)
    return f @ torch.nn.functional.normalize(vectors.to(f.dtype), dim=1).T


def mask_relevance(inside: Tensor, similarity: Tensor, temperature: float) -> Tensor:
    """``exp((r - 1) / temperature)`` per mask: inside [m, P] bool, similarity [P] cosine -> [m]
    in (0, 1], with ``r`` the mean similarity over the mask's points (an empty mask gets r = -1)."""
    count = inside.sum(1)
    r = (inside.to(similarity.dtype) @ similarity) / count.clamp_min(1)
    r = torch.where(count > 0, r, torch.full_like(r, -1.0))
    return torch.exp((r - 1.0) / temperature)


def _main_components(points: Tensor, masks: Tensor, probs: Tensor, radius: float) -> Tensor:
    """Each mask [k, P] reduced to its connected piece of largest probability mass."""
    from liftgs.modules.components import keep_main_component

    pts = points.detach().cpu().numpy()
    m, p = masks.cpu().numpy(), probs.detach().cpu().numpy()
    kept = [keep_main_component(pts, m[j], p[j], radius) for j in range(m.shape[0])]
    out = np.stack(kept) if kept else m
    return torch.from_numpy(out).to(masks.device)


def ground(model: LiftGS, text_encoder, points: np.ndarray | Tensor, colors: np.ndarray | Tensor,
           phrases: Sequence[str], top_k: int = 5, threshold: float = 0.5,
           component_radius: float | None = DEFAULT_COMPONENT_RADIUS, rank_by: str = "tokens",
           feature_temperature: float = FEATURE_TEMPERATURE) -> list[GroundingResult]:
    """Zero-shot grounding: each phrase's pooled vector is one query token (as in pre-training).

    ``rank_by``: "tokens" (decoder), "features" (Gaussian feature field; zero-shot after
    pre-training, :data:`ZERO_SHOT_RANKING`) or "both" — see the module docstring."""
    if rank_by not in RANKINGS:
        raise ValueError(f"rank_by must be one of {RANKINGS}, got {rank_by!r}")
    phrases = list(phrases)
    if not phrases:
        return []
    pooled = text_encoder.encode(phrases).pooled  # [B, F]
    tokens = [pooled[i: i + 1] for i in range(len(phrases))]
    field = {} if rank_by == "tokens" else {"relevance_queries": pooled, "feature_temperature": feature_temperature,
                                            "token_score": rank_by == "both"}
    return ground_tokens(model, points, colors, tokens, [[0]] * len(phrases), top_k, threshold, labels=phrases,
                         component_radius=component_radius, **field)


def ground_expressions(model: LiftGS, text_encoder, points: np.ndarray | Tensor, colors: np.ndarray | Tensor,
                       texts: Sequence[str], spans: Sequence[tuple[int, int] | None], top_k: int = 5,
                       threshold: float = 0.5,
                       component_radius: float | None = DEFAULT_COMPONENT_RADIUS) -> list[GroundingResult]:
    """Referring expressions after fine-tuning: all tokens are queries, the target mention's
    tokens (character ``spans[i]``; None = every token) rank the proposals."""
    texts = list(texts)
    if len(texts) != len(spans):
        raise ValueError(f"{len(texts)} texts but {len(spans)} target spans")
    if not texts:
        return []
    enc = text_encoder.encode(texts)
    targets = []
    for i, span in enumerate(spans):
        chosen = tokens_in_span(enc.spans[i], span) if span is not None else []
        targets.append(chosen or list(range(int(enc.tokens[i].shape[0]))))
    return ground_tokens(model, points, colors, enc.tokens, targets, top_k, threshold, labels=texts,
                         component_radius=component_radius)


@torch.no_grad()
def predict_gaussians(model: LiftGS, points: np.ndarray | Tensor, colors: np.ndarray | Tensor) -> Gaussians:
    """The model's 3D Gaussians for one cloud (one per input point, no query needed)."""
    weight = next(model.parameters())
    pts, cols = (_as_tensor(x, weight.device).to(weight.dtype) for x in (points, colors))
    was_training = model.training
    model.eval()
    try:
        encoding = model.encode(pts, cols, torch.tensor([pts.shape[0]], device=weight.device), lazy_masks=True)
        return model.gaussian_head(encoding.point_features, pts, cols)
    finally:
        model.train(was_training)
