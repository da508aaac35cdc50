"""Referring-expression annotations: ScanRefer JSON, Multi3DRefer JSON and ReferIt3D (Sr3d / Nr3d) CSV.

Multi3DRefer (``multi3drefer_{train,val}.json``) has ScanRefer's keys plus ``object_ids``, the
list of every target (empty: the description matches nothing in the scene), and ``eval_type``,
its query type: zero, single or multiple targets, with or without a distractor of the same
class (``zt_wo_d``, ``zt_w_d``, ``st_wo_d``, ``st_w_d``, ``mt``); the ScanRefer reader refuses
such a file rather than keep only one target.

Locate 3D (L3DD) JSON shares ScanRefer's keys but adds grounded phrases, so it has its own
reader (:mod:`liftgs.io.locate3d`); each reader refuses the other's files rather than
silently dropping anchors, extra targets and spans.

Both index objects by the ScanNet aggregation ``objectId``, which is the instance id the
ScanNet reader assigns, so expressions attach to converted scenes directly. The target span
(the tokens the target mask must match, paper Fig. 2 / Sec 3.3) is the first mention of the
target's category name in the text when one is found, else no span.
"""

from __future__ import annotations

import ast
import csv
import json
import re
from collections import defaultdict
from pathlib import Path

from liftgs.io.errors import DataError, data_error
from liftgs.io.locate3d import read_locate3d
from liftgs.types import Expression, Scene

__all__ = ["read_scanrefer", "read_multi3drefer", "read_referit3d", "read_locate3d", "find_mention",
           "attach_expressions", "MULTI3DREFER_TYPES"]

SCANREFER_KEYS = ("scene_id", "object_id", "object_name", "ann_id", "description")
SR3D_KEYS = ("scan_id", "target_id", "utterance", "stimulus_id", "reference_type", "anchor_ids")
NR3D_KEYS = ("scan_id", "target_id", "utterance", "stimulus_id")
# Fields of Locate 3D / ScanEnts3D records (phrase groundings, dataset, boxes) ScanRefer has not.
LOCATE3D_ONLY_KEYS = ("entities", "scene_dataset", "primary_key", "frames_used", "gt_boxes")
MULTI3DREFER_KEYS = ("scene_id", "object_ids", "ann_id", "description", "eval_type")
MULTI3DREFER_ONLY_KEYS = ("object_ids", "eval_type")
MULTI3DREFER_TYPES = {"zt_wo_d": 0, "zt_w_d": 0, "st_wo_d": 1, "st_w_d": 1, "mt": 2}  # type -> 0 / 1 / 2+ targets
OTHER_READERS = ("Locate 3D JSON goes to read_locate3d (--locate3d), Multi3DRefer JSON to read_multi3drefer "
                 "(--multi3drefer), Sr3d / Nr3d CSV to read_referit3d (--referit3d)")


def find_mention(text: str, name: str) -> tuple[int, int] | None:
    """Char span of the first whole-word mention of ``name`` (underscores = spaces, any case,
    an optional plural ``s``/``es`` not included); None when the text never names it."""
    words = name.replace("_", " ").strip().split()
    if not words:
        return None
    pattern = r"\b" + r"\s+".join(re.escape(w) for w in words) + r"(?=(?:e?s)?\b)"
    m = re.search(pattern, text, flags=re.IGNORECASE)
    return (m.start(), m.end()) if m else None


def _spans(text: str, name: str) -> list[tuple[int, int]]:
    span = find_mention(text, name)
    return [span] if span is not None else []


def _annotation_list(path: Path, what: str, hint: str = "") -> list:
    """The JSON list of annotations in ``path`` (``what`` names the dataset in errors, ``hint``
    follows the not-a-list error); a missing file, bad JSON or a non-list is a DataError."""
    if not path.is_file():
        raise DataError(f"{what} file is missing", path)
    try:
        rows = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise data_error(path, f"cannot parse {what} JSON (truncated or corrupt?)", exc) from exc
    if not isinstance(rows, list):
        raise DataError(f"{what} JSON must be a list of annotations, got a {type(rows).__name__}{hint}", path)
    return rows


