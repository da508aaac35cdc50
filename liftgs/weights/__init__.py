"""Trained weights shipped with the package, addressed by name wherever a model path is taken.

* ``liftgs-tiny-pretrained``: LIFT-GS, ``tiny`` preset, pre-trained on 2D pseudo-labels only
  (the synthetic teacher with its imperfections) -- zero-shot grounding;
* ``liftgs-tiny-finetuned``: the same model fine-tuned on 3D labels (referring expressions and
  category queries) -- referential grounding and open-vocabulary instance segmentation.

Both were trained on the built-in synthetic benchmark by ``liftgs demo`` (the full-size run,
``make demo-full``), which writes them again with ``--export-weights``; their figures and the
command are in the README. Each folder is a ``save_pretrained`` model folder (``config.json``
with the weights' sha256 + ``model.safetensors``): nothing is downloaded and nothing pickled.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["FINETUNED", "PRETRAINED", "SHIPPED", "shipped_model_dir", "is_shipped_name"]

_ROOT = Path(__file__).resolve().parent
PRETRAINED, FINETUNED = "liftgs-tiny-pretrained", "liftgs-tiny-finetuned"

SHIPPED: dict[str, str] = {
    PRETRAINED: "LIFT-GS tiny, pre-trained with 2D render supervision (zero-shot grounding)",
    FINETUNED: "LIFT-GS tiny, fine-tuned on 3D labels (referring expressions, instance segmentation)",
}


def is_shipped_name(name: str | Path) -> bool:
    return str(name) in SHIPPED


def shipped_model_dir(name: str) -> Path:
    """The folder of the shipped model ``name`` (one of :data:`SHIPPED`)."""
    if name not in SHIPPED:
        raise ValueError(f"no shipped model {name!r}; shipped: {', '.join(SHIPPED)}")
    path = _ROOT / name
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: the shipped model {name!r} is missing from this installation")
    return path
