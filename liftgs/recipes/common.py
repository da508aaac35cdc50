"""Helpers every recipe shares: building the model, finding scenes, logging scalars and the
command-line entry point (presets, typed flags, one summary line, clean DDP exit)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from torch import Tensor

from liftgs.config import ConfigError, parse_cli, read_json_object, update_config
from liftgs.train.distributed import cleanup_distributed, current_info


def build_model(preset: str, text_dim: int, family: str = "liftgs"):
    """A fresh model of ``family`` at size ``preset`` with query width ``text_dim``."""
    from liftgs.models import build_model as build_family_model

    return build_family_model(family, preset, text_dim)


def train_and_save(model, step_fn, config, run_config: dict, info, on_step_end, desc: str, images_fn=None):
    """Run :func:`liftgs.train.loop.run_training` with a recipe config's loop, optimiser, output
    folder and resume flag (``images_fn``: the recipe's pictures, see ``--image-every``), then
    write the final weights to ``OUT/model`` (main process)."""
    from liftgs.train.loop import run_training

    result = run_training(model, step_fn, config.loop_config(), config.optim, config.out,
                          config=run_config, resume=config.resume, info=info,
                          on_step_end=on_step_end, desc=desc, images_fn=images_fn)
    if info.is_main:
        model.save_pretrained(Path(config.out) / "model")
    return result


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


def name_list(names: list[str], limit: int = 8) -> str:
    """``a, b, c`` -- or the first ``limit`` names and ``(+N more)`` -- for a one-line message."""
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


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
            raise ConfigError(f"unknown --preset {name!r}; choose one of {sorted(presets)}")
        return name
    return "tiny"


CONFIG_FLAG_HELP = ("--config FILE starts from a saved run's config.json (or a JSON object of this "
                    "command's settings) instead of a preset; flags given with it override its values.")


def config_file_from_argv(argv: list[str]) -> tuple[list[str], Path | None]:
    """``argv`` without ``--config FILE`` / ``--config=FILE``, and that file (None if absent)."""
    rest, path = [], None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config="):
            path = Path(arg.split("=", 1)[1])
        elif arg == "--config":
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise ConfigError("--config needs a FILE (a run's config.json)")
            path = Path(argv[i + 1])
            i += 1
        else:
            rest.append(arg)
        i += 1
    return rest, path


def config_from_file(path: Path, presets: dict, name: str):
    """The ``name`` recipe's config saved in ``path``.

    ``path`` is a run's config.json (``{"recipe": name, name: {...settings}, "model": ...}``, as
    the recipes write it) or a bare JSON object of settings. Settings the file lacks keep the
    values of the preset it names (``tiny`` if none).
    """
    data = read_json_object(path)
    prefix = ""
    if "recipe" in data:  # a run's config.json
        if data["recipe"] != name:
            raise ConfigError(f"{path}: recipe is {data['recipe']!r}, not {name!r} (run it with "
                              f"`liftgs {data['recipe']} --config {path}`)")
        if name not in data:
            raise ConfigError(f"{path}: no {name!r} field holding the run's settings")
        data, prefix = data[name], f"{name}."
    preset = data.get("preset", "tiny") if isinstance(data, dict) else "tiny"
    if preset not in presets:
        raise ConfigError(f"{path}: {prefix}preset must be one of {sorted(presets)}, got {preset!r}")
    return update_config(presets[preset], data, str(path), prefix)


def parse_recipe_config(argv: list[str], config_cls: type, presets: dict, name: str,
                        description: str | None = None):
    """A recipe's config from its command line: the ``--preset`` (or ``--config FILE``)
    defaults, then the typed flags on top."""
    argv, path = config_file_from_argv(argv)
    default = presets[preset_from_argv(argv, presets)] if path is None else config_from_file(path, presets, name)
    description = f"{(description or '').strip()}\n\n{CONFIG_FLAG_HELP}".strip()
    return parse_cli(config_cls, argv, prog=f"liftgs {name}", description=description, default=replace(default))


def recipe_main(argv: list[str] | None, config_cls: type, presets: dict, run, name: str) -> int:
    """A recipe's command: preset or saved-config defaults, typed CLI, run, one summary line,
    clean DDP exit. A bad input raises (``ConfigError``, ``DataError``, ...); ``liftgs.cli``
    turns it into one line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config = parse_recipe_config(argv, config_cls, presets, name, sys.modules[run.__module__].__doc__)
    try:
        result = run(config)
        if current_info().is_main:
            print(f"{name}: {result.step} steps, final loss "
                  f"{result.last_scalars.get('loss', float('nan')):.4f}; weights in "
                  f"{Path(config.out) / 'model'}")
    finally:
        cleanup_distributed()
    return 0
