"""Atomic, pickle-free training checkpoints that resume a run bit for bit.

A checkpoint is a directory ``<run>/checkpoints/step_XXXXXXXX/`` holding

* ``model/``                 the weights (``save_pretrained`` layout when the model has it:
                             config JSON + safetensors; otherwise ``model.safetensors``);
* ``optimizer.safetensors``  every tensor of the optimiser state (``state.<param>.<name>``);
* ``optimizer.json``         the rest of the optimiser state (param groups, scalar entries);
* ``scheduler.json``         the LR scheduler's ``state_dict`` (plain numbers);
* ``rng_rank<r>.safetensors`` / ``rng_rank<r>.json``  torch CPU (+ CUDA) generator bytes as
                             uint8 tensors / python ``random`` and numpy states, one pair per
                             rank so data-parallel runs resume exactly too;
* ``trainer.json``           step, the run's config and free metadata;
* ``manifest.json``          written last: the size and sha256 of every other file.

Writes go to a hidden temporary directory in the same folder that is renamed into place
(``os.replace``) only when complete, so a run killed mid-write never leaves a half
checkpoint that ``latest_checkpoint`` would pick up. Nothing is pickled: loading needs only
safetensors and JSON.

The manifest catches what atomic writes cannot: a checkpoint damaged later (a copy cut
short, a flipped bit on disk). :func:`load_checkpoint` verifies it before restoring anything,
and resuming a run falls back from a damaged newest checkpoint to the newest intact one
(:func:`latest_checkpoint` with ``verify=True``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from liftgs.files import atomic_write

_STEP_DIR = re.compile(r"^step_(\d{8})$")
TRAINER_FILE = "trainer.json"
MANIFEST_FILE = "manifest.json"
Warn = Callable[[str], None]


class CheckpointError(RuntimeError):
    """A checkpoint directory is missing, incomplete or does not match the run."""


@dataclass
class CheckpointState:
    """What :func:`load_checkpoint` returns besides restoring objects in place."""

    path: Path
    step: int
    config: dict[str, Any]
    meta: dict[str, Any]


# ----------------------------------------------------------------------------------- RNG


def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every global RNG this process uses: (tensors for safetensors, JSON-ready rest)."""
    tensors = {"torch_cpu": torch.get_rng_state().clone()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = state.clone()
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    info = {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss},
        "numpy": {"kind": kind, "keys": [int(k) for k in keys], "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
    }
    return tensors, info


def restore_rng_state(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(tensors["torch_cpu"].to(torch.uint8))
    cuda = sorted(k for k in tensors if k.startswith("torch_cuda_"))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k].to(torch.uint8) for k in cuda])
    py = info["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    nps = info["numpy"]
    np.random.set_state((nps["kind"], np.asarray(nps["keys"], dtype=np.uint32), nps["pos"],
                         nps["has_gauss"], nps["cached_gaussian"]))


# ----------------------------------------------------------------------------- optimiser


def optimizer_state_to_files(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``state.<param>.<name>``) and JSON."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in state["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in state["param_groups"]]
    for g in groups:
        for k, v in g.items():
            if isinstance(v, torch.Tensor):  # e.g. a tensor lr: keep it exact as a float list
                raise CheckpointError(f"optimiser param group field {k!r} is a tensor; use a float")
    return tensors, {"param_groups": groups, "scalars": scalars,
                     "tuple_fields": sorted({k for g in state["param_groups"] for k, v in g.items()
                                             if isinstance(v, tuple)})}


