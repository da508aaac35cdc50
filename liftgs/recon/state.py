"""Resumable reconstruction state: ``<folder>/state.safetensors`` + ``state.json`` + ``manifest.json``.

The tensors file holds the Gaussian parameters, the exposure parameters, every Adam moment and
the densification accumulators; the JSON holds the step, the Adam step counts, the queue of
training views still to visit this epoch, how many epochs were drawn, the skipped frames, the
warnings so far, the settings and the elapsed time. Random draws derive from (seed, step) and
(seed, epoch), so this is the whole RNG state. Nothing is pickled.

The folder is written complete under a temporary name and renamed into place
(``liftgs.files.atomic_dir``); ``manifest.json`` (sizes and sha256 of the other files, as
training checkpoints have, :mod:`liftgs.train.checkpoint`) is checked before a resume.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from liftgs.config import to_dict
from liftgs.files import atomic_dir, atomic_write
from liftgs.recon.densify import PARAM_NAMES, DensifyStats
from liftgs.train.checkpoint import MANIFEST_FILE, CheckpointError, verify_checkpoint, write_manifest

__all__ = ["save_state", "load_state", "clear_state", "STATE_FORMAT"]

STATE_FORMAT = "liftgs-recon-state"
STATE_VERSION = 1
TENSORS, META = "state.safetensors", "state.json"
_IGNORED = {"checkpoint_every"}  # settings that may differ between an interrupted run and its resume


def save_state(run: Any, folder: Path) -> Path:
    """Write ``run``'s state (a ``liftgs.recon.optimise._Run``) to ``folder`` atomically (replacing an older one)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"param.{k}": run.params[k].detach().contiguous() for k in PARAM_NAMES}
    tensors.update({f"exposure.{k}": v.detach().contiguous() for k, v in run.exposure.items()})
    tensors.update({k: v.contiguous() for k, v in run.adam.state_tensors().items()})
    tensors.update({k: v.contiguous() for k, v in run.stats.tensors().items()})
    meta = {
        "format": STATE_FORMAT, "version": STATE_VERSION, "scene_id": run.scene.scene_id,
        "step": run.step, "num_gaussians": int(run.params["means"].shape[0]),
        "adam_steps": run.adam.steps, "queue": list(run.queue), "refills": run.refills,
        "dropped": list(run.dropped), "warnings": list(run.warnings), "exposure_on": run.exposure_on,
        "elapsed": float(run.elapsed), "timings": run.timings, "config": to_dict(run.config),
    }
    with atomic_dir(folder) as tmp:
        save_file({k: v.clone() for k, v in tensors.items()}, str(tmp / TENSORS))
        with atomic_write(tmp / META) as fh:
            json.dump(meta, fh)
        write_manifest(tmp)
    return folder


def load_state(run: Any, folder: Path) -> int | None:
    """Restore ``run`` from ``folder``; returns the step resumed from, or None when there is
    no state there (or a damaged one, with a warning: the run starts over)."""
    folder = Path(folder)
    if not (folder / META).is_file():
        return None
    try:
        if not (folder / MANIFEST_FILE).is_file():
            raise CheckpointError(f"{folder / MANIFEST_FILE}: missing; the state is incomplete")
        verify_checkpoint(folder)
        meta = json.loads((folder / META).read_text())
        tensors = load_file(str(folder / TENSORS))
    except (CheckpointError, json.JSONDecodeError, OSError) as err:
        warnings.warn(f"{folder}: cannot resume from it ({err}); starting over", RuntimeWarning, stacklevel=3)
        return None
    if meta.get("format") != STATE_FORMAT or meta.get("version") != STATE_VERSION:
        raise CheckpointError(f"{folder / META}: not a reconstruction state of this liftgs version "
                              f"(format {meta.get('format')!r} version {meta.get('version')!r})")
    if meta.get("scene_id") != run.scene.scene_id:
        raise CheckpointError(f"{folder / META}: field scene_id is {meta.get('scene_id')!r}, this scene is "
                              f"{run.scene.scene_id!r}")
    want, have = to_dict(run.config), meta.get("config", {})
    for key in sorted(set(want) | set(have)):
        if key not in _IGNORED and want.get(key) != have.get(key):
            raise CheckpointError(f"{folder / META}: written with {key}={have.get(key)!r}, this run has "
                                  f"{key}={want.get(key)!r}; run without --resume to start over")
    try:
        run.params = {k: tensors[f"param.{k}"].clone().requires_grad_(True) for k in PARAM_NAMES}
        run.exposure = {k: tensors[f"exposure.{k}"].clone().requires_grad_(True)
                        for k in ("exposure_gain", "exposure_bias")}
        run.adam.load_state({k: v for k, v in tensors.items() if k.startswith("adam.")}, meta["adam_steps"])
        run.stats = DensifyStats(tensors["stats.grad"].clone(), tensors["stats.count"].clone(),
                                 tensors["stats.max_radius"].clone())
        run.step, run.queue, run.refills = int(meta["step"]), [int(i) for i in meta["queue"]], int(meta["refills"])
        run.dropped = [int(i) for i in meta["dropped"]]
        run.warnings = list(meta["warnings"])
        run.exposure_on = bool(meta["exposure_on"])
        run.elapsed = float(meta["elapsed"])
        run.timings.update({k: float(v) for k, v in meta.get("timings", {}).items()})
    except KeyError as err:
        raise CheckpointError(f"{folder}: the state lacks {err}; it is corrupt") from None
    n = run.params["means"].shape[0]
    if any(v.shape[0] != n for v in (*run.params.values(), run.stats.grad)):
        raise CheckpointError(f"{folder / TENSORS}: parameter rows disagree; the state is corrupt")
    return run.step


def clear_state(folder: Path) -> None:
    """Remove a finished run's state folder."""
    shutil.rmtree(folder, ignore_errors=True)

