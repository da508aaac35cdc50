"""Write a synthetic dataset root atomically: ``<scene_id>/`` folders plus ``splits.json``.

Rooms are generated into a temporary folder next to ``out`` and renamed into place at the
end, so an interrupted or failed generation leaves nothing half-written; ``splits.json`` is
written last inside that folder. The output is a pure function of (config, rooms, seed):
generating twice gives byte-identical files.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from liftgs.config import save_json_atomic, to_dict
from liftgs.files import replace_dir
from liftgs.io.scene_dir import write_scene, write_splits
from liftgs.synth.config import SynthConfig
from liftgs.synth.generate import GENERATOR_VERSION, generate_room, room_seed

DATASET_JSON = "synth.json"


def scene_ids(rooms: int) -> list[str]:
    return [f"synth_{i:04d}" for i in range(rooms)]


def make_splits(ids: list[str], val_fraction: float, seed: int) -> dict[str, list[str]]:
    """A seeded train/val split (at least one val room once there are two rooms)."""
    n = len(ids)
    n_val = int(round(n * val_fraction))
    if n >= 2 and val_fraction > 0:
        n_val = min(max(n_val, 1), n - 1)
    order = np.random.default_rng(np.random.SeedSequence([int(seed), 7])).permutation(n)
    val = sorted(ids[i] for i in order[:n_val])
    return {"train": sorted(set(ids) - set(val)), "val": val}


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; choose another --out")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; choose a new --out or pass --overwrite")


def generate_dataset(config: SynthConfig, out: str | Path, rooms: int, seed: int = 0,
                     overwrite: bool = False, progress: bool = True) -> Path:
    """Generate ``rooms`` rooms into the dataset root ``out`` (train/val split in ``splits.json``)."""
    if rooms < 1:
        raise ValueError(f"rooms={rooms}: generate at least one room")
    out = Path(out)
    _check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        ids = scene_ids(rooms)
        for i, sid in enumerate(tqdm(ids, desc="synth rooms", unit="room", disable=not progress)):
            write_scene(generate_room(config, room_seed(seed, i), scene_id=sid), tmp)
        save_json_atomic(tmp / DATASET_JSON, {
            "generator": "liftgs.synth", "generator_version": GENERATOR_VERSION, "seed": int(seed),
            "rooms": int(rooms), "config": to_dict(config)})
        write_splits(tmp, make_splits(ids, config.val_fraction, seed))  # last: marks the root complete
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
