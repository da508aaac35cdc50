"""Questions and answers about the synthetic rooms, from their ``scene.json`` object metadata.

Five question types, each answerable from the room's objects alone and true in its geometry:

* ``counting``  -- "How many chairs are in the room?" -> "two"; only for categories all of
  whose objects are seen (see below);
* ``color``     -- "What color is the sofa?" -> "purple"; only for categories with one object in
  the room (a plant's colour is its pot's: "What color is the pot of the plant?");
* ``existence`` -- "Is there a lamp in the room?" -> "yes" / "no"; as many "no" questions (a
  catalogue category with no object in the room) as "yes" questions in every room;
* ``size``      -- "Is the table big or small?" -> "big" / "small"; one-object categories whose
  size label (relative to the category, :func:`liftgs.synth.catalog.size_label`) is large or
  small, never medium;
* ``relation``  -- "What is on the table?", "What is under the table?", "What is next to the
  bed?" -> the categories of the objects in that relation to the anchor, each a reference
  answer. The relations are those of the referring expressions
  (:func:`liftgs.synth.language.relation_holds`: ``on`` = resting on the anchor, ``under`` = on
  the floor below a table's top with >= 70 % of its footprint inside the table's, ``next to`` =
  horizontal gap <= 0.3 m on the same support), the anchor is named so that it is unique in the
  room ("the table" / "the red table", :func:`~liftgs.synth.language.anchor_phrase`), and a
  question is dropped when an object of another category could be read as being in the relation
  (the loose thresholds of the expressions: ``under`` >= 20 %, ``next to`` <= 0.8 m whatever the
  support). Objects resting on the anchor, carrying it or standing partly below it (or it below
  them) are "on" or "under" it, never "next to" it.

An object is *seen* when at least ``MIN_POINTS_FOR_LANGUAGE`` fused points carry its id (the
rule of the referring expressions); a question never asks about or answers with an object that
is not, and never counts a category one of whose objects is not.

Everything is a pure function of the scene files and ``seed``: room ``scene_id`` draws from
``SeedSequence([seed, crc32(scene_id)])``, so adding rooms never changes the questions of the
others. Each room gets up to ``per_type`` questions of each type (existence: ``per_type // 2``
"yes" and as many "no"). The split of a room is its split in the dataset's ``splits.json``,
else a seeded 80/20 train/val split of the room ids (:func:`liftgs.synth.dataset.make_splits`).
The question ids are ``<split>-<scene_id>-<n>`` as in ScanQA.
"""

from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from liftgs.io.errors import DataError, DataWarning
from liftgs.synth.catalog import CATEGORIES
from liftgs.synth.generate import MIN_POINTS_FOR_LANGUAGE
from liftgs.synth.language import anchor_phrase, relation_holds, under_fraction
from liftgs.vqa.data import QAItem

__all__ = ["QUESTION_TYPES", "RELATIONS", "SceneObject", "scene_objects", "scene_questions", "generate_qa",
           "number_word", "plural"]

QUESTION_TYPES = ("counting", "color", "existence", "size", "relation")
RELATIONS = ("on", "under", "next to")
SIZES = ("small", "medium", "large")
_NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
            "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]


def number_word(n: int) -> str:
    """0..20 as a word ("two"), larger numbers as digits (the form LEO's normalisation gives)."""
    return _NUMBERS[n] if 0 <= n < len(_NUMBERS) else str(n)


def plural(noun: str) -> str:
    """English plural of a catalogue noun ("box" -> "boxes", "shelf" -> "shelves", "trash can" -> "trash cans")."""
    if noun.endswith("shelf"):
        return noun[:-1] + "ves"
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    return noun + "s"


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


@dataclass
class SceneObject:
    """The parts of an object's metadata the questions use (duck-types the layout's
    ``PlacedObject`` for :mod:`liftgs.synth.language`)."""

    id: int
    category: str
    color: str
    size: str
    aabb: np.ndarray  # [6] min xyz, max xyz
    support: int  # id of the object it rests on, -1 = the floor
    num_points: int

    @property
    def center(self) -> np.ndarray:
        return (self.aabb[:3] + self.aabb[3:]) / 2

    @property
    def seen(self) -> bool:
        return self.num_points >= MIN_POINTS_FOR_LANGUAGE


