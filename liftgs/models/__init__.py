"""liftgs.models: one package per model family, each with its config, components and builder.

| family | package | what it is |
| --- | --- | --- |
| ``liftgs`` | :mod:`liftgs.models.liftgs` | LIFT-GS: point cloud + phrase -> 3D Gaussians and 3D masks |
| ``gensplat`` | :mod:`liftgs.models.gensplat` | GenSplat: 3D Gaussians -> semantic latents, instance masks |

A family package exposes ``build_preset(preset, text_dim)`` (a fresh model of a named size)
and ``load_pretrained(path, map_location)`` (a model folder written by the model's
``save_pretrained``, whose ``config.json`` names the family and records the weights'
sha256, which loading checks; :mod:`liftgs.models.pretrained` writes and reads such folders).
Building blocks shared by families live in :mod:`liftgs.modules`.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

from torch import nn

FAMILIES: dict[str, str] = {"liftgs": "liftgs.models.liftgs", "gensplat": "liftgs.models.gensplat"}
CONFIG_NAME = "config.json"


def family_module(family: str) -> ModuleType:
    """The package of a model family, imported on first use."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}")
    return importlib.import_module(FAMILIES[family])


def build_model(family: str, preset: str, text_dim: int) -> nn.Module:
    """A freshly initialised model of ``family`` at size ``preset`` taking ``text_dim``-d queries
    (initial weights come from torch's global RNG: seed it, or fork it, first)."""
    return family_module(family).build_preset(preset, text_dim)


def model_family(model_dir: str | Path) -> str:
    """The family named in a model folder's ``config.json``."""
    config_file = Path(model_dir) / CONFIG_NAME
    try:
        doc = json.loads(config_file.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{config_file}: cannot read the model config ({err})") from err
    family = doc.get("family") if isinstance(doc, dict) else None
    if family not in FAMILIES:
        raise ValueError(f"{config_file}: field 'family' must be one of {sorted(FAMILIES)}, got {family!r}")
    return family


def load_model(path: str | Path, map_location: str = "cpu", *, revision: str | None = None,
               cache_dir: str | Path | None = None, local_files_only: bool = True) -> nn.Module:
    """Load a model from a model folder, a checkpoint (``step_*``) or a run folder (its final
    ``model/``, else its latest checkpoint), a shipped model's name or a Hugging Face repo id in
    the local cache (:func:`liftgs.train.checkpoint.resolve_model_dir`), whatever its family. The
    family's loader checks the weights against the checksum in ``config.json``: damaged weights
    are a one-line error naming the file."""
    from liftgs.train.checkpoint import resolve_model_dir

    model_dir = resolve_model_dir(path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    return family_module(model_family(model_dir)).load_pretrained(model_dir, map_location=map_location)


__all__ = ["FAMILIES", "build_model", "family_module", "load_model", "model_family"]
