"""The reasoner of GenSplat's stage III: selected views + text in, ``<SEG>`` states and text out.

GenSplat summary, Key Designs 2 ("MLLM-guided Reasoning Module"): 2D views are the visual
interface of a multimodal LM; "given a query, the MLLM outputs a specialized segmentation token
<SEG>, whose last-layer hidden state t_seg is linearly projected to t^_seg in R^{1 x C}", which
the referring decoder takes as a query next to O_ins. The same LM "generates answer tokens for
VQA". Loss & Training: "L_align = L_text + lambda_m L_mask (lambda_m = 0.1)", the LM trained
with LoRA together with the referring decoder.

This module holds the contract every reasoner implements (:class:`Reasoner`; the LLaVA-family
implementation is :class:`liftgs.models.gensplat.mllm.MLLMReasoner`), its outputs
(:class:`ReasonerOutput`, :class:`Generation`), the input checks they share
(:func:`check_reasoner_inputs`) and :func:`alignment_loss`.

Inputs, per sample b of a batch of B: ``views[b]``, a float tensor [V_b, 3, H_b, W_b] with
values in [0, 1] (the frames a selector chose, V_b >= 1; sizes may differ between samples),
and ``texts[b]``, the referring expression or the question. For training, ``answers[b]`` is
the target reply: for referring segmentation it contains the ``<SEG>`` token (e.g.
``"It is <SEG>."``), for a question it is the answer text. The ``<SEG>`` state of a sample
is read wherever its sequence holds ``<SEG>``: in the teacher-forced answer (``forward``) or
in the generated reply (``generate``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

SEG_TOKEN = "<SEG>"  # the segmentation token a reasoner adds to its vocabulary
MASK_WEIGHT = 0.1  # lambda_m of L_align = L_text + lambda_m L_mask (GenSplat summary, Key Designs 2)


def _first_segs(segs: list[Tensor], what: str) -> Tensor:
    missing = [b for b, s in enumerate(segs) if s.shape[0] == 0]
    if missing:
        raise ValueError(f"{what}: sample(s) {missing[:8]} hold no <SEG> token; read .segs for "
                         "per-sample states or give every sample a <SEG> in its answer")
    return torch.stack([s[0] for s in segs])


@dataclass
class ReasonerOutput:
    """What :meth:`Reasoner.forward` returns for a batch of B samples.

    ``segs[b]`` is [k_b, D_out]: the projected ``<SEG>`` states t^_seg of sample b in the
    order its tokens appear (k_b >= 0; several for several targets, none for a question).
    ``text_loss`` is the LM's mean next-token cross-entropy over the answer tokens (L_text)
    when answers were given, else None. ``seg`` is the [B, D_out] stack of each sample's first
    ``<SEG>`` state (a one-line ValueError when a sample has none)."""

    segs: list[Tensor]
    text_loss: Tensor | None = None

    @property
    def seg(self) -> Tensor:
        return _first_segs(self.segs, "ReasonerOutput.seg")

    @property
    def has_seg(self) -> Tensor:
        """[B] bool: which samples hold at least one ``<SEG>``."""
        return torch.tensor([s.shape[0] > 0 for s in self.segs], dtype=torch.bool)


@dataclass
class Generation:
    """What :meth:`Reasoner.generate` returns for B samples: ``texts[b]`` the generated reply
    (``<SEG>`` tokens kept in it, end-of-sequence and padding removed), ``token_ids[b]`` its
    token ids [T_b], ``segs[b]`` [k_b, D_out] the projected states of the ``<SEG>`` tokens it
    generated, in order. ``seg`` as in :class:`ReasonerOutput`."""

    texts: list[str]
    token_ids: list[Tensor]
    segs: list[Tensor]

    @property
    def seg(self) -> Tensor:
        return _first_segs(self.segs, "Generation.seg")


def check_reasoner_inputs(views: Sequence[Tensor], texts: Sequence[str], answers: Sequence[str] | None = None,
                          *, max_views: int | None = None, reserved: Sequence[str] = ()) -> None:
    """One-line ValueError unless ``views`` and ``texts`` (and ``answers`` when given) are
    per-sample lists of the same non-zero length B, every ``views[b]`` a finite floating-point
    [V, 3, H, W] tensor with 1 <= V (<= ``max_views``) and values in [0, 1], every text a
    non-empty string and every answer a string. ``reserved`` lists strings no text may hold
    (the image placeholder, ``<SEG>``); answers may hold ``<SEG>`` but no other reserved one."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise ValueError(f"texts must be a list of strings (one per sample), got {type(texts).__name__}")
    if isinstance(views, Tensor) or not isinstance(views, Sequence):
        raise ValueError("views must be a list with one [V, 3, H, W] tensor per sample, "
                         f"got {type(views).__name__}")
    if len(texts) == 0:
        raise ValueError("empty batch: texts and views hold no sample")
    if len(views) != len(texts):
        raise ValueError(f"views has {len(views)} samples but texts has {len(texts)}")
    for b, v in enumerate(views):
        if not isinstance(v, Tensor):
            raise ValueError(f"views[{b}] must be a torch tensor [V, 3, H, W], got {type(v).__name__}")
        if v.dim() != 4 or v.shape[1] != 3 or v.shape[0] < 1 or v.shape[2] < 1 or v.shape[3] < 1:
            raise ValueError(f"views[{b}] must have shape [V, 3, H, W] with V >= 1, got {list(v.shape)}")
        if max_views is not None and v.shape[0] > max_views:
            raise ValueError(f"views[{b}] holds {v.shape[0]} views; at most {max_views} are allowed")
        if not v.is_floating_point():
            raise ValueError(f"views[{b}] must be floating point with values in [0, 1], got {v.dtype}")
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"views[{b}] holds non-finite values")
        lo, hi = float(v.min()), float(v.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"views[{b}] values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]")
    for b, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"texts[{b}] must be a non-empty string, got {t!r}")
        for r in reserved:
            if r in t:
                raise ValueError(f"texts[{b}] holds the reserved token {r!r}")
    if answers is None:
        return
    if isinstance(answers, str) or not isinstance(answers, Sequence):
        raise ValueError(f"answers must be a list of strings (one per sample), got {type(answers).__name__}")
    if len(answers) != len(texts):
        raise ValueError(f"answers has {len(answers)} samples but texts has {len(texts)}")
    for b, a in enumerate(answers):
        if not isinstance(a, str):
            raise ValueError(f"answers[{b}] must be a string, got {type(a).__name__}")
        for r in reserved:
            if r != SEG_TOKEN and r in a:
                raise ValueError(f"answers[{b}] holds the reserved token {r!r}")