def optimizer_state_from_files(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_state_to_files`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for pid, entry in info.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entry)
    tuple_fields = set(info.get("tuple_fields", []))
    groups = [{k: (tuple(v) if k in tuple_fields else v) for k, v in g.items()}
              for g in info["param_groups"]]
    return {"state": state, "param_groups": groups}


# ------------------------------------------------------------------------------- layout


def checkpoint_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary directories are ignored)."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)
             and (p / TRAINER_FILE).is_file()]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(run_dir: str | Path, verify: bool = False, warn: Warn | None = None) -> Path | None:
    """The newest complete checkpoint of a run, or None.

    With ``verify`` the newest one that passes :func:`verify_checkpoint`: each newer, damaged
    one is reported by ``warn`` (default ``warnings.warn``) in one line naming the bad file.
    """
    if not verify:
        found = list_checkpoints(run_dir)
        return found[-1] if found else None
    return _newest_intact(run_dir, warn)[0]


def verify_checkpoint(path: str | Path, warn: Warn | None = None) -> None:
    """Check every file of checkpoint ``path`` against its ``manifest.json`` (size, sha256).

    Raises :class:`CheckpointError` naming the first missing, truncated or altered file. A
    checkpoint written before manifests existed (its ``trainer.json`` does not announce one)
    is accepted unverified, with a warning.
    """
    path = Path(path)
    manifest_file = path / MANIFEST_FILE
    if not manifest_file.is_file():
        if "manifest" in _read_json(path / TRAINER_FILE):
            raise CheckpointError(f"{manifest_file}: missing; the checkpoint is incomplete")
        _emit(warn, f"{path}: no {MANIFEST_FILE} (written by an older liftgs); its files are not verified")
        return
    manifest = _read_json(manifest_file)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not files:
        raise CheckpointError(f"{manifest_file}: field 'files' must map file names to sizes and "
                              "sha256 digests; the checkpoint is corrupt")
    for rel, entry in files.items():
        f = path / rel
        if not isinstance(entry, dict):
            raise CheckpointError(f"{manifest_file}: entry {rel!r} must hold 'bytes' and 'sha256'; "
                                  "the checkpoint is corrupt")
        if not f.is_file():
            raise CheckpointError(f"{f}: missing (listed in {MANIFEST_FILE}); the checkpoint is incomplete")
        size = f.stat().st_size
        if size != entry.get("bytes"):
            raise CheckpointError(f"{f}: truncated or altered ({size} bytes, {MANIFEST_FILE} records "
                                  f"{entry.get('bytes')})")
        if _sha256(f) != entry.get("sha256"):
            raise CheckpointError(f"{f}: checksum mismatch (sha256 differs from {MANIFEST_FILE}); "
                                  "the file is corrupt")


def _newest_intact(run_dir: str | Path, warn: Warn | None) -> tuple[Path | None, list[str]]:
    """(newest checkpoint passing :func:`verify_checkpoint` or None, why newer ones failed);
    when one passes, each newer damaged one is reported by ``warn``."""
    problems = []
    for path in reversed(list_checkpoints(run_dir)):
        try:
            verify_checkpoint(path, warn)
        except CheckpointError as err:
            problems.append(str(err))
            continue
        for problem in problems:
            _emit(warn, f"{problem}; using the earlier {path.name} instead")
        return path, problems
    return None, problems


def write_manifest(path: Path) -> None:
    """Record the size and sha256 of every file in checkpoint folder ``path`` (``verify_checkpoint``
    checks them); written last, by every checkpoint writer (training runs, ``liftgs recon``)."""
    files = {}
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.name != MANIFEST_FILE):
        files[f.relative_to(path).as_posix()] = {"bytes": f.stat().st_size, "sha256": _sha256(f)}
    _write_json(path / MANIFEST_FILE, {"algorithm": "sha256", "files": files})


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _emit(warn: Warn | None, message: str) -> None:
    if warn is None:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    else:
        warn(message)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare module inside DDP / DataParallel wrappers."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def _save_model(model: nn.Module, path: Path) -> None:
    model = unwrap_model(model)
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(path)
        return
    path.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(weights, str(path / "model.safetensors"))


def _load_model(model: nn.Module, path: Path) -> None:
    model = unwrap_model(model)
    if hasattr(model, "load_pretrained_state"):  # a model whose save_pretrained writes its own layout
        model.load_pretrained_state(path)
        return
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{path}: no *.safetensors weights in the checkpoint's model folder")
    weights: dict[str, torch.Tensor] = {}
    for f in files:
        weights.update(load_file(str(f)))
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the model (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}); was the checkpoint written with another model config?")
    for k, v in weights.items():
        if own[k].shape != v.shape:
            raise CheckpointError(f"{path}: weight {k!r} has shape {list(v.shape)}, the model "
                                  f"expects {list(own[k].shape)}")
    model.load_state_dict(weights, strict=True)


def save_checkpoint(run_dir: str | Path, step: int, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                    config: dict[str, Any] | None = None, meta: dict[str, Any] | None = None,
                    keep_last: int = 3, rank: int = 0, world_size: int = 1,
                    barrier: Any = None) -> Path | None:
    """Write ``step_<step>`` atomically; with several ranks every rank calls this.

    Rank 0 writes model, optimiser, scheduler and trainer files; each rank writes its own RNG
    files into the same temporary folder (``barrier`` synchronises them, a shared file system
    is assumed as with any multi-process trainer). Returns the final path on rank 0.
    """
    root = checkpoint_root(run_dir)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    if barrier is not None:
        barrier()
    rng_tensors, rng_info = capture_rng_state()
    save_file(rng_tensors, str(tmp / f"rng_rank{rank}.safetensors"))
    _write_json(tmp / f"rng_rank{rank}.json", rng_info)
    if barrier is not None:
        barrier()
    if rank != 0:
        if barrier is not None:
            barrier()
        return None
    _save_model(model, tmp / "model")
    if optimizer is not None:
        tensors, info = optimizer_state_to_files(optimizer.state_dict())
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        _write_json(tmp / "optimizer.json", info)
    if scheduler is not None:
        _write_json(tmp / "scheduler.json", _jsonable(scheduler.state_dict()))
    _write_json(tmp / TRAINER_FILE, {"step": int(step), "world_size": int(world_size),
                                      "config": config or {}, "meta": meta or {},
                                      "manifest": MANIFEST_FILE})
    write_manifest(tmp)  # last: covers every rank's files and trainer.json
    if final.exists():  # re-saving the same step (e.g. final save after a periodic one)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _prune(root, keep_last)
    if barrier is not None:
        barrier()
    return final


def load_checkpoint(path: str | Path, model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                    rank: int = 0, restore_rng: bool = True, warn: Warn | None = None) -> CheckpointState:
    """Restore the given objects in place from ``path`` (a ``step_*`` dir or a run dir).

    The checkpoint is verified against its manifest first; for a run dir a damaged newest
    checkpoint is skipped for the newest intact one (reported by ``warn``, see
    :func:`resolve_checkpoint`).
    """
    path = resolve_checkpoint(path, verify=True, warn=warn)
    trainer = _read_json(path / TRAINER_FILE)
    if model is not None:
        _load_model(model, path / "model")
    if optimizer is not None:
        opt_file = path / "optimizer.safetensors"
        if not opt_file.is_file():
            raise CheckpointError(f"{path}: no optimizer.safetensors; cannot resume training from it")
        info = _read_json(path / "optimizer.json")
        optimizer.load_state_dict(optimizer_state_from_files(load_file(str(opt_file)), info))
    if scheduler is not None:
        sched = path / "scheduler.json"
        if not sched.is_file():
            raise CheckpointError(f"{path}: no scheduler.json; cannot resume training from it")
        scheduler.load_state_dict(_read_json(sched))
    if restore_rng:
        rng_file = path / f"rng_rank{rank}.safetensors"
        if not rng_file.is_file():
            raise CheckpointError(f"{path}: no RNG state for rank {rank} (checkpoint written with "
                                  f"{trainer.get('world_size', 1)} process(es)); resume with the "
                                  "same number of processes")
        restore_rng_state(load_file(str(rng_file)), _read_json(path / f"rng_rank{rank}.json"))
    return CheckpointState(path=path, step=int(trainer["step"]), config=trainer.get("config", {}),
                           meta=trainer.get("meta", {}))


def resolve_checkpoint(path: str | Path, verify: bool = False, warn: Warn | None = None) -> Path:
    """A ``step_*`` checkpoint dir, or a run dir (→ its latest checkpoint); clear errors.

    With ``verify`` a checkpoint dir must pass :func:`verify_checkpoint`, and a run dir gives
    its newest intact checkpoint (damaged newer ones reported by ``warn``); a run whose
    checkpoints are all damaged is an error naming the run dir.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint path does not exist")
    if (path / TRAINER_FILE).is_file():
        if verify:
            verify_checkpoint(path, warn)
        return path
    if path.is_dir():
        latest, problems = _newest_intact(path, warn) if verify else (latest_checkpoint(path), [])
        if latest is not None:
            return latest
        if problems:
            raise CheckpointError(f"{path}: no intact checkpoint in this run ({'; '.join(problems)}); "
                                  "restore the files or start a new run")
    raise CheckpointError(
        f"{path}: not a checkpoint (no {TRAINER_FILE}) and not a run directory with complete "
        "checkpoints under checkpoints/step_XXXXXXXX/")


def resolve_model_dir(path: str | Path, *, revision: str | None = None, cache_dir: str | Path | None = None,
                      local_files_only: bool = True) -> Path:
    """The model folder (config.json + safetensors) behind a model, checkpoint or run path:
    a run's final ``model/`` when it has one, else its latest checkpoint's. When no file of that
    name exists, the name of a shipped model (``liftgs-tiny-finetuned``, see :mod:`liftgs.weights`)
    stands for its folder, and a Hugging Face repo id (``owner/name``) for its snapshot in the
    local Hugging Face cache (:func:`liftgs.hub.hub_model_dir`: ``revision``, ``cache_dir``;
    nothing is downloaded unless ``local_files_only=False``)."""
    from liftgs.hub import local_or_hub
    from liftgs.weights import is_shipped_name, shipped_model_dir

    path = Path(path)
    if not path.exists() and is_shipped_name(path):
        path = shipped_model_dir(str(path))
    else:
        path = local_or_hub(path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    if not path.exists():
        raise CheckpointError(f"{path}: model weights not found")
    if path.is_dir() and any(path.glob("*.safetensors")) and (path / "config.json").is_file():
        return path
    if (path / "model").is_dir() and any((path / "model").glob("*.safetensors")):
        return path / "model"
    latest = latest_checkpoint(path)
    if latest is not None and (latest / "model").is_dir():
        return latest / "model"
    raise CheckpointError(f"{path}: not a model folder (config.json + *.safetensors), a checkpoint "
                          "(step_*/model) or a run directory holding either")


def _prune(root: Path, keep_last: int) -> None:
    if keep_last <= 0:
        return
    found = list_checkpoints(root.parent)
    for old in found[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.item() if obj.numel() == 1 else obj.tolist()
    if callable(obj):  # a scheduler's lambda: rebuilt from the config, not stored
        return None
    return obj


def _write_json(path: Path, data: Any) -> None:
    with atomic_write(path) as fh:
        json.dump(data, fh)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing from the checkpoint (incomplete or not a checkpoint)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON ({err}); the checkpoint is corrupt") from err
