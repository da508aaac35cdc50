"""Fine-tuning samples from 3D labels (paper Sec 4: referential grounding, instance segmentation).

Two kinds of sample, both scored on the Gaussian centres (= input points) by the same matcher
and criterion as pre-training:

* ``refer``: one referring expression. Q = the expression's token vectors from the frozen
  text encoder; each target's positive tokens are the tokens overlapping its character span
  (``Expression.spans``; with one span per target each target gets its own span, otherwise
  every target shares all spans); the target masks are the GT instance masks over the points.
* ``instseg``: category-name queries. Q = one pooled text embedding per category (the scene's
  categories plus a few absent ones drawn from the training vocabulary, so the model also
  learns that a queried category can be missing); each GT instance's target is its category
  token.

``data_fraction`` keeps a deterministic, nested subset of the training scenes (scaling curves,
paper Fig. 7).

The data is checked when the dataset is built, before any training step, and nothing is left
out silently: a scene without per-point instance ids (3D labels) is named in a
:class:`~liftgs.io.errors.DataWarning` and skipped (a :class:`~liftgs.io.errors.DataError` when
no scene is left); an expression whose target id is unknown or has no points would train on an
empty mask, so it is named in a warning and skipped. Expressions with no target at all
(descriptions of absent objects) are not fine-tuned on, by design: they count only in the F1
evaluation. ``read_scene`` checks every frame's camera and file paths.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from liftgs.io.errors import DataError, DataWarning
from liftgs.recipes.common import name_list
from liftgs.train.sampler import EpochSampler, sample_rng, subsample_indices

TASKS = ("refer", "instseg", "both")
_GROUP_SALT = 0x6E0_5CE


@dataclass
class FinetuneSample:
    points: Tensor  # [P, 3]
    colors: Tensor  # [P, 3]
    queries: Tensor  # [T, F] query token vectors
    target_masks: Tensor  # [K, Np] {0, 1} over the supervised points
    token_sets: list[list[int]]  # K lists of positive token indices
    loss_points: Tensor | None  # [Np] long indices of supervised points; None = all points
    task: str = ""
    scene_id: str = ""


@dataclass
class _Scene:
    scene_id: str
    points: Tensor
    colors: Tensor
    instance_ids: np.ndarray  # [P] int32
    categories: dict[int, str]  # instance id -> category (instances with enough points)
    expressions: list[tuple[str, list[int], list[tuple[int, int]]]]


def _missing_targets(target_ids: list[int], present: set[int], objects: dict) -> str:
    """Why an expression has no mask to learn ("" if every target has points)."""
    unknown = [t for t in target_ids if t not in present and t not in objects]
    empty = [t for t in target_ids if t not in present and t in objects]
    why = [f"unknown target id {', '.join(map(str, unknown))}"] if unknown else []
    why += [f"target {', '.join(map(str, empty))} has no points"] if empty else []
    return "; ".join(why)


def _report_left_out(scene_paths: list[Path], keep: list[int], unlabelled: list[str], pointless: list[str]) -> None:
    """Name the scenes and expressions left out: an error when no scene is left, else warnings."""
    if unlabelled and len(unlabelled) == len(keep):
        root = {Path(scene_paths[i]).parent for i in keep}
        raise DataError(f"fine-tuning needs per-point instance ids (3D labels) but the points.ply of every "
                        f"scene has none: {name_list(unlabelled)}", root.pop() if len(root) == 1 else None)
    if unlabelled:
        warnings.warn(f"{len(unlabelled)} of {len(keep)} scenes have no per-point instance ids (3D labels) in "
                      f"points.ply and are left out: {name_list(unlabelled)}", DataWarning, stacklevel=3)
    if pointless:
        warnings.warn(f"{len(pointless)} expressions are left out because a target has no points: "
                      f"{name_list(pointless, limit=4)}", DataWarning, stacklevel=3)


class FinetuneDataset:
    """Scenes with GT instances / expressions -> :class:`FinetuneSample` by stream position."""

    def __init__(self, scene_paths: list[Path], text_encoder, seed: int, task: str = "both",
                 data_fraction: float = 1.0, fraction_seed: int = 0, min_instance_points: int = 20,
                 negative_categories: int = 4, loss_points: int = 0, progress: bool = False):
        from liftgs.io.scene_dir import read_scene

        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        keep = subsample_indices(len(scene_paths), data_fraction, fraction_seed) if scene_paths else []
        self.seed, self.task = int(seed), task
        self.negative_categories, self.loss_points = int(negative_categories), int(loss_points)
        self.scenes: list[_Scene] = []
        unlabelled, pointless = [], []
        for i in keep:
            s = read_scene(scene_paths[i], load_frames=False)  # checks every frame's camera and files
            if s.instance_ids is None or not (s.instance_ids >= 0).any():
                unlabelled.append(s.scene_id)
                continue
            ids, counts = np.unique(s.instance_ids[s.instance_ids >= 0], return_counts=True)
            big = {int(k) for k, c in zip(ids, counts) if c >= min_instance_points}
            cats = {k: s.objects[k].category for k in sorted(big) if k in s.objects}
            present = {int(k) for k in ids}
            pointless += [f"{s.scene_id} {e.text!r} ({why})" for e in s.expressions
                          if (why := _missing_targets(e.target_ids, present, s.objects))]
            exprs = [(e.text, e.target_ids, e.spans) for e in s.expressions
                     if e.target_ids and all(t in big for t in e.target_ids)]
            self.scenes.append(_Scene(s.scene_id, torch.from_numpy(s.points), torch.from_numpy(s.colors),
                                      s.instance_ids, cats, exprs))
        _report_left_out(scene_paths, keep, unlabelled, pointless)
        self.items: list[tuple[int, int]] = []  # (scene, expression index or -1 = instseg)
        for si, sc in enumerate(self.scenes):
            if task in ("refer", "both"):
                self.items += [(si, j) for j in range(len(sc.expressions))]
            if task in ("instseg", "both") and sc.categories:
                self.items.append((si, -1))
        if not self.items:
            raise DataError(f"no training item for task {task!r} among {len(self.scenes)} scene(s) "
                            "(no expressions / instances with enough points?)")
        self._scene_items: dict[int, list[int]] = {}
        for i, (si, _) in enumerate(self.items):
            self._scene_items.setdefault(si, []).append(i)
        self._encode_text(text_encoder, progress)
        self.sampler = EpochSampler(len(self.items), seed)

    def _encode_text(self, encoder, progress: bool) -> None:
        """Encode every expression and category name once (the text encoder is frozen)."""
        from tqdm.auto import tqdm

        self.dim = int(encoder.dim)
        self.vocabulary = sorted({c for sc in self.scenes for c in sc.categories.values()})
        with torch.no_grad():
            enc = encoder.encode(self.vocabulary) if self.vocabulary else None
            self.category_vectors = {c: enc.pooled[i].float().cpu() for i, c in enumerate(self.vocabulary)}
            self.expression_tokens: dict[str, tuple[Tensor, list[tuple[int, int]]]] = {}
            texts = sorted({e[0] for sc in self.scenes for e in sc.expressions})
            for start in tqdm(range(0, len(texts), 64), desc="encode expressions",
                              disable=not progress or not texts):
                chunk = texts[start:start + 64]
                out = encoder.encode(chunk)
                for t, tok, spans in zip(chunk, out.tokens, out.spans):
                    self.expression_tokens[t] = (tok.float().cpu(), [tuple(s) for s in spans])

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, position: int) -> FinetuneSample:
        return self._build(self.sampler.item(position), sample_rng(self.seed, position))

    def sample_group(self, position: int, size: int = 1) -> list[FinetuneSample]:
        """The sample at ``position`` plus up to ``size - 1`` other items of the same scene
        (its other expressions / its category set), drawn from a stream of their own: the
        model encodes the scene once and decodes every query set (``query_scene``)."""
        if size < 1:
            raise ValueError(f"group size must be >= 1, got {size}")
        item = self.sampler.item(position)
        out = [self._build(item, sample_rng(self.seed, position))]
        others = [i for i in self._scene_items[self.items[item][0]] if i != item]
        if size > 1 and others:
            shared = None if out[0].loss_points is None else out[0].loss_points.numpy()
            rng = np.random.default_rng([self.seed, _GROUP_SALT, int(position)])
            for j, other in enumerate(rng.permutation(others)[: size - 1]):
                out.append(self._build(int(other), np.random.default_rng([self.seed, _GROUP_SALT, int(position), j]),
                                       points=shared))
        return out

    def _build(self, item: int, rng: np.random.Generator, points: np.ndarray | None = None) -> FinetuneSample:
        """The sample of ``item``; ``points``: the supervised points to use (a group shares
        its first sample's, so the model evaluates the scene's mask basis there once)."""
        si, ei = self.items[item]
        sc = self.scenes[si]
        P = sc.points.shape[0]
        idx = points
        if idx is None and self.loss_points and self.loss_points < P:
            idx = np.sort(rng.choice(P, size=self.loss_points, replace=False))
        inst = sc.instance_ids if idx is None else sc.instance_ids[idx]
        if ei >= 0:
            queries, masks, token_sets = self._refer(sc, ei, inst)
            task = "refer"
        else:
            queries, masks, token_sets = self._instseg(sc, inst, rng)
            task = "instseg"
        return FinetuneSample(points=sc.points, colors=sc.colors, queries=queries, target_masks=masks,
                              token_sets=token_sets,
                              loss_points=None if idx is None else torch.from_numpy(np.asarray(idx)),
                              task=task, scene_id=sc.scene_id)

    def _refer(self, sc: _Scene, ei: int, inst: np.ndarray):
        from liftgs.text.base import tokens_in_span

        text, targets, spans = sc.expressions[ei]
        tokens, token_spans = self.expression_tokens[text]
        masks = torch.from_numpy(np.stack([inst == t for t in targets]).astype(np.float32))
        if len(spans) == len(targets):
            token_sets = [tokens_in_span(token_spans, a, b) for a, b in spans]
        else:
            shared = sorted({t for a, b in spans for t in tokens_in_span(token_spans, a, b)})
            token_sets = [shared for _ in targets]
        return tokens, masks, token_sets

    def _instseg(self, sc: _Scene, inst: np.ndarray, rng: np.random.Generator):
        present = sorted(set(sc.categories.values()))
        absent = [c for c in self.vocabulary if c not in present]
        extra = list(rng.permutation(absent)[: self.negative_categories]) if absent else []
        names = [str(c) for c in rng.permutation(present + extra)]
        slot = {c: i for i, c in enumerate(names)}
        queries = torch.stack([self.category_vectors[c] for c in names])  # [C, F]
        ids = sorted(sc.categories)
        masks = torch.from_numpy(np.stack([inst == k for k in ids]).astype(np.float32))
        return queries, masks, [[slot[sc.categories[k]]] for k in ids]
