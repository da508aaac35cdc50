"""Model folders shared by every family: ``config.json`` + ``model.safetensors``.

``config.json`` holds ``"family"``, ``"weights_sha256"`` (the sha256 of the weights file,
checked on load) and the family's config dataclass as JSON. A family's model calls
:func:`save_model_folder` from its ``save_pretrained`` and :func:`load_model_folder` from its
``from_pretrained``.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from liftgs.config import save_json_atomic, to_dict, update_config
from liftgs.files import atomic_write

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_HASH_FIELD = "weights_sha256"  # config.json: sha256 of model.safetensors, checked on load

C = TypeVar("C")
M = TypeVar("M", bound=nn.Module)


def save_model_folder(model: nn.Module, config: object, family: str, path: str | Path) -> Path:
    """Write ``model.safetensors`` (``model``'s state dict) and then ``config.json`` (``family``,
    the weights' sha256 and the config dataclass ``config``) into directory ``path``, each
    atomically.

    The checksum sits in ``config.json``, written after the weights, so a folder stays two
    files and a damaged or swapped weights file is caught by :func:`load_model_folder`."""
    from safetensors.torch import save

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    # one metadata key: safetensors writes a metadata map in arbitrary order, so several
    # keys would make the bytes (and checksum) of identical weights differ between runs
    data = save(state, metadata={"format": "pt"})
    with atomic_write(path / WEIGHTS_NAME, "wb") as fh:
        fh.write(data)
    checksum = hashlib.sha256(data).hexdigest()
    save_json_atomic(path / CONFIG_NAME, {"family": family, WEIGHTS_HASH_FIELD: checksum, **to_dict(config)})
    return path


def load_model_folder(path: str | Path, family: str, default_config: C, build: Callable[[C], M],
                      label: str, writer: str, map_location: str | torch.device = "cpu") -> M:
    """The model of a folder written by :func:`save_model_folder`: ``config.json`` must name
    ``family`` and hold fields of ``default_config``'s dataclass (the fields it lists replace
    the default's), the weights must hash to the recorded sha256 (folders written before the
    checksum existed load unverified, with a warning), and ``build(config)``'s state dict must
    match the weights exactly. ``label`` names the model in errors ("LIFT-GS"), ``writer`` the
    method that writes such folders ("LiftGS.save_pretrained"). Errors are one line naming
    the file."""
    from safetensors.torch import load_file

    path = Path(path)
    config_file, weights_file = path / CONFIG_NAME, path / WEIGHTS_NAME
    for f in (config_file, weights_file):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: missing; expected a directory written by {writer}")
    try:
        doc = json.loads(config_file.read_text())
        if not isinstance(doc, dict) or doc.pop("family", None) != family:
            raise ValueError(f"field 'family' must be {family!r}")
        expected = doc.pop(WEIGHTS_HASH_FIELD, None)
        if expected is not None and not re.fullmatch(r"[0-9a-f]{64}", str(expected)):
            raise ValueError(f"field {WEIGHTS_HASH_FIELD!r} must be a sha256 hex digest, got {expected!r}")
        config = update_config(default_config, doc, "config")
    except (ValueError, TypeError) as err:
        raise ValueError(f"{config_file}: not a valid {label} model config ({err})") from err
    check_weights_sha256(weights_file, expected)
    model = build(config)
    try:
        state = load_file(str(weights_file), device=str(map_location))
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"{weights_file}: cannot read safetensors weights ({err})") from err
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{weights_file}: weights do not match {config_file} "
                         f"({' '.join(str(err).split())[:300]})") from err
    if missing or unexpected:
        raise ValueError(f"{weights_file}: weights do not match {config_file} "
                         f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    return model.to(map_location)


def check_weights_sha256(weights_file: Path, expected: str | None) -> None:
    """One-line error when ``weights_file`` does not hash to ``expected`` (from config.json);
    a warning when nothing was recorded."""
    if expected is None:
        warnings.warn(f"{weights_file.parent / CONFIG_NAME}: no {WEIGHTS_HASH_FIELD!r} (written by an older "
                      f"liftgs); {weights_file.name} is not verified", RuntimeWarning, stacklevel=4)
        return
    with open(weights_file, "rb") as fh:
        actual = hashlib.file_digest(fh, "sha256").hexdigest()
    if actual != expected:
        raise ValueError(f"{weights_file}: checksum mismatch (sha256 {actual[:12]}..., {CONFIG_NAME} field "
                         f"{WEIGHTS_HASH_FIELD!r} records {expected[:12]}...); the file is damaged or was "
                         "replaced, copy the model folder again")


__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "WEIGHTS_HASH_FIELD", "save_model_folder", "load_model_folder",
           "check_weights_sha256"]