def read_scanrefer(path: str | Path) -> dict[str, list[Expression]]:
    """ScanRefer ``ScanRefer_filtered_*.json`` -> {scene_id: [Expression(source="scanrefer")]}."""
    path = Path(path)
    rows = _annotation_list(path, "ScanRefer", f" (not a ScanRefer file? {OTHER_READERS})")
    out: dict[str, list[Expression]] = defaultdict(list)
    for i, row in enumerate(rows):
        missing = [k for k in SCANREFER_KEYS if not isinstance(row, dict) or k not in row]
        if missing:
            raise DataError(f"annotation {i} lacks {missing} (not a ScanRefer file? {OTHER_READERS})", path)
        extra = [k for k in LOCATE3D_ONLY_KEYS if k in row]
        if extra:
            raise DataError(f"annotation {i} has Locate 3D field {extra[0]!r}, which the ScanRefer reader "
                            "would drop: read this file with read_locate3d (liftgs convert scannet --locate3d)",
                            path)
        extra = [k for k in MULTI3DREFER_ONLY_KEYS if k in row]
        if extra:
            raise DataError(f"annotation {i} has Multi3DRefer field {extra[0]!r}, which the ScanRefer reader "
                            "would drop: read this file with read_multi3drefer (liftgs convert scannet "
                            "--multi3drefer)", path)
        text = str(row["description"]).strip()
        name = str(row["object_name"])
        try:
            target = int(row["object_id"])
        except (TypeError, ValueError) as exc:
            raise data_error(path, f"annotation {i}: object_id is not an integer", exc) from exc
        meta = {"object_name": name.replace("_", " ")}
        if "token" in row:
            meta["tokens"] = list(row["token"])
        out[str(row["scene_id"])].append(Expression(
            text=text, target_ids=[target], spans=_spans(text, name), source="scanrefer",
            ann_id=f"{row['object_id']}_{row['ann_id']}", meta=meta))
    return dict(out)


