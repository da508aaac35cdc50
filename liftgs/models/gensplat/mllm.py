"""A LLaVA-family multimodal LM as GenSplat's stage-III reasoner (GenSplat summary, Key Designs 2).

What the summary gives and where it is implemented:

* "2D views as the visual interface for the MLLM": each sample's selected views are the
  images of one user turn, followed by the text (:meth:`MLLMReasoner.prompt`).
* "the MLLM outputs a specialized segmentation token <SEG>": ``<SEG>`` is added to the
  tokenizer as a special token and the embeddings are resized (the new input and output rows
  start at the mean of the existing rows: deterministic, no random draw).
* "whose last-layer hidden state t_seg is linearly projected to t^_seg in R^{1 x C}":
  ``seg_proj`` (``nn.Linear(hidden, seg_dim)``) on the last layer's hidden state.
* "The MLLM is co-trained with the referring decoder using LoRA": LoRA (``peft``) on the
  language model's attention projections; the vision tower, the multimodal projector and all
  base weights stay frozen. The ``<SEG>`` rows of the input embedding and of the LM head are
  trained (``peft``'s trainable tokens), as the new token has no pretrained meaning.
* "The MLLM backbone is LLaVA-Video": any ``AutoModelForImageTextToText`` checkpoint of the
  LLaVA family with an ``AutoProcessor`` that expands an image placeholder (``processor.
  image_token``); users bring the weights (a local folder or the Hugging Face cache; nothing is
  downloaded).

Which hidden state is t_seg: the last layer's state **at the position that emits ``<SEG>``**
(the position just before the ``<SEG>`` token; its LM-head output predicts ``<SEG>``), as
LISA's released code reads its ``[SEG]`` embedding. During generation this is the state that
produced the ``<SEG>`` token, so teacher-forced training and generation read the same vector,
and a ``<SEG>`` generated as the last token still has its state.

What has run: only tiny randomly initialised LLaVA models (Llama text model + CLIP vision
tower, ``LlavaProcessor`` with a CLIP image processor) on a CPU, in
``tests/test_mllm_reasoner.py``; never real weights, never a GPU. The plain ``LlavaProcessor``
path (one image placeholder per view, pixel values [V, 3, h, w] per sample) is the tested one.
Processors that add further image inputs (LLaVA-OneVision / LLaVA-NeXT: ``image_sizes`` and
per-image patch stacks) go through the same code, since every processor output besides the
token ids is passed to the model unchanged, but have not run: a tiny LLaVA-OneVision was
tried, and its ``LlavaOnevisionProcessor`` cannot be built without torchvision (its video
processor needs it), which this environment lacks. LLaVA-Video's video path (the frames as one
video input) is not used: the views are given as separate images.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

FORMAT = "liftgs-mllm-reasoner"  # reasoner.json field "format"
CONFIG_NAME = "reasoner.json"
PROJECTION_NAME = "seg_projection.safetensors"
ADAPTER_DIR = "adapter"  # peft's adapter_config.json + adapter_model.safetensors (LoRA, <SEG> rows)
IGNORE_INDEX = -100  # label of tokens outside the loss (transformers' convention)
PLAIN_TEMPLATE = "USER: {images}\n{text} ASSISTANT:"  # LLaVA-1.5's turn, used without a chat template


@dataclass(frozen=True)
class MLLMConfig:
    """Settings of :class:`MLLMReasoner` (written to ``reasoner.json``).

    The summary gives LoRA and a linear projection to the decoder width C; it gives no rank,
    no targets and no view count beyond GAFS's N* = 32 frames. Chosen: rank 8, alpha 16,
    dropout 0.05 on the attention projections of the language model (LISA's LoRA settings),
    at most 32 views per sample."""

    seg_dim: int = 256  # D_out = C of the referring decoder (GenSplatConfig.paper's latent width)
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")  # in the language model only
    max_views: int = 32  # views per sample (GAFS selects N* = 32 frames)

    def __post_init__(self) -> None:
        for name in ("seg_dim", "lora_rank", "max_views"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MLLMConfig.{name} must be an integer >= 1, got {value!r}")
        if not self.lora_alpha > 0:
            raise ValueError(f"MLLMConfig.lora_alpha must be > 0, got {self.lora_alpha!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"MLLMConfig.lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if not self.lora_targets or not all(isinstance(t, str) and t.isidentifier() for t in self.lora_targets):
            raise ValueError(f"MLLMConfig.lora_targets must be module names such as 'q_proj', got {self.lora_targets!r}")


def _one_line(err: BaseException, limit: int = 300) -> str:
    return " ".join(str(err).split())[:limit]


def resolve_base(base: str | Path) -> Path:
    """The local folder of a multimodal LM: ``base`` itself when it is a folder, else the
    snapshot of repo id ``base`` in the Hugging Face cache. Never downloads; a missing model is
    a one-line FileNotFoundError naming ``base`` and how to get the weights."""
    text = str(base)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(f"multimodal LM {path} is a file; pass the model folder (with config.json)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text, local_files_only=True))
    except Exception as err:  # noqa: BLE001 - any failure means "not available offline"
        raise FileNotFoundError(
            f"multimodal LM {text!r}: no such folder and not in the local Hugging Face cache (nothing is "
            f"downloaded at run time); get the weights once with `hf download <repo id>` or copy the model "
            f"folder here and pass its path") from err


def load_base(base: str | Path, dtype: torch.dtype | None = None) -> tuple[nn.Module, Any]:
    """(model, processor) of a LLaVA-family checkpoint, from a folder or the HF cache only
    (``local_files_only=True``). Errors are one line naming the folder."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from liftgs.text.hf import _quiet_transformers

    folder = resolve_base(base)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder / 'config.json'}: missing; a multimodal LM folder holds config.json, "
                                "the weights and the processor files (save_pretrained of model and processor)")
    kwargs = {"local_files_only": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        with _quiet_transformers():
            model = AutoModelForImageTextToText.from_pretrained(folder, **kwargs)
            processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise OSError(f"cannot load a multimodal LM from {folder}: {_one_line(err)}") from err
    return model, processor


def _module_name(model: nn.Module, module: nn.Module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name
    raise ValueError(f"{type(module).__name__} is not a submodule of {type(model).__name__}")


class MLLMReasoner(Reasoner):
    """A LLaVA-family LM with ``<SEG>``, LoRA and the ``<SEG>`` projection (module docstring).

    ``MLLMReasoner(model, processor, config)`` takes a loaded base model (not yet wrapped by
    peft; it is adapted in place) and its processor; :meth:`from_base` loads them from a folder
    or the HF cache, :meth:`from_pretrained` adds a folder written by :meth:`save_pretrained`.
    The LoRA and projection initialisations draw from a generator seeded with ``seed``; the
    caller's global RNG state is left as it was."""

    def __init__(self, model: nn.Module, processor: Any, config: MLLMConfig | None = None, *,
                 base: str | Path = "", seed: int = 0):
        super().__init__()
        config = MLLMConfig() if config is None else config
        if not isinstance(config, MLLMConfig):
            raise ValueError(f"config must be an MLLMConfig, got {type(config).__name__}")
        tokenizer = getattr(processor, "tokenizer", None)
        image_token = getattr(processor, "image_token", None)
        if tokenizer is None or getattr(processor, "image_processor", None) is None or not image_token:
            raise ValueError(f"{type(processor).__name__} is not an image-text processor of the LLaVA family "
                             "(needs .tokenizer, .image_processor and .image_token)")
        if tokenizer.eos_token_id is None:
            raise ValueError(f"{type(tokenizer).__name__} has no end-of-sequence token; answers cannot be terminated")
        if getattr(model, "peft_config", None) is not None:
            raise ValueError("the base model is already wrapped by peft; pass the plain transformers model")
        self.config = config
        self.base = str(base)
        self.processor = processor
        self.tokenizer = tokenizer
        self.image_token = str(image_token)
        self.seg_dim = int(config.seg_dim)
        text_config = model.config.get_text_config()
        self.hidden_size = int(text_config.hidden_size)
        self.base_vocab_size = int(model.get_input_embeddings().weight.shape[0])

        with fork_rng(seed):  # resizing, LoRA and projection initialisations draw here only
            self._build(model, config)

    def _build(self, model: nn.Module, config: MLLMConfig) -> None:
        from peft import LoraConfig, get_peft_model

        self.seg_token_id = self._add_seg_token(model)
        embed_name = _module_name(model, model.get_input_embeddings()).rsplit(".", 1)[-1]
        head = model.get_output_embeddings()
        tied = head is None or head.weight is model.get_input_embeddings().weight
        indices: dict[str, list[int]] = {embed_name: [self.seg_token_id]}
        if not tied:
            indices[_module_name(model, head).rsplit(".", 1)[-1]] = [self.seg_token_id]
        targets = "|".join(config.lora_targets)
        lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=rf".*language_model.*\.({targets})", trainable_token_indices=indices,
                          bias="none")
        try:
            self.peft = get_peft_model(model, lora)
        except ValueError as err:
            raise ValueError(f"cannot apply LoRA to {type(model).__name__}: {_one_line(err)}") from err
        # float32 whatever the LM's precision; t_seg is cast to it in project()
        self.seg_proj = nn.Linear(self.hidden_size, self.seg_dim).to(device=model.get_input_embeddings().weight.device)

    # ------------------------------------------------------------------ construction
    def _add_seg_token(self, model: nn.Module) -> int:
        """Add ``<SEG>`` to the tokenizer (a special token: never split, matched anywhere) and
        grow the input / output embeddings to the tokenizer's size; new rows = mean of the old."""
        self.tokenizer.add_tokens([SEG_TOKEN], special_tokens=True)
        seg_id = self.tokenizer.convert_tokens_to_ids(SEG_TOKEN)
        ids = self.tokenizer.encode(SEG_TOKEN, add_special_tokens=False)
        if ids != [seg_id]:
            raise ValueError(f"{type(self.tokenizer).__name__} does not encode {SEG_TOKEN!r} as one token ({ids})")
        old = self.base_vocab_size
        new = max(len(self.tokenizer), seg_id + 1)
        if new > old:
            model.resize_token_embeddings(new, mean_resizing=False)
            with torch.no_grad():
                rows = [model.get_input_embeddings().weight]
                head = model.get_output_embeddings()
                if head is not None and head.weight is not rows[0]:
                    rows.append(head.weight)
                for w in rows:
                    w[old:] = w[:old].mean(dim=0, keepdim=True)
                bias = getattr(head, "bias", None)
                if bias is not None:
                    bias[old:] = bias[:old].mean()
        return int(seg_id)

    @classmethod
    def from_base(cls, base: str | Path, config: MLLMConfig | None = None, *, dtype: torch.dtype | None = None,
                  seed: int = 0) -> MLLMReasoner:
        """A new reasoner (fresh LoRA and projection) on the checkpoint ``base``: a folder or a
        repo id in the local Hugging Face cache (:func:`load_base`)."""
        model, processor = load_base(base, dtype=dtype)
        return cls(model, processor, config, base=base, seed=seed)

    @property
    def lm(self) -> nn.Module:
        """The transformers model (LoRA and the ``<SEG>`` rows injected)."""
        return self.peft.get_base_model()

    @property
    def device(self) -> torch.device:
        return self.seg_proj.weight.device

    @property
    def _lm_dtype(self) -> torch.dtype:
        """Precision of the LM's weights (the images are cast to it)."""
        return next(p.dtype for p in self.lm.parameters() if p.is_floating_point())

    # ------------------------------------------------------------------ inputs
    def prompt(self, text: str, num_views: int) -> str:
        """The user turn of one sample: ``num_views`` image placeholders, then ``text``; the
        processor's chat template (with the generation prompt) when it has one, else LLaVA-1.5's
        ``USER: <image>...\\n{text} ASSISTANT:``."""
        if getattr(self.processor, "chat_template", None):
            content = [{"type": "image"}] * num_views + [{"type": "text", "text": text}]
            return self.processor.apply_chat_template([{"role": "user", "content": content}],
                                                      add_generation_prompt=True, tokenize=False)
        return PLAIN_TEMPLATE.format(images=self.image_token * num_views, text=text)

    def _check(self, views: Sequence[Tensor], texts: Sequence[str], answers: Sequence[str] | None) -> None:
        check_reasoner_inputs(views, texts, answers, max_views=self.config.max_views,
                              reserved=(self.image_token, SEG_TOKEN))

    def _encode(self, views: Sequence[Tensor], texts: Sequence[str], answers: Sequence[str] | None,
                left_pad: bool) -> dict[str, Tensor]:
        """Model inputs of a batch: the processor expands every sample's prompt (image
        placeholders -> image tokens) and prepares the images; answers (+ end of sequence) are
        appended as token ids after the prompt's own tokens, so the answer tokens are exactly
        the answer's; ``labels`` supervise only them. Padding goes right (training) or left
        (generation)."""
        prompts = [self.prompt(t, int(v.shape[0])) for t, v in zip(texts, views)]
        images = [[img.detach().float().cpu() for img in v] for v in views]
        try:
            enc = self.processor(text=prompts, images=images, padding=True, return_tensors="pt", do_rescale=False)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{type(self.processor).__name__} cannot prepare the views: {_one_line(err)}") from err
        ids, mask = enc.pop("input_ids"), enc.pop("attention_mask")
        pad_id = self.tokenizer.pad_token_id
        pad_id = self.tokenizer.eos_token_id if pad_id is None else pad_id
        rows, labels = [], []
        for b in range(ids.shape[0]):
            prompt_ids = ids[b][mask[b].bool()]
            if answers is None:
                rows.append(prompt_ids)
                labels.append(torch.full_like(prompt_ids, IGNORE_INDEX))
                continue
            answer_ids = self.tokenizer.encode(answers[b], add_special_tokens=False) + [self.tokenizer.eos_token_id]
            answer_ids = torch.tensor(answer_ids, dtype=ids.dtype)
            rows.append(torch.cat([prompt_ids, answer_ids]))
            labels.append(torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), answer_ids]))
        length = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), pad_id, dtype=ids.dtype)
        attention = torch.zeros((len(rows), length), dtype=mask.dtype)
        target = torch.full((len(rows), length), IGNORE_INDEX, dtype=ids.dtype)
        for b, (r, lab) in enumerate(zip(rows, labels)):
            sl = slice(length - len(r), length) if left_pad else slice(0, len(r))
            input_ids[b, sl], attention[b, sl], target[b, sl] = r, 1, lab
        out = {"input_ids": input_ids, "attention_mask": attention}
        if answers is not None:
            out["labels"] = target
        for key, value in enc.items():  # pixel_values (+ image_sizes etc. for other LLaVA processors)
            if isinstance(value, Tensor):
                value = value.to(self._lm_dtype) if value.is_floating_point() else value
            out[key] = value
        device = self.device
        return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in out.items()}

    # ------------------------------------------------------------------ <SEG>
    def seg_positions(self, input_ids: Tensor) -> list[Tensor]:
        """Per sequence, the positions whose last-layer state is t_seg: one before each
        ``<SEG>`` token (the position that emits it)."""
        return [(row == self.seg_token_id).nonzero(as_tuple=True)[0] - 1 for row in input_ids]

    def project(self, states: Tensor) -> Tensor:
        """t^_seg = seg_proj(t_seg): [..., hidden] -> [..., seg_dim]."""
        return self.seg_proj(states.to(self.seg_proj.weight.dtype))

    def _segs(self, hidden: Tensor, input_ids: Tensor) -> list[Tensor]:
        return [self.project(hidden[b, pos]) for b, pos in enumerate(self.seg_positions(input_ids))]

    # ------------------------------------------------------------------ the contract
    def forward(self, views: Sequence[Tensor], texts: Sequence[str],
                answers: Sequence[str] | None = None) -> ReasonerOutput:
        """Teacher-forced pass (see :class:`~liftgs.models.gensplat.reasoner.Reasoner`):
        ``text_loss`` = mean cross-entropy of the answer tokens and their end of sequence."""
        self._check(views, texts, answers)
        batch = self._encode(views, texts, answers, left_pad=False)
        labels = batch.pop("labels", None)
        out = self.lm(**batch, output_hidden_states=True, use_cache=False)
        hidden = out.hidden_states[-1]
        text_loss = None
        if labels is not None:
            logits = out.logits[:, :-1].float()
            text_loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                        ignore_index=IGNORE_INDEX)
        return ReasonerOutput(segs=self._segs(hidden, batch["input_ids"]), text_loss=text_loss)

    @torch.no_grad()
    def generate(self, views: Sequence[Tensor], texts: Sequence[str], max_new_tokens: int = 32,
                 **generate_kwargs: Any) -> Generation:
        """Greedy decoding (``do_sample=False`` unless ``generate_kwargs`` say otherwise; they
        go to transformers' ``generate``, e.g. ``logits_processor``); the image placeholder is
        never generated (``suppress_tokens``). The state of every
        generated ``<SEG>`` is the last-layer state of the step that produced it."""
        self._check(views, texts, None)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        for key in ("return_dict_in_generate", "output_hidden_states", "input_ids", "attention_mask"):
            if key in generate_kwargs:
                raise ValueError(f"generate: {key!r} is set by the reasoner")
        batch = self._encode(views, texts, None, left_pad=True)
        prompt_len = batch["input_ids"].shape[1]
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        image_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
        kwargs = {"do_sample": False, "pad_token_id": eos if pad is None else pad, "eos_token_id": eos,
                  "suppress_tokens": [image_id],  # a generated image placeholder would have no image
                  **generate_kwargs}
        out = self.lm.generate(**batch, max_new_tokens=max_new_tokens, return_dict_in_generate=True,
                               output_hidden_states=True, **kwargs)
        new = out.sequences[:, prompt_len:]
        texts_out, ids_out, segs = [], [], []
        for b in range(new.shape[0]):
            row = new[b]
            stop = (row == eos).nonzero(as_tuple=True)[0]
            n = int(stop[0]) if len(stop) else row.shape[0]
            row = row[:n]
            steps = (row == self.seg_token_id).nonzero(as_tuple=True)[0].tolist()
            states = [out.hidden_states[i][-1][b, -1] for i in steps]
            hidden = torch.stack(states) if states else out.hidden_states[0][-1].new_zeros((0, self.hidden_size))
            segs.append(self.project(hidden))
            ids_out.append(row.cpu())
            keep = [t for t in row.tolist() if t != pad]
            texts_out.append(self.tokenizer.decode(keep, skip_special_tokens=False).strip())
        return Generation(texts=texts_out, token_ids=ids_out, segs=segs)

    # ------------------------------------------------------------------ folders
    def trainable_state(self) -> dict[str, Tensor]:
        """The trained parameters by name (LoRA, ``<SEG>`` rows, projection)."""
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``reasoner.json`` (format, config, base checkpoint, ``<SEG>`` id and the base's
        sizes), ``adapter/`` (peft: ``adapter_config.json`` + ``adapter_model.safetensors`` with
        the LoRA weights and the trained ``<SEG>`` embedding rows) and ``seg_projection.
        safetensors`` into a temporary folder beside ``path``, then move it to ``path``
        (:func:`liftgs.files.atomic_dir`): readers never see a half-written folder. No pickle."""
        from safetensors.torch import save_file

        path = Path(path)
        with atomic_dir(path) as tmp:
            # save_embedding_layers=False: only the <SEG> rows (trainable tokens) are stored; "auto"
            # would look the base model's vocabulary up, possibly over the network
            self.peft.save_pretrained(tmp / ADAPTER_DIR, safe_serialization=True, save_embedding_layers=False)
            proj = {k: v.detach().contiguous().cpu() for k, v in self.seg_proj.state_dict().items()}
            save_file(proj, str(tmp / PROJECTION_NAME), metadata={"format": "pt"})
            save_json_atomic(tmp / CONFIG_NAME, {
                "format": FORMAT, "base": self.base, "base_model_type": self.lm.config.model_type,
                "base_vocab_size": self.base_vocab_size, "hidden_size": self.hidden_size,
                "seg_token": SEG_TOKEN, "seg_token_id": self.seg_token_id, "config": to_dict(self.config)})
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, base: str | Path | None = None, *, dtype: torch.dtype | None = None
                        ) -> MLLMReasoner:
        """A reasoner written by :meth:`save_pretrained` on its base checkpoint: ``base`` (a
        folder or a repo id in the HF cache), by default the one recorded in ``reasoner.json``.
        The base must have the recorded model type, vocabulary and hidden size. Errors are one
        line naming the file."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        path = Path(path)
        config_file = path / CONFIG_NAME
        adapter_file = path / ADAPTER_DIR / "adapter_model.safetensors"
        for f in (config_file, adapter_file, path / PROJECTION_NAME):
            if not f.is_file():
                raise FileNotFoundError(f"{f}: missing; expected a folder written by MLLMReasoner.save_pretrained")
        try:
            doc = json.loads(config_file.read_text())
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError(f"field 'format' must be {FORMAT!r}")
            config = update_config(MLLMConfig(), doc.get("config", {}), str(config_file), "config.")
            recorded = {k: doc[k] for k in ("base", "base_model_type", "base_vocab_size", "hidden_size",
                                            "seg_token_id")}
        except (ValueError, KeyError, TypeError) as err:
            if isinstance(err, ConfigError):
                raise
            raise ValueError(f"{config_file}: not a valid reasoner config ({_one_line(err)})") from err
        base = recorded["base"] if base is None else base
        if not str(base):
            raise ValueError(f"{config_file}: no base model recorded; pass base= (the checkpoint it was trained on)")
        model, processor = load_base(base, dtype=dtype)
        found = {"base_model_type": model.config.model_type,
                 "base_vocab_size": int(model.get_input_embeddings().weight.shape[0]),
                 "hidden_size": int(model.config.get_text_config().hidden_size)}
        for key, value in found.items():
            if value != recorded[key]:
                raise ValueError(f"{config_file}: {key} is {recorded[key]!r} but the base model {base} has "
                                 f"{value!r}; pass the checkpoint the reasoner was trained on")
        reasoner = cls(model, processor, config, base=base)
        if reasoner.seg_token_id != recorded["seg_token_id"]:
            raise ValueError(f"{config_file}: seg_token_id is {recorded['seg_token_id']} but the base tokenizer "
                             f"gives {SEG_TOKEN!r} id {reasoner.seg_token_id}")
        try:
            adapter = load_file(str(adapter_file), device=str(reasoner.device))
            result = set_peft_model_state_dict(reasoner.peft, adapter)
            unexpected = list(getattr(result, "unexpected_keys", []) or [])
            lora_missing = [k for k in getattr(result, "missing_keys", []) or []
                            if "lora_" in k or "trainable_tokens" in k]
            if unexpected or lora_missing:
                raise ValueError(f"missing {lora_missing[:4]}, unexpected {unexpected[:4]}")
            reasoner.seg_proj.load_state_dict(load_file(str(path / PROJECTION_NAME), device=str(reasoner.device)))
        except (ValueError, RuntimeError, OSError) as err:
            raise ValueError(f"{path}: weights do not match {config_file} ({_one_line(err)})") from err
        return reasoner


__all__ = ["MLLMConfig", "MLLMReasoner", "load_base", "resolve_base"]
