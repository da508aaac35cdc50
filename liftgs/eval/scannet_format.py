"""Read and write the ScanNet benchmark's instance-segmentation file formats.

Predictions (one folder): ``<scene>.txt`` with one line per instance,
``<relative mask path> <label id> <confidence>``, and each mask file holding one integer per
vertex (non-zero = inside). Ground truth: ``<scene>.txt`` with one integer per vertex,
``label_id * 1000 + instance`` (0 = unannotated). Same layout as the official
``evaluate_semantic_instance.py`` reads, so predictions of other methods can be scored here and
ours there.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from liftgs.eval.instance_ap import ClassSet, InstanceAPResult, InstancePrediction, evaluate_instances
from liftgs.files import atomic_write

__all__ = [
    "RESULT_FILE_NAME",
    "MASK_DIR",
    "write_text_atomic",
    "read_ids",
    "write_ids",
    "gt_ids_from_instances",
    "write_predictions",
    "read_predictions",
    "evaluate_prediction_dir",
]

RESULT_FILE_NAME = "semantic_instance_evaluation.txt"  # skipped when listing prediction files
MASK_DIR = "pred_mask"


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename."""
    with atomic_write(path) as fh:
        fh.write(text)


def read_ids(path: str | Path, what: str = "id file") -> np.ndarray:
    """One integer per line -> [P] int64; the error names the file and the first bad line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    lines = path.read_text().splitlines()
    if not lines:
        raise ValueError(f"{what} {path} is empty: expected one integer per vertex")
    try:
        return np.array(lines, dtype=np.int64)
    except ValueError:
        for n, line in enumerate(lines, 1):
            try:
                int(line)
            except ValueError:
                raise ValueError(f"{what} {path}, line {n}: expected one integer per line, got {line!r}") from None
        raise


def write_ids(path: str | Path, ids: np.ndarray) -> None:
    """One integer per line (atomic)."""
    ids = np.asarray(ids).reshape(-1).astype(np.int64)
    write_text_atomic(path, "".join(f"{v}\n" for v in ids.tolist()))


def gt_ids_from_instances(instance_ids: np.ndarray, labels: Mapping[int, int]) -> np.ndarray:
    """Benchmark GT ids [P] from per-point instance ids [P] (-1 = none) and ``labels``
    {instance id: class label id}. Instances get numbers 1..n in ascending id order; points of
    unlabelled instances (or -1) get 0, i.e. they count as void."""
    instance_ids = np.asarray(instance_ids, dtype=np.int64).reshape(-1)
    out = np.zeros_like(instance_ids)
    present = [int(i) for i in np.unique(instance_ids) if i >= 0 and int(i) in labels]
    if len(present) >= 1000:
        raise ValueError(f"{len(present)} instances in one scene: the label*1000+instance code allows 999")
    for k, inst in enumerate(present, 1):
        label = int(labels[inst])
        if label < 1:
            raise ValueError(f"instance {inst}: label id must be >= 1, got {label}")
        out[instance_ids == inst] = label * 1000 + k
    return out


def write_predictions(pred_dir: str | Path, scene_id: str, preds: Sequence[InstancePrediction]) -> Path:
    """Write one scene's predictions in the official format; returns ``<pred_dir>/<scene>.txt``.
    Masks go to ``<pred_dir>/pred_mask/<scene>_<i>.txt``."""
    if not scene_id or any(c.isspace() for c in scene_id) or "/" in scene_id:
        raise ValueError(f"scene id {scene_id!r} cannot be a benchmark file name (no spaces or '/')")
    pred_dir = Path(pred_dir)
    lines = []
    for i, p in enumerate(preds):
        rel = f"{MASK_DIR}/{scene_id}_{i:03d}.txt"
        write_ids(pred_dir / rel, p.mask.astype(np.int64))
        lines.append(f"{rel} {p.label_id} {p.score:.6f}\n")
    out = pred_dir / f"{scene_id}.txt"
    write_text_atomic(out, "".join(lines))
    return out


def _parse_line(line: str, n: int, pred_file: Path, root: Path) -> tuple[Path, int, float]:
    parts = line.split(" ")
    if len(parts) != 3:
        raise ValueError(f"prediction file {pred_file}, line {n}: expected '<relative mask path> <label id> "
                         f"<confidence>' separated by single spaces, got {line!r}")
    if os.path.isabs(parts[0]):
        raise ValueError(f"prediction file {pred_file}, line {n}: the mask path must be relative, got {parts[0]!r}")
    mask_file = (pred_file.parent / parts[0]).resolve()
    if os.path.commonpath([mask_file, root]) != str(root):
        raise ValueError(f"prediction file {pred_file}, line {n}: mask {parts[0]!r} points outside {root}")
    try:
        label = int(float(parts[1]))
        conf = float(parts[2])
    except ValueError:
        raise ValueError(f"prediction file {pred_file}, line {n}: label id and confidence must be numbers, "
                         f"got {parts[1]!r} {parts[2]!r}") from None
    if not np.isfinite(conf):
        raise ValueError(f"prediction file {pred_file}, line {n}: confidence must be finite, got {parts[2]!r}")
    return mask_file, label, conf


def read_predictions(pred_file: str | Path, pred_root: str | Path | None = None, num_vertices: int | None = None,
                     label_ids: Sequence[int] | None = None) -> list[InstancePrediction]:
    """Parse ``<scene>.txt`` and its mask files.

    Masks of labels outside ``label_ids`` are not read (the official script skips them too).
    A mask path listed twice keeps its first position and its last label / confidence, as the
    script's dict does (with a warning). ``num_vertices`` checks every mask's length.
    """
    pred_file = Path(pred_file)
    if not pred_file.is_file():
        raise FileNotFoundError(f"prediction file {pred_file} does not exist")
    root = Path(pred_root if pred_root is not None else pred_file.parent).resolve()
    entries: dict[Path, tuple[int, float]] = {}
    for n, line in enumerate(pred_file.read_text().splitlines(), 1):
        if not line.strip():
            raise ValueError(f"prediction file {pred_file}, line {n}: empty line")
        mask_file, label, conf = _parse_line(line, n, pred_file, root)
        if mask_file in entries:
            warnings.warn(f"prediction file {pred_file}: mask {mask_file} listed twice; keeping the last line")
        entries[mask_file] = (label, conf)
    wanted = None if label_ids is None else set(int(i) for i in label_ids)
    preds = []
    for mask_file, (label, conf) in entries.items():
        if wanted is not None and label not in wanted:
            continue
        mask = read_ids(mask_file, what=f"mask file (listed in {pred_file})")
        if num_vertices is not None and mask.shape[0] != num_vertices:
            raise ValueError(f"mask file {mask_file} (listed in {pred_file}) has {mask.shape[0]} lines but the "
                             f"scene has {num_vertices} vertices")
        preds.append(InstancePrediction(mask=mask != 0, label_id=label, score=conf, name=str(mask_file)))
    return preds


def evaluate_prediction_dir(pred_dir: str | Path, gt_dir: str | Path, classes: ClassSet) -> InstanceAPResult:
    """Score every ``<scene>.txt`` in ``pred_dir`` against ``gt_dir/<scene>.txt`` (the official
    script's ``main``); a prediction file without GT is an error naming both paths."""
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"prediction folder {pred_dir} does not exist")
    files = sorted(f for f in pred_dir.iterdir() if f.suffix == ".txt" and f.name != RESULT_FILE_NAME and f.is_file())
    if not files:
        raise FileNotFoundError(f"no <scene>.txt prediction files in {pred_dir}")
    scenes, names = [], []
    for f in files:
        gt_file = gt_dir / f.name
        if not gt_file.is_file():
            raise FileNotFoundError(f"prediction file {f} has no ground truth: {gt_file} does not exist")
        gt = read_ids(gt_file, what="ground-truth file")
        if (gt < 0).any():
            raise ValueError(f"ground-truth file {gt_file}: ids must be >= 0 (label*1000+instance)")
        scenes.append((gt, read_predictions(f, pred_dir, num_vertices=len(gt), label_ids=classes.ids)))
        names.append(f.stem)
    return evaluate_instances(scenes, classes, scene_names=names)