def scene_objects(doc: dict[str, Any], path: Path) -> list[SceneObject]:
    """The objects of a synthetic room's parsed ``scene.json`` (``path``, for errors), checked."""
    meta = doc.get("meta")
    source = meta.get("source") if isinstance(meta, dict) else None
    if source != "synthetic":
        raise DataError(f"meta.source is {source!r}, not 'synthetic': questions are generated for rooms made by "
                        "`liftgs synth`", path)
    if not isinstance(doc.get("objects"), list):
        raise DataError("objects must be a list", path)
    out = []
    for i, o in enumerate(doc["objects"]):
        where = f"objects[{i}]"
        if not isinstance(o, dict):
            raise DataError(f"{where} must be an object", path)
        if not isinstance(o.get("id"), int) or isinstance(o.get("id"), bool):
            raise DataError(f"{where}.id must be an integer, got {o.get('id')!r}", path)
        if not isinstance(o.get("category"), str) or not o["category"].strip():
            raise DataError(f"{where}.category must be a non-empty string, got {o.get('category')!r}", path)
        attrs = o.get("attributes")
        if not isinstance(attrs, dict):
            raise DataError(f"{where}.attributes must be an object", path)
        for key in ("color", "size"):
            if not isinstance(attrs.get(key), str) or not attrs[key]:
                raise DataError(f"{where}.attributes.{key} must be a non-empty string, got {attrs.get(key)!r}", path)
        if attrs["size"] not in SIZES:
            raise DataError(f"{where}.attributes.size must be one of {SIZES}, got {attrs['size']!r}", path)
        box = attrs.get("box")
        if (not isinstance(box, list) or len(box) != 6
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)
                or any(box[k] > box[k + 3] for k in range(3))):
            raise DataError(f"{where}.attributes.box must be 6 finite numbers (min xyz, max xyz), got {box!r}", path)
        for key in ("support", "num_points"):
            if not isinstance(attrs.get(key), int) or isinstance(attrs.get(key), bool):
                raise DataError(f"{where}.attributes.{key} must be an integer, got {attrs.get(key)!r}", path)
        out.append(SceneObject(o["id"], o["category"], attrs["color"], attrs["size"],
                               np.asarray(box, dtype=np.float64), attrs["support"], attrs["num_points"]))
    ids = [o.id for o in out]
    if len(set(ids)) != len(ids):
        raise DataError(f"objects[*].id repeats an id ({sorted(i for i in set(ids) if ids.count(i) > 1)[0]})", path)
    return out


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _stacked(t: SceneObject, a: SceneObject) -> bool:
    """Does one of the two rest on the other or stand (partly) below it? Then it is "on" or
    "under" the other, never "next to" it."""
    return (t.support == a.id or a.support == t.id
            or under_fraction(t.aabb, a.aabb) > 0 or under_fraction(a.aabb, t.aabb) > 0)


def _relation_candidates(objects: list[SceneObject]) -> list[tuple[str, str, list[int], list[str]]]:
    """(relation, anchor phrase, object ids [anchor, targets...], answer categories) of every
    true, unambiguous relation question of the room."""
    out = []
    for a in objects:
        name = anchor_phrase(a, objects) if a.seen else None
        if name is None:
            continue
        others = [t for t in objects if t.id != a.id and t.category != a.category]
        for rel in RELATIONS:
            if rel == "under" and a.category != "table":
                continue
            pool = [t for t in others if not _stacked(t, a)] if rel == "next to" else others
            strict = [t for t in pool if relation_holds(rel, t, [a])]
            if not strict or not all(t.seen for t in strict):
                continue
            answers = sorted({t.category for t in strict})
            loose = [t for t in pool if relation_holds(rel, t, [a], loose=True)]
            if any(t.category not in answers for t in loose):
                continue
            out.append((rel, name, [a.id] + [t.id for t in strict], answers))
    return out


def _pick(rng: np.random.Generator, candidates: list, k: int) -> list:
    """Up to ``k`` of ``candidates`` (kept in their order), drawn by ``rng``."""
    if len(candidates) <= k:
        return list(candidates)
    return [candidates[i] for i in sorted(rng.choice(len(candidates), size=k, replace=False))]


