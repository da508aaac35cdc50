"""Grounding phrases in a point cloud with a trained model (zero-shot or fine-tuned).

Zero-shot (issue 5 item 5): a phrase's pooled text vector is fed as a single query token,
exactly like a pseudo-query in pre-training, where each segment embedding is one token
(appendix A.1). Proposals are ranked by the probability they give that token (the no-match
column excluded) and each proposal's mask is ``sigmoid(mask_logits) > threshold`` over the
input points, reduced to its main spatially connected piece (``component_radius``, see
:mod:`liftgs.model.components`: a proposal is one object, and a box from the min / max of a
mask's points is ruined by one far stray point). After fine-tuning on referring expressions, :func:`ground_tokens` scores
proposals by the probability mass on the target span's tokens instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from liftgs.model.liftgs import LiftGS

DEFAULT_COMPONENT_RADIUS = 0.1  # metres: two 5 cm voxels; pieces further apart are separate objects


@dataclass
class GroundingResult:
    """Ranked masks for one phrase: best first."""

    phrase: str
    masks: Tensor  # [k, P] bool over the input points
    scores: Tensor  # [k] probability of the target token(s) for each proposal
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
                  mask_score: bool = True) -> list[GroundingResult]:
    """Ground several token sequences in one scene (encoded once).

    ``tokens[i]`` [T_i, F] are the query token vectors of sequence i; ``target_tokens[i]`` the
    indices whose probability mass ranks the proposals (e.g. the target mention's tokens).
    ``component_radius`` (metres) keeps each mask's main connected piece; None keeps it whole.
    ``mask_score`` multiplies each proposal's token probability by its mask confidence (mean
    sigmoid over the points of its mask, 0 for an empty mask), as Mask2Former scores
    instances: a proposal that names the phrase but has no confident mask ranks low.
    """
    if len(tokens) != len(target_tokens):
        raise ValueError(f"{len(tokens)} token sequences but {len(target_tokens)} target index lists")
    if len(tokens) == 0:
        return []
    device = next(model.parameters()).device
    pts, cols = _as_tensor(points, device), _as_tensor(colors, device)
    B, T = len(tokens), max(max(int(t.shape[0]) for t in tokens), 1)
    queries = torch.zeros(B, T, model.text_dim, device=device)
    mask = torch.zeros(B, T, dtype=torch.bool, device=device)
    for i, t in enumerate(tokens):
        queries[i, : t.shape[0]] = t.to(device=device, dtype=torch.float32)
        mask[i, : t.shape[0]] = True
    was_training = model.training
    model.eval()
    try:
        encoding = model.encode(pts, cols, torch.tensor([pts.shape[0]], device=device))
        groundings = model.decode(encoding, queries, mask)
    finally:
        model.train(was_training)
    results = []
    for i, g in enumerate(groundings):
        targets = list(target_tokens[i]) or list(range(int(tokens[i].shape[0])))
        if max(targets) >= int(tokens[i].shape[0]) or min(targets) < 0:
            raise ValueError(f"target token indices {targets} out of range for {int(tokens[i].shape[0])} tokens")
        prob = g.token_logits.softmax(-1)[:, targets].sum(-1)  # [m], no-match column excluded
        sig = torch.sigmoid(g.mask_logits)  # [m, P]
        if mask_score:  # Mask2Former's instance score: class probability x mask confidence
            inside = sig > threshold
            prob = prob * (sig * inside).sum(1) / inside.sum(1).clamp_min(1)
        k = min(int(top_k), prob.shape[0])
        scores, idx = prob.topk(k)
        mask_probs = sig[idx]
        masks = mask_probs > threshold
        if component_radius is not None:
            masks = _main_components(pts, masks, mask_probs, component_radius)
        label = labels[i] if labels is not None else ""
        results.append(GroundingResult(label, masks, scores, idx, mask_probs))
    return results


def _main_components(points: Tensor, masks: Tensor, probs: Tensor, radius: float) -> Tensor:
    """Each mask [k, P] reduced to its connected piece of largest probability mass."""
    from liftgs.model.components import keep_main_component

    pts = points.detach().cpu().numpy()
    m, p = masks.cpu().numpy(), probs.detach().cpu().numpy()
    kept = [keep_main_component(pts, m[j], p[j], radius) for j in range(m.shape[0])]
    out = np.stack(kept) if kept else m
    return torch.from_numpy(out).to(masks.device)


def ground(model: LiftGS, text_encoder, points: np.ndarray | Tensor, colors: np.ndarray | Tensor,
           phrases: Sequence[str], top_k: int = 5, threshold: float = 0.5,
           component_radius: float | None = DEFAULT_COMPONENT_RADIUS) -> list[GroundingResult]:
    """Zero-shot grounding: each phrase's pooled vector is one query token (as in pre-training)."""
    phrases = list(phrases)
    if not phrases:
        return []
    pooled = text_encoder.encode(phrases).pooled  # [B, F]
    tokens = [pooled[i: i + 1] for i in range(len(phrases))]
    return ground_tokens(model, points, colors, tokens, [[0]] * len(phrases), top_k, threshold, labels=phrases,
                         component_radius=component_radius)


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
