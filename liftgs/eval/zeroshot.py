"""Zero-shot grounding by object caption, and the random-object baseline it must beat.

After pre-training on 2D pseudo-labels alone, a phrase's pooled text vector is fed as one query
token (exactly like a pseudo-query, paper Sec 3.4 and appendix A.1) and the top-ranked mask is
taken as the answer. Each object of a scene is queried by its caption ("a red chair"); a query
is correct when the box of the top mask overlaps the object's box with IoU >= threshold
(Acc@0.25 / Acc@0.5, as for referential grounding). The baseline picks a random object of the
room: its expected accuracy is the share of the room's objects whose box overlaps the target's
box that well (1 / number of objects, plus any overlapping neighbours).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from liftgs.eval.grounding import THRESHOLDS, ReferQuery, grounding_accuracy, mask_box
from liftgs.geometry import box_iou
from liftgs.types import Scene

__all__ = ["CaptionQuery", "caption_queries", "random_expression_accuracy", "zero_shot_caption_accuracy"]


@dataclass
class CaptionQuery:
    text: str
    target_id: int


def caption_queries(scene: Scene, min_points: int = 1) -> list[CaptionQuery]:
    """One query per object with a caption (``attributes["caption"]``, else its category)."""
    if scene.instance_ids is None:
        raise ValueError(f"scene {scene.scene_id} has no per-point instance ids: cannot score captions")
    out = []
    for oid, obj in sorted(scene.objects.items()):
        if int((scene.instance_ids == oid).sum()) < min_points:
            continue
        text = str(obj.attributes.get("caption") or obj.category)
        out.append(CaptionQuery(text, int(oid)))
    return out


def _boxes(scene: Scene, ids: Iterable[int]) -> dict[int, np.ndarray]:
    return {i: mask_box(scene.points, scene.instance_ids == i) for i in ids}


def random_object_accuracy(boxes: dict[int, np.ndarray], target: int, threshold: float) -> float:
    """Expected accuracy of answering with a uniformly random object of the room."""
    hits = [box_iou(b, boxes[target]) >= threshold for b in boxes.values()]
    return float(np.mean(hits))


def zero_shot_caption_accuracy(scenes: Iterable[Scene], grounder, min_points: int = 20,
                               thresholds: Sequence[float] = THRESHOLDS) -> dict[str, dict[str, float]]:
    """{"model": grounding_accuracy table, "random": {"acc@t": ...}} over every object caption.

    ``grounder.phrases(scene, texts)`` returns ranked ``(masks [k, P], scores [k])`` per text
    (:class:`liftgs.eval.runner.ModelGrounder` does, with the zero-shot pooled-query mode).
    """
    queries: list[ReferQuery] = []
    random_hits = {t: [] for t in thresholds}
    for scene in scenes:
        items = caption_queries(scene, min_points)
        if not items:
            continue
        boxes = _boxes(scene, [q.target_id for q in items])
        ranked = grounder.phrases(scene, [q.text for q in items])
        for q, (masks, _) in zip(items, ranked):
            pred = mask_box(scene.points, masks[0]) if len(masks) else None
            queries.append(ReferQuery(pred, boxes[q.target_id], None))
            for t in thresholds:
                random_hits[t].append(random_object_accuracy(boxes, q.target_id, t))
    model = grounding_accuracy(queries, thresholds)["overall"]
    random = {f"acc@{t:g}": (float(np.mean(v)) if v else float("nan")) for t, v in random_hits.items()}
    random["n"] = len(queries)
    return {"model": model, "random": random}


def random_expression_accuracy(scenes: Iterable[Scene], min_points: int = 20,
                               thresholds: Sequence[float] = THRESHOLDS) -> dict[str, float]:
    """Expected Acc@IoU of answering each referring expression (first target) with a uniformly
    random object of its room (objects with ``min_points`` points or more): the baseline a
    grounding model must beat."""
    hits = {t: [] for t in thresholds}
    for scene in scenes:
        if scene.instance_ids is None:
            continue
        ids, counts = np.unique(scene.instance_ids[scene.instance_ids >= 0], return_counts=True)
        present = [int(i) for i, c in zip(ids, counts) if c >= min_points]
        exprs = [e for e in scene.expressions if e.target_ids and e.target_ids[0] in present]
        if not exprs:
            continue
        boxes = _boxes(scene, present)
        for e in exprs:
            for t in thresholds:
                hits[t].append(random_object_accuracy(boxes, e.target_ids[0], t))
    out = {f"acc@{t:g}": (float(np.mean(v)) if v else float("nan")) for t, v in hits.items()}
    out["n"] = len(next(iter(hits.values()))) if hits else 0
    return out
