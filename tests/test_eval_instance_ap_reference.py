"""Compare the instance AP with a slow, step-by-step reference of the benchmark script's logic
on random scenes (many overlapping, duplicated, void-heavy and small predictions)."""

from __future__ import annotations

import numpy as np
import pytest

from liftgs.eval.instance_ap import OVERLAPS, ClassSet, InstancePrediction, evaluate_instances


def reference_ap(scenes, class_ids, overlaps=OVERLAPS, min_size=100):
    """Plain-loop version of the protocol: dicts keyed by (scene, prediction) like the script."""
    ap = np.zeros((len(class_ids), len(overlaps)))
    for oi, th in enumerate(overlaps):
        visited = {}
        for ci, cid in enumerate(class_ids):
            trues, scores, hard_fn, has_gt, has_pred = [], [], 0, False, False
            for si, (gt, preds) in enumerate(scenes):
                gts = [g for g in np.unique(gt) if g != 0 and g // 1000 == cid]
                size = {g: int((gt == g).sum()) for g in gts}
                void = ~np.isin(gt // 1000, class_ids)
                mine = [(pi, p) for pi, p in enumerate(preds) if p.label_id == cid and p.mask.sum() >= min_size]
                has_pred |= bool(mine)
                inter = {(g, pi): int((p.mask & (gt == g)).sum()) for g in gts for pi, p in mine}
                valid = [g for g in gts if size[g] >= min_size]
                has_gt |= bool(valid)
                matched_scores = {}
                extra = []
                for g in valid:
                    got = False
                    for pi, p in mine:
                        n = inter[(g, pi)]
                        if n == 0 or visited.get((si, pi)):
                            continue
                        if n / (size[g] + p.mask.sum() - n) > th:
                            if g in matched_scores:
                                extra.append(min(matched_scores[g], p.score))
                                matched_scores[g] = max(matched_scores[g], p.score)
                            else:
                                got = True
                                matched_scores[g] = p.score
                                visited[(si, pi)] = True
                    hard_fn += 0 if got else 1
                trues += [1.0] * len(matched_scores) + [0.0] * len(extra)
                scores += list(matched_scores.values()) + extra
                for pi, p in mine:
                    npix = p.mask.sum()
                    if any(inter[(g, pi)] and inter[(g, pi)] / (size[g] + npix - inter[(g, pi)]) > th for g in gts):
                        continue
                    ignore = (void & p.mask).sum() + sum(inter[(g, pi)] for g in gts if size[g] < min_size)
                    if ignore / npix <= th:
                        trues.append(0.0)
                        scores.append(p.score)
            if not has_gt:
                ap[ci, oi] = np.nan
                continue
            if not has_pred:
                continue
            ap[ci, oi] = _reference_curve_area(np.array(trues), np.array(scores), hard_fn)
    return ap


def _reference_curve_area(trues, scores, hard_fn):
    """Sweep thresholds from the lowest unique score upwards; integrate as the script does."""
    thresholds = np.unique(scores)
    total_tp = trues.sum()
    prec, rec = [], []
    for t in thresholds:
        keep = scores >= t
        tp = trues[keep].sum()
        fp = keep.sum() - tp
        fn = (total_tp - tp) + hard_fn
        prec.append(tp / (tp + fp))
        rec.append(tp / (tp + fn))
    prec.append(1.0)
    rec.append(0.0)
    r = np.array([rec[0], *rec, 0.0])
    widths = 0.5 * r[:-2] - 0.5 * r[2:]
    return float(np.dot(prec, widths))


def random_scene(rng, P, class_ids):
    gt = np.zeros(P, dtype=np.int64)
    objects = []
    start = 0
    while start < P - 30:
        length = int(rng.integers(30, 400))
        label = int(rng.choice([*class_ids, 99, 0]))  # 99 = not evaluated, 0 = unannotated
        inst = len(objects) + 1
        if label:
            gt[start:start + length] = label * 1000 + inst
        objects.append((start, min(start + length, P), label))
        start += length
    preds = []
    for _ in range(int(rng.integers(0, 14))):
        a, b, label = objects[int(rng.integers(len(objects)))]
        jitter = rng.integers(-120, 120, size=2)
        lo, hi = sorted((int(np.clip(a + jitter[0], 0, P)), int(np.clip(b + jitter[1], 0, P))))
        mask = np.zeros(P, dtype=bool)
        mask[lo:hi] = True
        lab = label if label in class_ids and rng.random() < 0.8 else int(rng.choice(class_ids))
        score = float(np.round(rng.random(), 1))  # rounded: many ties, like real confidences
        preds.append(InstancePrediction(mask, lab, score))
    return gt, preds


@pytest.mark.parametrize("seed", range(12))
def test_matches_reference_on_random_scenes(seed):
    rng = np.random.default_rng(seed)
    class_ids = (1, 2, 3)
    scenes = [random_scene(rng, 1500, class_ids) for _ in range(3)]
    got = evaluate_instances(scenes, ClassSet.from_names(["a", "b", "c"])).ap
    want = reference_ap(scenes, class_ids)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, equal_nan=True)