def scene_questions(scene_id: str, objects: list[SceneObject], seed: int = 0, per_type: int = 4,
                    split: str = "") -> list[QAItem]:
    """The questions of one room (see the module docstring)."""
    if per_type < 1:
        raise ValueError(f"per_type must be >= 1, got {per_type}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(scene_id.encode())]))
    by_cat: dict[str, list[SceneObject]] = {}
    for o in objects:
        by_cat.setdefault(o.category, []).append(o)
    cats = sorted(by_cat)
    single = [by_cat[c][0] for c in cats if len(by_cat[c]) == 1 and by_cat[c][0].seen]
    qs: list[tuple[str, str, list[str], list[int]]] = []  # type, question, answers, object ids

    for c in _pick(rng, [c for c in cats if all(o.seen for o in by_cat[c])], per_type):
        qs.append(("counting", f"How many {plural(c)} are in the room?", [number_word(len(by_cat[c]))],
                   [o.id for o in by_cat[c]]))
    for o in _pick(rng, single, per_type):
        text = "What color is the pot of the plant?" if o.category == "plant" else f"What color is the {o.category}?"
        qs.append(("color", text, [o.color], [o.id]))
    present = [c for c in cats if any(o.seen for o in by_cat[c])]
    absent = [c for c in CATEGORIES if c not in by_cat]
    n = min(len(present), len(absent), max(1, per_type // 2))
    existence = [(c, "yes") for c in _pick(rng, present, n)] + [(c, "no") for c in _pick(rng, absent, n)]
    for i in rng.permutation(len(existence)):
        c, ans = existence[int(i)]
        ids = [o.id for o in by_cat.get(c, []) if o.seen]
        qs.append(("existence", f"Is there {_article(c)} {c} in the room?", [ans], ids))
    for o in _pick(rng, [o for o in single if o.size != "medium"], per_type):
        qs.append(("size", f"Is the {o.category} big or small?", ["big" if o.size == "large" else "small"], [o.id]))
    for rel, name, ids, answers in _pick(rng, _relation_candidates(objects), per_type):
        qs.append(("relation", f"What is {rel} the {name}?", answers, ids))

    names = {o.id: o.category for o in objects}
    prefix = f"{split}-{scene_id}" if split else scene_id
    return [QAItem(question_id=f"{prefix}-{k}", scene_id=scene_id, question=_capital(text), answers=answers,
                   question_type=qtype, object_ids=ids, object_names=[names[i] for i in ids], split=split)
            for k, (qtype, text, answers, ids) in enumerate(qs)]


def _scene_splits(root: Path, ids: list[str], seed: int) -> dict[str, str]:
    """{scene id: split} from ``splits.json``, else a seeded 80/20 train/val split."""
    from liftgs.io.scene_dir import SPLITS_JSON, read_splits
    from liftgs.synth.dataset import make_splits

    if (root / SPLITS_JSON).is_file():
        splits = read_splits(root)
    else:
        splits = make_splits(ids, 0.2, seed)
    out: dict[str, str] = {}
    for name, members in splits.items():
        for sid in members:
            if sid in out and out[sid] != name:
                raise DataError(f"scene {sid!r} is in the splits {out[sid]!r} and {name!r}", root / SPLITS_JSON)
            if sid not in ids:
                raise DataError(f"split {name!r} lists scene {sid!r}, which has no scene.json under {root}",
                                root / SPLITS_JSON)
            out[sid] = name
    return out


def generate_qa(data: str | Path, seed: int = 0, per_type: int = 4, progress: bool = False) -> list[QAItem]:
    """Questions about every room of the dataset root ``data`` (scene folders, optional
    ``splits.json``), room by room in scene-id order. Reads only the ``scene.json`` files."""
    from tqdm import tqdm

    from liftgs.io.scene_dir import SCENE_JSON, list_scenes, read_scene_json

    root = Path(data)
    if per_type < 1:
        raise ValueError(f"per_type must be >= 1, got {per_type}")
    scenes = list_scenes(root)  # a missing folder is a DataError
    if not scenes:
        raise DataError("no scene folders (with a scene.json) in the dataset root", root)
    docs = {}
    for p in scenes:  # check every room before generating anything
        doc = read_scene_json(p)
        docs[p.name] = (doc, scene_objects(doc, p / SCENE_JSON))
    split_of = _scene_splits(root, sorted(docs), seed)
    left_out = [sid for sid in docs if sid not in split_of]
    if left_out:
        warnings.warn(f"{len(left_out)} rooms are in no split of {root / 'splits.json'} and get no questions "
                      f"(first: {left_out[0]})", DataWarning, stacklevel=2)
    items: list[QAItem] = []
    for sid in tqdm(sorted(split_of), desc="synth-qa rooms", unit="room", disable=not progress):
        doc, objects = docs[sid]
        items += scene_questions(str(doc["scene_id"]), objects, seed=seed, per_type=per_type, split=split_of[sid])
    return items
