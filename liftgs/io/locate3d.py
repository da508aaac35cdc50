"""Locate 3D Dataset (L3DD) referring expressions: JSON with grounded phrases ("entities").

The format is defined by Meta's ``facebookresearch/locate-3d`` repository:
``locate3d_data/README.md`` documents the fields and ``locate3d_data/locate3d_dataset.py``
(``Locate3DDataset.add_positive_map_and_obj_ids``) is the reference reader. One file (e.g.
``val_scannet.json``) is a list of records::

    {"object_id": 48, "object_name": "shelf", "ann_id": 0,
     "description": "white moving trolley is in between of white door and grey sofa ",
     "token": ["white", "moving", "trolley", ..., "sofa", ""],
     "entities": [[[0, 1, 2], ["48_shelf"]], [[10, 11], ["5_sofa"]], [[7, 8], ["1_door"]]],
     "primary_key": "1102644611063036", "scene_id": "scene0000_00", "scene_dataset": "ScanNet"}

* ``object_id`` is the target: for ScanNet the aggregation ``objectId`` (the reference reader
  asserts ``segGroup["id"] == segGroup["objectId"]``), i.e. the instance id the ScanNet reader
  assigns, so ids are used as they are, exactly as ScanRefer's.
* ``entities`` pair token indices with the 3D instances the phrase denotes, named
  ``"<object id>_<label>"`` (ARKitScenes: ``"<index>_object"``, boxes in ``gt_boxes``).
* ``scene_dataset`` is one of ScanNet / ScanNet++ / ARKitScenes; absent means ScanNet
  (the reference reader's fallback for ScanEnts3D files); ``frames_used`` (ScanNet++ only) and
  ``gt_boxes`` (ARKitScenes only, N x 3 x 2) are kept in ``meta``.

How a record becomes an :class:`~liftgs.types.Expression`: ``text`` is ``" ".join(token)``
(the reference reader's utterance; in L3DD it equals ``description``), stripped. The
*target entities* are those naming ``object_id``; their instances are the targets
(``target_ids[0] == object_id``, then any other instance the same phrase denotes, e.g. "wash
basin" -> vanity and sink) and their character spans are ``spans`` — the tokens the targets'
masks must match (paper Sec. 3.3, Fig. 2). Instances of the other entities are the
``anchor_ids``. ``meta["entities"]`` keeps every entity (token indices, instance names, spans)
so no anchor span is lost. A span covers one run of consecutive annotated tokens; the
reference reader instead covers first..last token when an entity's tokens are not
consecutive (rare), and empty tokens never start or end a span.

Not confirmed from the repository: whether every file of the full release (train splits,
``all.json``) follows exactly the layout of the validation files read here, and the precise
layout of ScanEnts3D files, which the reference reader also accepts; both are read with the
same rules and any deviation is reported as an error naming the record and field.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, NoReturn

from liftgs.io.errors import DataError, data_error
from liftgs.types import Expression

__all__ = ["read_locate3d", "SCENE_DATASETS"]

SCENE_DATASETS = ("ScanNet", "ScanNet++", "ARKitScenes")
LOCATE3D_KEYS = ("scene_id", "object_id", "token", "entities")  # what the reference reader needs
SCANREFER_HINT = "a ScanRefer file? read it with read_scanrefer (liftgs convert scannet --scanrefer)"


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


class _Record:
    """Field checks of one record; every failure names the file, the record and the field."""

    def __init__(self, path: Path, index: int, row: Any) -> None:
        self.path, self.index = path, index
        if not isinstance(row, dict):
            self.fail("", f"is a {type(row).__name__}, not an object")
        missing = [k for k in LOCATE3D_KEYS if k not in row]
        if missing:
            hint = f" ({SCANREFER_HINT})" if "entities" in missing and "description" in row else ""
            self.fail("", f"lacks {missing}{hint}")
        self.row = row

    def fail(self, field: str, problem: str) -> NoReturn:
        where = f"record {self.index}" + (f": field {field!r}" if field else "")
        raise DataError(f"{where} {problem}", self.path)

    def integer(self, value: Any, field: str) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and _is_digits(value.strip()):
            return int(value)
        self.fail(field, f"is {value!r}, not a non-negative integer")

    def string(self, field: str) -> str:
        value = self.row[field]
        if not isinstance(value, str):
            self.fail(field, f"is not a string (got {type(value).__name__})")
        return value

    def tokens(self) -> list[str]:
        tokens = self.row["token"]
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            self.fail("token", "is not a list of strings")
        if not " ".join(tokens).strip():
            self.fail("token", "holds no words")
        return tokens

    def instance_id(self, name: Any, field: str) -> int:
        if not isinstance(name, str) or not _is_digits(name.split("_", 1)[0]):
            self.fail(field, f"is {name!r}, not '<object id>_<label>'")
        return int(name.split("_", 1)[0])

    def entities(self, num_tokens: int) -> list[tuple[list[int], list[str], list[int]]]:
        """[(token indices, instance names, instance ids)] in file order."""
        entities = self.row["entities"]
        if not isinstance(entities, list):
            self.fail("entities", "is not a list")
        out = []
        for j, entity in enumerate(entities):
            field = f"entities[{j}]"
            if not (isinstance(entity, list) and len(entity) == 2 and all(isinstance(p, list) for p in entity)):
                self.fail(field, "is not a pair [token indices, instances]")
            token_idx = [self.integer(k, f"{field}[0]") for k in entity[0]]
            if not token_idx:
                self.fail(f"{field}[0]", "names no token")
            if max(token_idx) >= num_tokens:
                self.fail(f"{field}[0]", f"has token index {max(token_idx)} but 'token' has {num_tokens} words")
            ids = [self.instance_id(n, f"{field}[1][{k}]") for k, n in enumerate(entity[1])]
            out.append((token_idx, list(entity[1]), ids))
        return out

    def scene_dataset(self) -> str:
        value = self.row.get("scene_dataset", "ScanNet")
        if value not in SCENE_DATASETS:
            self.fail("scene_dataset", f"is {value!r}, not one of {list(SCENE_DATASETS)}")
        return value

    def boxes(self, ids: list[int]) -> list:
        boxes = self.row["gt_boxes"]
        ok = isinstance(boxes, list) and all(
            isinstance(b, list) and len(b) == 3 and all(
                isinstance(r, list) and len(r) == 2 and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in r)
                for r in b) for b in boxes)
        if not ok:
            self.fail("gt_boxes", "is not a list of finite 3 x 2 [min, max] boxes")
        if ids and max(ids) >= len(boxes):
            self.fail("gt_boxes", f"has {len(boxes)} boxes but the entities name object {max(ids)}")
        return boxes


def _word_bounds(tokens: list[str]) -> list[tuple[int, int]]:
    """Char range of each token's non-blank part in ``" ".join(tokens)`` (empty when blank)."""
    bounds, pos = [], 0
    for t in tokens:
        lead = len(t) - len(t.lstrip())
        bounds.append((pos + lead, pos + lead + len(t.strip())))
        pos += len(t) + 1
    return bounds


