"""Helpers every recipe shares: building the model, finding scenes, logging scalars and the
command-line entry point (presets, typed flags, one summary line, clean DDP exit)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from torch import Tensor

from liftgs.config import parse_cli
from liftgs.train.distributed import cleanup_distributed, current_info


def build_model(preset: str, text_dim: int, family: str = "liftgs"):
    """A fresh model of ``family`` at size ``preset`` with query width ``text_dim``."""
    from liftgs.models import build_model as build_family_model

    return build_family_model(family, preset, text_dim)


def loss_scalars(parts: dict, prefix: str = "") -> dict[str, float]:
    """Scalar entries of a loss dict for logging; per-layer (``_<i>``) and total keys dropped."""
    out = {}
    for k, v in (parts or {}).items():
        if k == "loss" or k.rsplit("_", 1)[-1].isdigit():
            continue
        if isinstance(v, Tensor) and v.numel() == 1:
            v = float(v.detach())
        if isinstance(v, (int, float)):
            out[k if k.startswith(prefix) else prefix + k] = float(v)
    return out


def scene_paths(data: Path, split: str | None) -> list[Path]:
    """Scenes of ``split`` when the root has a splits.json, else every scene."""
    from liftgs.io.scene_dir import SPLITS_JSON, list_scenes

    if split and (Path(data) / SPLITS_JSON).is_file():
        return list_scenes(data, split)
    return list_scenes(data)


def preset_from_argv(argv: list[str], presets: dict) -> str:
    """The ``--preset`` value in ``argv`` (default "tiny"); picks the defaults tyro shows."""
    for i, arg in enumerate(argv):
        if arg.startswith("--preset="):
            name = arg.split("=", 1)[1]
        elif arg == "--preset" and i + 1 < len(argv):
            name = argv[i + 1]
        else:
            continue
        if name not in presets:
            raise SystemExit(f"unknown --preset {name!r}; choose one of {sorted(presets)}")
        return name
    return "tiny"


def recipe_main(argv: list[str] | None, config_cls: type, presets: dict, run, name: str) -> int:
    """A recipe's command: preset defaults, typed CLI, run, one summary line, clean DDP exit."""
    argv = list(sys.argv[1:] if argv is None else argv)
    default = presets[preset_from_argv(argv, presets)]
    config = parse_cli(config_cls, argv, prog=f"liftgs {name}", description=sys.modules[run.__module__].__doc__,
                       default=replace(default))
    try:
        result = run(config)
        if current_info().is_main:
            print(f"{name}: {result.step} steps, final loss "
                  f"{result.last_scalars.get('loss', float('nan')):.4f}; weights in "
                  f"{Path(config.out) / 'model'}")
    finally:
        cleanup_distributed()
    return 0