def read_multi3drefer(path: str | Path) -> dict[str, list[Expression]]:
    """Multi3DRefer ``multi3drefer_*.json`` -> {scene_id: [Expression(source="multi3drefer")]}:
    ``target_ids`` every id of ``object_ids`` (possibly none), ``meta["eval_type"]`` the query
    type, checked against the number of targets; the span is the first mention of
    ``object_name`` when the row has one."""
    path = Path(path)
    rows = _annotation_list(path, "Multi3DRefer")
    out: dict[str, list[Expression]] = defaultdict(list)
    for i, row in enumerate(rows):
        missing = [k for k in MULTI3DREFER_KEYS if not isinstance(row, dict) or k not in row]
        if missing:
            raise DataError(f"annotation {i} lacks {missing} (not a Multi3DRefer file? {OTHER_READERS})", path)
        ids = row["object_ids"]
        if not isinstance(ids, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
            raise DataError(f"annotation {i}: field 'object_ids' must be a list of integers, got {ids!r}", path)
        kind = row["eval_type"]
        if kind not in MULTI3DREFER_TYPES:
            raise DataError(f"annotation {i}: field 'eval_type' is {kind!r}, expected one of "
                            f"{sorted(MULTI3DREFER_TYPES)}", path)
        want = MULTI3DREFER_TYPES[kind]
        if min(len(ids), 2) != want:
            raise DataError(f"annotation {i}: field 'eval_type' {kind!r} needs {('no', 'one', 'several')[want]} "
                            f"target(s) but 'object_ids' holds {len(ids)}", path)
        text = str(row["description"]).strip()
        name = str(row.get("object_name", ""))
        meta = {"eval_type": kind}
        if name:
            meta["object_name"] = name.replace("_", " ")
        if "token" in row:
            meta["tokens"] = list(row["token"])
        ann = f"{row['object_id']}_{row['ann_id']}" if "object_id" in row else str(row["ann_id"])
        out[str(row["scene_id"])].append(Expression(
            text=text, target_ids=list(dict.fromkeys(ids)), spans=_spans(text, name) if name and ids else [],
            source="multi3drefer", ann_id=ann, meta=meta))
    return dict(out)


def _literal_list(value: str, path: Path, row: int, key: str) -> list:
    try:
        parsed = ast.literal_eval(value) if value.strip() else []
    except (ValueError, SyntaxError) as exc:
        raise data_error(path, f"row {row}: column {key!r} is not a list literal", exc) from exc
    return list(parsed) if isinstance(parsed, (list, tuple)) else [parsed]


def _flag(value: str) -> bool | str:
    v = str(value).strip()
    return {"true": True, "false": False}.get(v.lower(), v)


def read_referit3d(path: str | Path, source: str | None = None) -> dict[str, list[Expression]]:
    """ReferIt3D ``sr3d*.csv`` / ``nr3d*.csv`` -> {scan_id: [Expression]}. ``source`` ("sr3d" /
    "nr3d") is detected from the columns (Sr3d has ``reference_type`` and ``anchor_ids``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("ReferIt3D CSV is missing", path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            head = fh.read(1024).lstrip()
            fh.seek(0)
            reader = csv.DictReader(fh)
            columns = set(reader.fieldnames or ())
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise data_error(path, "cannot read ReferIt3D CSV (not a UTF-8 CSV file?)", exc) from exc
    if head[:1] in ("[", "{"):
        raise DataError("is JSON, not a ReferIt3D CSV: ScanRefer JSON goes to read_scanrefer (--scanrefer), "
                        "Locate 3D JSON to read_locate3d (--locate3d)", path)
    if source is None:
        source = "sr3d" if {"reference_type", "anchor_ids"} <= columns else "nr3d"
    if source not in ("sr3d", "nr3d"):
        raise ValueError(f"source must be 'sr3d' or 'nr3d', got {source!r}")
    need = SR3D_KEYS if source == "sr3d" else NR3D_KEYS
    missing = [k for k in need if k not in columns]
    if missing:
        has = sorted(repr(c) for c in columns)
        has_text = ", ".join(has[:12]) + (f", ... ({len(has)} columns)" if len(has) > 12 else "")
        raise DataError(f"{source} CSV lacks columns {missing} (has {has_text}; not a ReferIt3D "
                        "sr3d*.csv / nr3d*.csv file?)", path)
    out: dict[str, list[Expression]] = defaultdict(list)
    for i, row in enumerate(rows, start=2):  # line numbers as a spreadsheet shows them
        if None in row or any(row.get(k) is None for k in need):
            raise DataError(f"row {i} has the wrong number of fields (truncated file?)", path)
        text = row["utterance"].strip()
        try:
            target = int(row["target_id"])
        except ValueError as exc:
            raise data_error(path, f"row {i}: target_id is not an integer", exc) from exc
        name = row.get("instance_type", "")
        meta: dict[str, object] = {"stimulus_id": row["stimulus_id"], "instance_type": name}
        anchors: list[int] = []
        relation = ""
        if source == "sr3d":
            anchors = [int(a) for a in _literal_list(row["anchor_ids"], path, i, "anchor_ids")]
            relation = row["reference_type"]
            if "coarse_reference_type" in row:
                meta["coarse_reference_type"] = row["coarse_reference_type"]
            if row.get("distractor_ids"):
                meta["distractor_ids"] = [int(a) for a in _literal_list(row["distractor_ids"], path, i,
                                                                          "distractor_ids")]
        for key in ("mentions_target_class", "correct_guess", "uses_object_lang", "uses_spatial_lang",
                    "uses_color_lang", "uses_shape_lang"):
            if row.get(key) not in (None, ""):
                meta[key] = _flag(row[key])
        ann_id = row.get("assignmentid") or f"{source}-{i}"
        out[row["scan_id"]].append(Expression(
            text=text, target_ids=[target], spans=_spans(text, name) if name else [],
            anchor_ids=anchors, source=source, ann_id=str(ann_id), relation=relation, meta=meta))
    return dict(out)


def attach_expressions(scene: Scene, expressions: list[Expression], where: str | Path = "") -> Scene:
    """Append ``expressions`` to ``scene`` after checking their object ids exist.

    ScanRefer's evaluation split "unique" / "multiple" (is the target the only object of its
    class in the scene?) is stored in ``Expression.meta["eval_type"]``; the class is the
    NYU40 id when the scene carries the label map, else the category.
    """
    if scene.objects:
        for e in expressions:
            unknown = [t for t in e.target_ids + e.anchor_ids if t not in scene.objects]
            if unknown:
                raise DataError(f"{e.source} expression {e.ann_id!r} names objects {unknown} that scene "
                                f"{scene.scene_id} does not have (wrong scan or annotation version?)", where)
        key = {oid: o.attributes.get("nyu40_id", o.category) for oid, o in scene.objects.items()}
        counts: dict[object, int] = defaultdict(int)
        for k in key.values():
            counts[k] += 1
        for e in expressions:
            if e.source == "scanrefer":
                e.meta["eval_type"] = "unique" if counts[key[e.target_ids[0]]] == 1 else "multiple"
    scene.expressions.extend(expressions)
    return scene
