"""What a model folder records about how it was made, and the text encoder that goes with it.

A LIFT-GS model's queries are vectors of one frozen text encoder: the one whose embeddings
supervised pre-training (the pseudo-labels' encoder: MiniLM for the synthetic teacher, the
CLIP model itself for SAM + CLIP) and that fine-tuning encoded its phrases with. The recipes
write its name into the model's ``config.json`` (``text_encoder``, next to ``preset`` and
``recipe``), and fine-tuning, ``liftgs eval``, ``liftgs ground`` and ``liftgs view`` load that
encoder unless told otherwise. Folders written before the field existed fall back to the
training run's ``config.json`` (or the folder's ``run_config.json`` copy), then to MiniLM.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_TEXT_ENCODER = "minilm"
RUN_CONFIG_COPY = "run_config.json"  # a model folder's copy of the config.json of the run that trained it


def run_configs(model_dir: str | Path) -> Iterator[dict[str, Any]]:
    """The readable config.json of the run that holds ``model_dir`` (``run/model`` or
    ``run/checkpoints/step_N/model``), or the copy a model folder carries (``run_config.json``,
    e.g. the shipped models)."""
    model_dir = Path(model_dir)
    for run_config in (model_dir / RUN_CONFIG_COPY, model_dir.parent / "config.json",
                       model_dir.parent.parent.parent / "config.json"):
        if run_config.is_file():
            try:
                data = json.loads(run_config.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(data, dict):
                yield data


def recorded_text_encoder(model_dir: str | Path | None, model: Any = None) -> str | None:
    """The text encoder a model was trained with: its config's ``text_encoder`` (``model``'s
    when given, else the folder's ``config.json``), else its run's; None when nothing says."""
    name = getattr(getattr(model, "config", None), "text_encoder", None)
    if isinstance(name, str) and name:
        return name
    if model_dir is None:
        return None
    try:
        doc = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("text_encoder"), str) and doc["text_encoder"]:
        return doc["text_encoder"]
    for data in run_configs(model_dir):
        if isinstance(data.get("text_encoder"), str) and data["text_encoder"]:
            return data["text_encoder"]
    return None


def choose_text_encoder(requested: str | None, recorded: str | None, where: str | Path) -> str:
    """The text encoder to load: ``requested`` (a ``--text-encoder`` flag; None = not given)
    or the ``recorded`` one of the model at ``where``, MiniLM when neither says.

    A request naming another model than the recorded one is refused, naming both — unless it
    resolves to the same files, or is a local folder (the user's copy of those weights; the
    query width is still checked once it is loaded)."""
    if requested is None:
        return recorded or DEFAULT_TEXT_ENCODER
    if recorded is None or requested == recorded or Path(requested).expanduser().is_dir():
        return requested
    if _same_model(requested, recorded):
        return requested
    raise ValueError(f"--text-encoder {requested!r} is not the text encoder {where} was trained with "
                     f"({recorded!r}, recorded in its config.json); omit --text-encoder to use that one, "
                     "or pass a local folder holding it")


def load_recorded_encoder(name: str, recorded: str | None, device: Any = "cpu"):
    """``load_text_encoder(name)``; when ``name`` is the recorded one and cannot be found here,
    a one-line error saying where it came from and how to point at a copy."""
    from liftgs.text import load_text_encoder

    try:
        return load_text_encoder(name, device=device)
    except (OSError, ImportError) as err:
        if name != recorded:
            raise
        raise FileNotFoundError(f"the model's recorded text encoder {name!r} is not available on this "
                                f"machine ({str(err).splitlines()[0]}); pass --text-encoder FOLDER "
                                "holding that model") from err


def text_encoder_for(model_dir: str | Path | None, requested: str | None, device: Any = "cpu",
                     model: Any = None):
    """Load the text encoder for the model at ``model_dir`` (``model``: it, when loaded): the
    ``requested`` one (a ``--text-encoder`` flag, None = not given) if it agrees with what the
    model records, else the recorded one (:func:`choose_text_encoder`)."""
    recorded = recorded_text_encoder(model_dir, model)
    name = choose_text_encoder(requested, recorded, model_dir if model_dir is not None else "the model")
    return load_recorded_encoder(name, recorded, device=device)


def check_text_width(model: Any, text_encoder: Any, model_dir: str | Path) -> None:
    """Refuse a text encoder whose vectors are not as wide as the model's queries."""
    if text_encoder.dim != model.text_dim:
        name = getattr(text_encoder, "name", type(text_encoder).__name__)
        raise ValueError(f"the text encoder {name!r} gives {text_encoder.dim}-d vectors but "
                         f"the model {model_dir} takes {model.text_dim}-d queries")


def _same_model(a: str, b: str) -> bool:
    from liftgs.text import resolve_model

    if a.startswith("hash") or b.startswith("hash"):
        return False
    try:
        return resolve_model(a)[0].resolve() == resolve_model(b)[0].resolve()
    except (OSError, ValueError):
        return False


__all__ = ["DEFAULT_TEXT_ENCODER", "RUN_CONFIG_COPY", "run_configs", "recorded_text_encoder",
           "choose_text_encoder", "load_recorded_encoder", "text_encoder_for", "check_text_width"]
