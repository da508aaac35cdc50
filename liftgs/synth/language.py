"""Captions and Sr3d-style referring expressions that are true in the generated geometry.

Relations (computed on the objects' axis-aligned boxes, all distances in metres):

* ``on``        -- the target rests on the anchor (the support recorded by the layout);
* ``under``     -- the target stands on the floor below a table's top, >= 70% of its footprint
                   inside the table's footprint;
* ``next to``   -- horizontal gap between the two boxes <= 0.3 m, both on the same support;
* ``between``   -- the target's centre projects onto the segment between two anchors' centres
                   (20-80% along it) within 0.35 m of it (horizontal plane);
* ``closest`` / ``farthest`` -- extreme 3D distance between box centres among the objects of
                   the target's category, with a margin (>= 0.3 m and 20%) over the runner-up;
* ``largest`` / ``smallest`` -- extreme box volume among the objects of the target's category,
                   with a 30% margin.

Every expression is unambiguous: no other object of the target's category satisfies the
relation even with loosened thresholds, and each anchor is named so that it is unique in the
room ("the table" or "the red table"). As in Sr3d (ReferIt3D), expressions whose target has
same-category distractors are preferred. ``Expression.spans`` marks the target's category
noun (e.g. "trash can").
"""

from __future__ import annotations

import numpy as np

from liftgs.synth.layout import PlacedObject
from liftgs.types import Expression

TEMPLATES: dict[str, list[str]] = {
    "on": ["the {T} on the {A}", "the {T} that is on top of the {A}", "the {T} resting on the {A}"],
    "under": ["the {T} under the {A}", "the {T} that is below the {A}"],
    "next to": ["the {T} next to the {A}", "the {T} beside the {A}", "the {T} that is close by the {A}"],
    "between": ["the {T} between the {A} and the {B}", "the {T} that is in between the {A} and the {B}"],
    "closest": ["the {T} closest to the {A}", "the {T} that is nearest to the {A}"],
    "farthest": ["the {T} farthest from the {A}", "the {T} that is furthest away from the {A}"],
    "largest": ["the largest {T}", "the biggest {T}"],
    "smallest": ["the smallest {T}", "the tiniest {T}"],
}


def caption(obj: PlacedObject) -> str:
    """Short object caption, e.g. "a red chair" (plants: the colour is the pot's)."""
    if obj.category == "plant":
        return f"a plant in {_article(obj.color)} {obj.color} pot"
    return f"{_article(obj.color)} {obj.color} {obj.category}"


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def footprint_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Horizontal distance between two boxes [6] (0 when their footprints touch or overlap)."""
    gx = max(0.0, a[0] - b[3], b[0] - a[3])
    gy = max(0.0, a[1] - b[4], b[1] - a[4])
    return float(np.hypot(gx, gy))


def under_fraction(t: np.ndarray, a: np.ndarray) -> float:
    """Share of box ``t``'s footprint inside box ``a``'s footprint, 0 unless ``t`` is below ``a``'s top."""
    if t[5] > a[5] - 0.03:
        return 0.0
    ox = max(0.0, min(t[3], a[3]) - max(t[0], a[0]))
    oy = max(0.0, min(t[4], a[4]) - max(t[1], a[1]))
    return float(ox * oy / max((t[3] - t[0]) * (t[4] - t[1]), 1e-12))