def _entity_spans(token_idx: list[int], bounds: list[tuple[int, int]], shift: int) -> list[list[int]]:
    """One char span per run of consecutive token indices, blank tokens trimmed from its ends."""
    runs: list[list[int]] = []
    for k in sorted(set(token_idx)):
        if runs and k == runs[-1][-1] + 1:
            runs[-1].append(k)
        else:
            runs.append([k])
    spans = []
    for run in runs:
        words = [i for i in run if bounds[i][1] > bounds[i][0]]
        if words:
            spans.append([bounds[words[0]][0] - shift, bounds[words[-1]][1] - shift])
    return spans


def _unique(values) -> list:
    return list(dict.fromkeys(values))


def _expression(rec: _Record) -> tuple[str, str, Expression]:
    """(scene_id, scene_dataset, Expression) of one validated record."""
    row = rec.row
    scene_id = rec.string("scene_id").strip()
    if not scene_id:
        rec.fail("scene_id", "is empty")
    target = rec.integer(row["object_id"], "object_id")
    tokens = rec.tokens()
    entities = rec.entities(len(tokens))
    dataset = rec.scene_dataset()
    joined = " ".join(tokens)
    shift = len(joined) - len(joined.lstrip())
    text = joined.strip()
    bounds = _word_bounds(tokens)

    is_target = [target in ids for _, _, ids in entities]
    target_ids = _unique([target] + [i for (_, _, ids), t in zip(entities, is_target) if t for i in ids])
    anchor_ids = _unique(i for (_, _, ids), t in zip(entities, is_target) if not t for i in ids
                         if i not in target_ids)
    entity_meta = [{"token_indices": idx, "instances": names, "spans": _entity_spans(idx, bounds, shift)}
                   for idx, names, _ in entities]
    spans = _unique(tuple(s) for e, t in zip(entity_meta, is_target) if t for s in e["spans"])

    meta: dict[str, Any] = {"scene_dataset": dataset, "tokens": list(tokens), "entities": entity_meta}
    if "object_name" in row:
        meta["object_name"] = rec.string("object_name")
    if "ann_id" in row:
        meta["ann_id"] = rec.integer(row["ann_id"], "ann_id")
    if "description" in row and rec.string("description").strip() != text:
        meta["description"] = row["description"]  # kept when it is not the joined tokens
    if "frames_used" in row:
        if not isinstance(row["frames_used"], list):
            rec.fail("frames_used", "is not a list of frame indices")
        meta["frames_used"] = [rec.integer(f, "frames_used") for f in row["frames_used"]]
    if "gt_boxes" in row:
        meta["gt_boxes"] = rec.boxes(target_ids + anchor_ids)
    key = row.get("primary_key")  # unique across the whole dataset
    if key is None:
        ann_id = f"{target}_{meta.get('ann_id', rec.index)}"
    else:
        ann_id = key if isinstance(key, str) else str(rec.integer(key, "primary_key"))
    expr = Expression(text=text, target_ids=target_ids, spans=spans, anchor_ids=anchor_ids, source="locate3d",
                      ann_id=ann_id, meta=meta)
    return scene_id, dataset, expr


def read_locate3d(path: str | Path, scene_dataset: str | None = None) -> dict[str, list[Expression]]:
    """Locate 3D (L3DD) JSON -> {scene_id: [Expression(source="locate3d")]}.

    Every record is validated, whatever its dataset; ``scene_dataset`` ("ScanNet",
    "ScanNet++", "ARKitScenes") then keeps only that dataset's records, since scene ids are
    only unique within one dataset.
    """
    path = Path(path)
    if scene_dataset is not None and scene_dataset not in SCENE_DATASETS:
        raise ValueError(f"scene_dataset must be one of {list(SCENE_DATASETS)}, got {scene_dataset!r}")
    if not path.is_file():
        raise DataError("Locate 3D file is missing", path)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise data_error(path, "cannot parse Locate 3D JSON (truncated or corrupt? Sr3d / Nr3d CSVs go to "
                               "read_referit3d)", exc) from exc
    if not isinstance(rows, list):
        raise DataError(f"Locate 3D JSON must be a list of records, got a {type(rows).__name__}", path)
    out: dict[str, list[Expression]] = defaultdict(list)
    for i, row in enumerate(rows):
        scene_id, dataset, expr = _expression(_Record(path, i, row))
        if scene_dataset is None or dataset == scene_dataset:
            out[scene_id].append(expr)
    return dict(out)
