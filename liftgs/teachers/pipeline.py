"""Label every frame of a set of scenes into the cache, resumably (``liftgs pseudolabel``).

Each frame's file carries the run's provenance (teacher, its settings, the area filter). A
rerun verifies every existing file (checksum, size, provenance) and labels only frames that
are missing or damaged, so an interrupted run continues where it stopped and a corrupt file
is redone instead of being used. A file made with *different* settings is never mixed in
silently: the run stops with an error, or replaces it when asked to (``on_mismatch="redo"``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from liftgs.io.errors import DataError
from liftgs.teachers.base import Teacher, filter_small_segments, label_frames, scaled_min_area
from liftgs.teachers.store import PseudoLabelStore, frame_key, read_labels
from liftgs.types import Frame, Scene

__all__ = ["SceneJob", "RunSummary", "run_provenance", "jobs_from_scenes", "jobs_from_root", "pseudolabel"]


@dataclass
class SceneJob:
    """A scene to label: its context (objects, id), frame keys and sizes, and a frame loader."""

    scene: Scene  # frames may be empty: ``load`` reads them lazily
    keys: list[str]
    sizes: list[tuple[int, int]]  # (H, W) per frame
    load: Callable[[int], Frame]


@dataclass
class RunSummary:
    frames: int = 0
    labelled: int = 0
    skipped: int = 0  # already in the cache and verified
    redone_corrupt: int = 0
    redone_mismatch: int = 0
    segments: list[int] = field(default_factory=list)  # per frame (labelled and verified)
    label_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def segments_per_frame(self) -> float:
        return float(np.mean(self.segments)) if self.segments else 0.0

    @property
    def seconds_per_frame(self) -> float:
        return self.label_seconds / self.labelled if self.labelled else 0.0

    def table(self) -> str:
        rows = [("frames", f"{self.frames}"), ("labelled now", f"{self.labelled}"),
                ("already cached (verified)", f"{self.skipped}"),
                ("redone (corrupt)", f"{self.redone_corrupt}"), ("redone (other settings)", f"{self.redone_mismatch}"),
                ("segments / frame", f"{self.segments_per_frame:.2f}"),
                ("seconds / labelled frame", f"{self.seconds_per_frame:.4f}"), ("wall seconds", f"{self.wall_seconds:.1f}")]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def run_provenance(teacher: Teacher, area_at_base: int, base_resolution: int) -> dict[str, Any]:
    return {"teacher": teacher.name, "settings": teacher.settings(),
            "min_area": {"area_at_base": int(area_at_base), "base_resolution": int(base_resolution)}}


def jobs_from_scenes(scenes: Iterable[Scene]) -> Iterator[SceneJob]:
    """Jobs for in-memory scenes (frames already loaded)."""
    for scene in scenes:
        keys = [frame_key(f, i) for i, f in enumerate(scene.frames)]
        sizes = [(f.camera.height, f.camera.width) for f in scene.frames]
        yield SceneJob(scene=scene, keys=keys, sizes=sizes, load=scene.frames.__getitem__)


def jobs_from_root(root: str | Path, split: str | None = None) -> list[SceneJob]:
    """Jobs for scene folders (a dataset root, or one scene folder); frames load lazily."""
    from liftgs.io.scene_dir import list_scenes, read_frame, read_scene, read_scene_json

    root = Path(root)
    paths = [root] if (root / "scene.json").is_file() else list_scenes(root, split=split)
    jobs = []
    for path in paths:
        doc = read_scene_json(path)
        scene = read_scene(path, load_frames=False)
        entries = doc["frames"]
        keys = [e.get("name") or f"{i:06d}" for i, e in enumerate(entries)]
        sizes = [(int(e["height"]), int(e["width"])) for e in entries]
        jobs.append(SceneJob(scene=scene, keys=keys, sizes=sizes, load=lambda i, p=path: read_frame(p, i)))
    return jobs


def _status(store: PseudoLabelStore, scene_id: str, key: str, size: tuple[int, int],
            provenance: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    """("ok" | "missing" | "corrupt" | "mismatch", segments when ok, cached provenance)."""
    path = store.path(scene_id, key)
    if not path.is_file():
        return "missing", 0, {}
    try:
        labels = read_labels(path)
    except ValueError:
        return "corrupt", 0, {}
    if labels.segments.shape != size:
        return "corrupt", 0, {}
    if _canon(labels.provenance) != _canon(provenance):
        return "mismatch", 0, labels.provenance
    return "ok", labels.num_segments, labels.provenance


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two provenance dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if _canon(a) == _canon(b) else [prefix.rstrip(".")]


def _canon(obj: Any) -> str:
    import json

    return json.dumps(obj, sort_keys=True)


def pseudolabel(jobs: Iterable[SceneJob], teacher: Teacher, store: PseudoLabelStore, area_at_base: int = 1024,
                base_resolution: int = 512, on_mismatch: str = "error", batch_frames: int = 8,
                progress: bool = True) -> RunSummary:
    """Label every frame of ``jobs`` into ``store`` and return the run's summary."""
    from tqdm import tqdm

    if on_mismatch not in ("error", "redo"):
        raise ValueError(f"on_mismatch must be 'error' or 'redo', got {on_mismatch!r}")
    if batch_frames < 1:
        raise ValueError(f"batch_frames must be >= 1, got {batch_frames}")
    jobs = list(jobs)
    provenance = run_provenance(teacher, area_at_base, base_resolution)
    summary = RunSummary(frames=sum(len(j.keys) for j in jobs))
    start = time.perf_counter()
    bar = tqdm(total=summary.frames, desc=f"pseudolabel [{teacher.name}]", unit="frame", disable=not progress)
    try:
        for job in jobs:
            pending = []
            for i, (key, size) in enumerate(zip(job.keys, job.sizes)):
                status, n, cached = _status(store, job.scene.scene_id, key, size, provenance)
                if status == "ok":
                    summary.skipped += 1
                    summary.segments.append(n)
                    bar.update(1)
                    continue
                if status == "mismatch" and on_mismatch == "error":
                    raise DataError(
                        f"was made with other settings than this run "
                        f"(differing: {', '.join(_diff(cached, provenance)) or 'format'}); use another --out, "
                        "or --on-mismatch redo to replace it", store.path(job.scene.scene_id, key))
                summary.redone_corrupt += status == "corrupt"
                summary.redone_mismatch += status == "mismatch"
                pending.append(i)
            for b in range(0, len(pending), batch_frames):
                _label_batch(job, pending[b:b + batch_frames], teacher, store, provenance, area_at_base,
                             base_resolution, summary)
                bar.update(len(pending[b:b + batch_frames]))
    finally:
        bar.close()
        summary.wall_seconds = time.perf_counter() - start
    return summary


def _label_batch(job: SceneJob, indices: list[int], teacher: Teacher, store: PseudoLabelStore,
                 provenance: dict[str, Any], area_at_base: int, base_resolution: int, summary: RunSummary) -> None:
    frames = [job.load(i) for i in indices]
    t0 = time.perf_counter()
    labels = label_frames(teacher, frames, job.scene)
    for i, frame, lab in zip(indices, frames, labels):
        H, W = frame.camera.height, frame.camera.width
        lab = filter_small_segments(lab, scaled_min_area(H, W, area_at_base, base_resolution))
        lab.provenance = dict(provenance)
        store.put(job.scene.scene_id, job.keys[i], lab)
        summary.segments.append(lab.num_segments)
    summary.label_seconds += time.perf_counter() - t0
    summary.labelled += len(indices)