def between_coords(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(fraction along a->b, distance from the segment's line, |ab|) of centre ``t`` (horizontal)."""
    ab = b[:2] - a[:2]
    L = float(np.linalg.norm(ab))
    at = t[:2] - a[:2]
    u = float(at @ ab) / max(L * L, 1e-12)
    perp = abs(float(ab[0] * at[1] - ab[1] * at[0])) / max(L, 1e-12)
    return u, perp, L


def anchor_phrase(a: PlacedObject, objects: list[PlacedObject]) -> str | None:
    """A name unique in the room: "table", "red table", or None."""
    same = [o for o in objects if o.category == a.category]
    if len(same) == 1:
        return a.category
    if sum(o.color == a.color for o in same) == 1:
        return f"{a.color} {a.category}"
    return None


def _holds(relation: str, t: PlacedObject, anchors: list[PlacedObject], loose: bool) -> bool:
    """Does ``relation`` hold for ``t`` (strict thresholds), or could it be read as holding (loose)?"""
    a = anchors[0] if anchors else None
    if relation == "on":
        return t.support == a.id
    if relation == "under":
        return under_fraction(t.aabb, a.aabb) >= (0.2 if loose else 0.7)
    if relation == "next to":
        gap = footprint_gap(t.aabb, a.aabb)
        return gap <= 0.8 if loose else (gap <= 0.3 and t.support == a.support)
    if relation == "between":
        u, perp, L = between_coords(t.center, a.center, anchors[1].center)
        if loose:
            return 0.05 <= u <= 0.95 and perp <= 0.7
        return 0.2 <= u <= 0.8 and perp <= 0.35 and 0.8 <= L <= 5.0
    raise ValueError(relation)


def relation_holds(relation: str, target: PlacedObject, anchors: list[PlacedObject], loose: bool = False) -> bool:
    """Does ``relation`` (on / under / next to / between) hold for ``target`` and ``anchors`` with the
    thresholds above, or (``loose``) could it be read as holding? Objects need ``id``, ``support``,
    ``aabb`` and ``center`` (the question generator of :mod:`liftgs.vqa.synth` passes light stand-ins)."""
    return _holds(relation, target, anchors, loose)


def _superlative(relation: str, t: PlacedObject, anchors: list[PlacedObject], same: list[PlacedObject]) -> bool:
    """True if ``t`` is the clear extreme of ``same`` (which includes ``t``) for the relation."""
    if relation in ("closest", "farthest"):
        score = {o.id: float(np.linalg.norm(o.center - anchors[0].center)) for o in same}
    else:
        score = {o.id: o.volume for o in same}
    mine, rest = score[t.id], [v for k, v in score.items() if k != t.id]
    if relation == "largest":
        return mine >= 1.3 * max(rest)
    if relation == "smallest":
        return 1.3 * mine <= min(rest)
    if relation == "closest":
        return mine + 0.3 <= min(rest) and 1.2 * mine <= min(rest)
    return mine - 0.3 >= max(rest) and mine >= 1.2 * max(rest)  # farthest


def _compose(template: str, target: str, names: dict[str, str]) -> tuple[str, tuple[int, int]]:
    """Fill a template and return the text and the character span of the target noun."""
    head, tail = template.split("{T}")
    start = len(head.format(**names))
    text = head.format(**names) + target + tail.format(**names)
    return text, (start, start + len(target))


def candidate_relations(t: PlacedObject, objects: list[PlacedObject], eligible: set[int]):
    """Yield (relation, anchors) that are true for ``t`` and single it out among its category."""
    same = [o for o in objects if o.category == t.category]
    peers = [o for o in same if o.id != t.id]
    pool = [o for o in objects if o.id in eligible and o.category != t.category and anchor_phrase(o, objects)]
    for rel in ("largest", "smallest"):
        if peers and _superlative(rel, t, [], same):
            yield rel, []
    for a in pool:
        for rel in ("on", "under", "next to"):
            if rel == "under" and a.category != "table":
                continue
            if _holds(rel, t, [a], loose=False) and not any(_holds(rel, p, [a], loose=True) for p in peers):
                yield rel, [a]
        for rel in ("closest", "farthest"):
            if peers and _superlative(rel, t, [a], same):
                yield rel, [a]
    for i, a in enumerate(pool):
        for b in pool[i + 1:]:
            if a.category == b.category:
                continue
            if _holds("between", t, [a, b], loose=False) and not any(
                    _holds("between", p, [a, b], loose=True) for p in peers):
                yield "between", [a, b]


def referring_expressions(objects: list[PlacedObject], rng: np.random.Generator, eligible: set[int],
                          max_expressions: int) -> list[Expression]:
    """Up to ``max_expressions`` true, unambiguous expressions, balanced over relations.

    ``eligible`` holds the ids of objects seen well enough to be targets or anchors.
    """
    by_relation: dict[str, list[tuple[int, Expression]]] = {}
    for t in objects:
        if t.id not in eligible:
            continue
        n_peers = sum(o.category == t.category for o in objects) - 1
        has_peers = n_peers > 0
        for rel, anchors in candidate_relations(t, objects, eligible):
            names = {k: anchor_phrase(a, objects) for k, a in zip("AB", anchors)}
            template = TEMPLATES[rel][int(rng.integers(len(TEMPLATES[rel])))]
            text, span = _compose(template, t.category, names)
            expr = Expression(text=text, target_ids=[t.id], spans=[span], anchor_ids=[a.id for a in anchors],
                              source="synthetic", relation=rel, meta={"num_distractors": n_peers})
            by_relation.setdefault(rel, []).append((0 if has_peers else 1, expr))
    queues = []
    for rel in sorted(by_relation):
        items = by_relation[rel]
        order = rng.permutation(len(items))
        queues.append(sorted((items[i] for i in order), key=lambda x: x[0]))
    queues = [queues[i] for i in rng.permutation(len(queues))] if queues else []
    out: list[Expression] = []
    while len(out) < max_expressions and any(queues):
        for q in queues:
            if q and len(out) < max_expressions:
                out.append(q.pop(0)[1])
    for i, e in enumerate(out):
        e.ann_id = str(i)
    return out
