"""LIFT-GS (Cao et al., ICML 2025): a point cloud and query tokens in, 3D Gaussians and
3D masks out (paper Fig. 5).

``config`` (:class:`ModelConfig`, presets ``tiny`` / ``paper``), ``model`` (:class:`LiftGS`
and its builder :func:`build_liftgs`), ``factors`` (mask logits evaluated on demand) and
``inference`` (grounding phrases and expressions with a trained model). The sparse UNet,
decoder layers, Gaussian head and component clean-up come from :mod:`liftgs.modules`.
"""

from __future__ import annotations

from pathlib import Path

from liftgs.models.liftgs.config import ModelConfig
from liftgs.models.liftgs.inference import GroundingResult, ground, ground_expressions, ground_tokens
from liftgs.models.liftgs.model import LiftGS, PointEncoding, build_liftgs

PRESETS = ("tiny", "paper")


def build_preset(preset: str, text_dim: int) -> LiftGS:
    """The LIFT-GS model of a preset with query width ``text_dim``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown LIFT-GS preset {preset!r}; choose one of {list(PRESETS)}")
    build = ModelConfig.paper if preset == "paper" else ModelConfig.tiny
    return build_liftgs(build(text_dim=text_dim, preset=preset))


def load_pretrained(path: str | Path, map_location: str = "cpu") -> LiftGS:
    """A model folder written by :meth:`LiftGS.save_pretrained`."""
    return LiftGS.from_pretrained(path, map_location=map_location)


__all__ = ["ModelConfig", "LiftGS", "PointEncoding", "build_liftgs", "build_preset", "load_pretrained",
           "GroundingResult", "ground", "ground_expressions", "ground_tokens"]