def alignment_loss(text_loss: Tensor, mask_loss: Tensor | None, mask_weight: float = MASK_WEIGHT) -> Tensor:
    """L_align = L_text + lambda_m L_mask, lambda_m = ``mask_weight`` (0.1: GenSplat summary,
    Key Designs 2 and Loss & Training).

    ``text_loss`` is a reasoner's ``text_loss`` (a scalar tensor; None means no answers were
    given, a one-line ValueError). ``mask_loss`` is the referring decoder's mask loss (scalar),
    or None for a batch without a referring target (question answering only): L_text alone."""
    if text_loss is None:
        raise ValueError("alignment_loss: text_loss is None; run the reasoner with target answers")
    if not isinstance(text_loss, Tensor) or text_loss.dim() != 0:
        raise ValueError(f"alignment_loss: text_loss must be a scalar tensor, got "
                         f"{type(text_loss).__name__}{list(text_loss.shape) if isinstance(text_loss, Tensor) else ''}")
    if isinstance(mask_weight, bool) or not isinstance(mask_weight, (int, float)) or not math.isfinite(mask_weight) \
            or mask_weight < 0:
        raise ValueError(f"alignment_loss: mask_weight must be a finite number >= 0, got {mask_weight!r}")
    if mask_loss is None:
        return text_loss
    if not isinstance(mask_loss, Tensor) or mask_loss.dim() != 0:
        raise ValueError(f"alignment_loss: mask_loss must be a scalar tensor or None, got "
                         f"{type(mask_loss).__name__}{list(mask_loss.shape) if isinstance(mask_loss, Tensor) else ''}")
    return text_loss + float(mask_weight) * mask_loss


class Reasoner(nn.Module, ABC):
    """The reasoner contract (GenSplat summary, Key Designs 2): selected views + text ->
    projected ``<SEG>`` states of width :attr:`seg_dim` (the referring decoder's C), the LM loss
    of target answers, and generated answers.

    Implementations check their inputs with :func:`check_reasoner_inputs` before any work and
    write themselves to a folder with :meth:`save_pretrained` (safetensors + JSON)."""

    seg_dim: int  # D_out: width of the projected <SEG> states

    @abstractmethod
    def forward(self, views: Sequence[Tensor], texts: Sequence[str],
                answers: Sequence[str] | None = None) -> ReasonerOutput:
        """Teacher-forced pass: per sample the views and text as the prompt, ``answers`` (when
        given) as the target reply; ``<SEG>`` states of the answer's ``<SEG>`` tokens."""

    @abstractmethod
    def generate(self, views: Sequence[Tensor], texts: Sequence[str], max_new_tokens: int = 32) -> Generation:
        """Greedy reply per sample and the states of the ``<SEG>`` tokens it holds."""

    @abstractmethod
    def save_pretrained(self, path: str | Path) -> Path:
        """Write the trained parts to folder ``path`` (atomically) and return it."""


__all__ = ["SEG_TOKEN", "MASK_WEIGHT", "Reasoner", "ReasonerOutput", "Generation", "check_reasoner_inputs",
           "alignment_loss"]
