"""GenSplat (CVPR 2026), stages I and II: reconstructed 3D Gaussians in, per-Gaussian
semantic latents and instance masks / classes out (GenSplat summary, Method, Key Designs 1).

``config`` (:class:`GenSplatConfig`, presets ``tiny`` / ``paper``), ``encoder``
(:class:`GaussianInput`, the Gaussian encoder E_g), ``pooling`` (cluster-mean pooling into
:class:`PooledTokens`), ``decoder`` (the instance decoder, :class:`InstanceOutput`) and
``model`` (:class:`GenSplat`). The sparse UNet, decoder layers, farthest-point sampling and
Fourier positions come from :mod:`liftgs.modules`.
"""

from __future__ import annotations

from pathlib import Path

from liftgs.models.gensplat.config import GenSplatConfig
from liftgs.models.gensplat.decoder import InstanceDecoder, InstanceOutput
from liftgs.models.gensplat.encoder import GaussianEncoder, GaussianInput
from liftgs.models.gensplat.model import STAGE_ONE_MODULES, GenSplat, build_gensplat
from liftgs.models.gensplat.pooling import PooledTokens, cluster_mean_pool

PRESETS = ("tiny", "paper")


def build_preset(preset: str, text_dim: int) -> GenSplat:
    """The GenSplat model of a preset for ``text_dim``-d text embeddings."""
    if preset not in PRESETS:
        raise ValueError(f"unknown GenSplat preset {preset!r}; choose one of {list(PRESETS)}")
    config = GenSplatConfig.paper(text_dim=text_dim) if preset == "paper" else GenSplatConfig.tiny(text_dim=text_dim)
    return build_gensplat(config)


def load_pretrained(path: str | Path, map_location: str = "cpu") -> GenSplat:
    """A model folder written by :meth:`GenSplat.save_pretrained`."""
    return GenSplat.from_pretrained(path, map_location=map_location)


__all__ = ["GenSplatConfig", "GenSplat", "GaussianInput", "GaussianEncoder", "InstanceDecoder", "InstanceOutput",
           "PooledTokens", "PRESETS", "STAGE_ONE_MODULES", "build_gensplat", "build_preset", "cluster_mean_pool",
           "load_pretrained"]
