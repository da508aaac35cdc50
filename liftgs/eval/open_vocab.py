"""The open-vocabulary instance-segmentation protocol.

Every category name of the vocabulary is a text query; the model returns scored masks per query
and each mask is labelled with the query's class (LIFT-GS Sec 4.1, as in OpenMask3D-style
open-vocabulary evaluation). The model is reached through a plain callable so that any method
- ours, a baseline, a fake in tests - can be scored by the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from liftgs.eval.instance_ap import ClassSet, InstancePrediction
from liftgs.eval.scannet_format import gt_ids_from_instances
from liftgs.types import Scene

__all__ = ["Predictor", "predict_instances", "scene_gt_ids", "vocabulary_of"]

# predict(category_names) -> [(mask [P] bool, index into category_names, score)]
Predictor = Callable[[list[str]], list[tuple[np.ndarray, int, float]]]


def predict_instances(num_points: int, category_names: Sequence[str], label_ids: Sequence[int],
                      predict: Predictor) -> list[InstancePrediction]:
    """Run ``predict`` on the vocabulary and turn its output into benchmark predictions.

    ``label_ids[i]`` is the benchmark label id of ``category_names[i]``. Masks must cover the
    scene's ``num_points`` points; errors name the offending prediction.
    """
    names = list(category_names)
    if len(names) != len(label_ids):
        raise ValueError(f"{len(names)} category names but {len(label_ids)} label ids")
    out = []
    for k, item in enumerate(predict(names)):
        if len(item) != 3:
            raise ValueError(f"predictor output {k}: expected (mask, label index, score), got {len(item)} values")
        mask, index, score = item
        mask = np.asarray(mask).reshape(-1)
        if mask.shape[0] != num_points:
            raise ValueError(f"predictor output {k}: mask has {mask.shape[0]} values for {num_points} points")
        index = int(index)
        if not 0 <= index < len(names):
            raise ValueError(f"predictor output {k}: label index {index} outside 0..{len(names) - 1}")
        out.append(InstancePrediction(mask=mask != 0, label_id=int(label_ids[index]), score=float(score),
                                      name=f"{names[index]}#{k}"))
    return out


def vocabulary_of(scenes: Sequence[Scene]) -> ClassSet:
    """A class set from every object category of ``scenes`` (sorted, ids 1..K)."""
    cats = sorted({obj.category for s in scenes for obj in s.objects.values()})
    if not cats:
        raise ValueError("no object categories in the given scenes: nothing to evaluate")
    return ClassSet.from_names(cats)


def object_labels(scene: Scene, classes: ClassSet) -> dict[int, int]:
    """object id -> GT label id of every object of ``classes`` (:meth:`ClassSet.label_of`);
    the others are void."""
    labels = {oid: classes.label_of(o.category, o.attributes) for oid, o in scene.objects.items()}
    return {oid: label for oid, label in labels.items() if label is not None}


def scene_gt_ids(scene: Scene, classes: ClassSet) -> np.ndarray:
    """Benchmark GT ids [P] (``label*1000+instance``) of a scene with per-point instance ids;
    objects outside ``classes`` become void."""
    if scene.instance_ids is None:
        raise ValueError(f"scene {scene.scene_id} has no per-point instance ids: cannot score instance masks")
    return gt_ids_from_instances(scene.instance_ids, object_labels(scene, classes))
