"""Evaluate GenSplat's stage III on held-out scenes: referring segmentation, frame selection and
question answering (GenSplat summary, Table 1 and the Table 4 ablation), with LIFT-GS on the same
expressions when asked.

**Referring** (``--tasks referring``). For every expression of every scene, each view-selection
method picks ``num_views`` frames:

* ``uniform``: evenly spaced frames (Table 4, V);
* ``gafs-views``: a GAFS scorer trained on 2D views only (``--frames-views``; Table 4, VII);
* ``gafs-geometry``: the full GAFS scorer (``--frames-geometry``; Table 4, VIII);
* ``oracle``: frames drawn from those that show the target (an upper bound for the selector).

Frame selection is scored by **view recall**, |selected ∩ showing the target| / |showing the
target| (:func:`liftgs.models.gensplat.frames.view_recall`). The reasoner then reads the chosen
frames and the text; its ``<SEG>`` state drives the referring decoder, whose mask over the
Gaussians (logit > 0) is carried to the scene's points by nearest Gaussian centre (as the
instance evaluation does). Scores on the points: mask IoU (mIoU = mean over expressions) and
Acc@0.25 / 0.5 of the mask's box (:func:`liftgs.eval.referring.scanrefer_segmentation`; an
expression is "unique" when the scene has no other object of the target's class).

The baseline (I) "text encoder to nearest instance" uses no reasoner and no referring decoder:
the stage-II decoder scores its instance queries against the text encoder's embedding of the
whole expression, exactly as it scores class names, and the best query's mask is the answer.

Standard errors are over expressions (``std / sqrt(n)``), and each method's difference to
``uniform`` is paired per expression.

**VQA** (``--tasks vqa``). The questions of ``--qa`` in ``--qa-split`` about the scenes of
``--data``; views by GAFS (geometry) when a scorer is given, else uniform; the reasoner's ten
most probable answers are the ranked prediction. Scored by :func:`liftgs.vqa.score_answers`
(EM@1, EM@10, EM, EM-R, BLEU-1..4, METEOR, ROUGE-L, CIDEr) next to the answer-prior baseline
(most frequent training answer per question type).

    liftgs gensplat-eval-language --model runs/gs3 --data heldout --recon recon_heldout \\
        --frames-geometry runs/gafs --frames-views runs/gafs_views --liftgs liftgs-tiny-finetuned --out eval/gs3
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from liftgs.config import parse_cli, save_json_atomic
from liftgs.eval.gensplat import mean_se, nearest_gaussian
from liftgs.eval.referring import SegReferQuery, scanrefer_segmentation
from liftgs.eval.report import Table, json_ready, to_markdown
from liftgs.io.errors import DataError

SELECTIONS = ("uniform", "gafs-views", "gafs-geometry", "oracle")
BASELINE = "text-to-instance"
TASKS = ("referring", "vqa")


# --------------------------------------------------------------------------- prediction
@torch.no_grad()
def refer_masks(model, feats, texts: Sequence[str], views: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Bool masks [N] over the Gaussians of ``feats`` for each text, the reasoner reading the
    frames ``views[i]`` (model: :class:`~liftgs.recipes.gensplat_language.GenSplatLanguage`)."""
    return [logits > 0 for logits in refer_logits(model, feats, texts, views)]


@torch.no_grad()
def refer_logits(model, feats, texts: Sequence[str], views: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The referring decoder's mask logits [N] (float32) over the Gaussians of ``feats`` for each
    text (:func:`refer_masks` keeps those > 0)."""
    from liftgs.recipes.gensplat_language import _pooled_to, refer_prompt

    device = model.reasoner.device
    inputs = [model.view_inputs(feats, v) for v in views]
    ctx = [c for _, c in inputs] if model.settings.view_context else None
    out = model.reasoner([v for v, _ in inputs], [refer_prompt(t) for t in texts],
                         [model.reasoner.answers[model.reasoner.answer_index["<SEG>"]]] * len(texts),
                         view_context=ctx)
    pooled = _pooled_to(feats, device)
    masks = []
    for b in range(len(texts)):
        pred = model.referring(feats.latents.to(device), feats.means.to(device), pooled,
                               feats.instance_queries.to(device), out.segs[b],
                               model.view_prior(feats, views[b], texts[b]))
        masks.append(pred.mask_logits[0].float().cpu().numpy())
    return masks


@torch.no_grad()
def answer_questions(model, feats, questions: Sequence[str], views: Sequence[np.ndarray], top: int = 10
                     ) -> list[list[str]]:
    """The ``top`` most probable answers (best first) of each question; ``<SEG>`` is never an answer."""
    from liftgs.recipes.gensplat_language import qa_prompt

    inputs = [model.view_inputs(feats, v) for v in views]
    ctx = [c for _, c in inputs] if model.settings.view_context else None
    out = model.reasoner([v for v, _ in inputs], [qa_prompt(q) for q in questions], view_context=ctx)
    logits = out.answer_logits.clone()
    seg = model.reasoner.answer_index.get("<SEG>")
    if seg is not None and logits.shape[1] > 1:
        logits[:, seg] = -math.inf
    top = min(int(top), logits.shape[1] - (seg is not None and logits.shape[1] > 1))
    order = logits.argsort(dim=1, descending=True)[:, :top].cpu().tolist()
    return [[model.reasoner.answers[i] for i in row] for row in order]


@torch.no_grad()
def text_to_instance_masks(stage2, feats, text_embeddings: torch.Tensor) -> list[np.ndarray]:
    """Baseline (I): for each text embedding [E, T] the mask [N] of the stage-II query whose class
    score for that text is highest."""
    device = next(stage2.parameters()).device
    out = stage2.decode(feats.latents.to(device), feats.means.to(device),
                        _pooled(feats, device), text_embeddings.to(device, feats.latents.dtype))
    E = text_embeddings.shape[0]
    best = out.class_logits[:, :E].argmax(dim=0)
    return [(out.mask_logits[int(q)] > 0).cpu().numpy() for q in best]


def _pooled(feats, device):
    from liftgs.recipes.gensplat_language import _pooled_to

    return _pooled_to(feats, device)


def oracle_views(visible: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` frames drawn from those showing the target (then from the rest when too few)."""
    shown, rest = np.flatnonzero(visible), np.flatnonzero(~visible)
    pick = list(rng.choice(shown, size=min(k, shown.size), replace=False)) if shown.size else []
    if len(pick) < k and rest.size:
        pick += list(rng.choice(rest, size=min(k - len(pick), rest.size), replace=False))
    return np.sort(np.asarray(pick, np.int64))


# ------------------------------------------------------------------------------ results
@dataclass
class MethodScores:
    """Per-expression scores of one method (NaN recall when no frame shows the target)."""

    iou: list[float] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)
    queries: list[SegReferQuery] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        seg = scanrefer_segmentation(self.queries) if self.queries else {}
        return {"miou": mean_se(self.iou), "recall": mean_se(self.recall), "scanrefer": seg}


def paired(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Mean ± SE of a − b over the entries where both are finite."""
    return mean_se([x - y for x, y in zip(a, b) if math.isfinite(x) and math.isfinite(y)])


def _pm(stat: dict[str, float], scale: float = 100.0) -> str:
    if stat is None or stat.get("n", 0) == 0 or not math.isfinite(stat["mean"]):
        return "-"
    se = stat["se"]
    return f"{scale * stat['mean']:.1f} ± {scale * se:.1f}" if math.isfinite(se) else f"{scale * stat['mean']:.1f}"


ABLATION = ("uniform", "gafs-views", "gafs-geometry")  # the frame-selection ablation, in its order


def referring_tables(methods: dict[str, MethodScores], reference: str = "uniform",
                     steps: dict[str, dict[str, Any]] | None = None) -> list[Table]:
    """The main table (each method, its paired mIoU and recall differences to ``reference``) and,
    when two or more of :data:`ABLATION` were run, each step of the ablation paired per
    expression (gafs-views − uniform, gafs-geometry − gafs-views; ``steps`` as
    :func:`ablation_steps` returns them, computed when not given)."""
    t = Table("Referring segmentation and frame selection (mean ± SE over expressions)",
              ["method", "view recall", "mIoU", "Acc@0.25", "Acc@0.5", f"recall − {reference}",
               f"mIoU − {reference}", "n"])
    for name, m in methods.items():
        summary = m.summary()
        s = summary["scanrefer"].get("overall", {})
        other = reference in methods and name != reference
        d_iou = paired(m.iou, methods[reference].iou) if other else None
        d_rec = paired(m.recall, methods[reference].recall) if other and m.recall else None
        t.rows.append([name, _pm(summary["recall"]), _pm(summary["miou"]), s.get("acc@0.25"),
                       s.get("acc@0.5"), "-" if d_rec is None else _pm(d_rec), "-" if d_iou is None else _pm(d_iou),
                       len(m.iou)])
    tables = [t]
    steps = ablation_steps(methods) if steps is None else steps
    if steps:
        a = Table("Frame-selection ablation, step by step (paired per expression, mean ± SE)",
                  ["step", "view recall", "mIoU", "n"])
        for key, step in steps.items():
            a.rows.append([key.replace(" - ", " − "), _pm(step["recall"]), _pm(step["miou"]), step["miou"]["n"]])
        tables.append(a)
    return tables


def ablation_steps(methods: dict[str, MethodScores]) -> dict[str, dict[str, Any]]:
    """results.json's record of the ablation steps: per consecutive pair of :data:`ABLATION`
    methods that were run, the paired recall and mIoU differences."""
    run = [name for name in ABLATION if name in methods]
    return {f"{hi} - {lo}": {"recall": paired(methods[hi].recall, methods[lo].recall),
                             "miou": paired(methods[hi].iou, methods[lo].iou)}
            for lo, hi in zip(run, run[1:])}


# --------------------------------------------------------------------------------- config
@dataclass
class LanguageEvalConfig:
    """Evaluate a GenSplat stage-III model (+ GAFS scorers, + LIFT-GS) on held-out scenes."""

    model: Path  # `liftgs gensplat-language` run or its model/ folder
    data: Path  # scene directories to evaluate on
    recon: Path  # their reconstructions (<recon>/<scene_id>/gaussians.ply)
    out: Path  # folder for results.json and report.md
    split: str | None = None  # scenes of this split of splits.json (None: every scene)
    tasks: tuple[str, ...] = ("referring",)  # referring, vqa
    selections: tuple[str, ...] = SELECTIONS  # view-selection methods to compare (referring)
    frames_geometry: Path | None = None  # GAFS scorer run (mode geometry): gafs-geometry, and VQA's views
    frames_views: Path | None = None  # GAFS scorer run (mode views): gafs-views
    num_views: int | None = None  # frames per text (default: the model's)
    baseline: bool = True  # also score baseline (I), text encoder to nearest instance
    liftgs: str | None = None  # a LIFT-GS model (name or folder) scored on the same expressions
    qa: Path | None = None  # question file (ScanQA layout) for --tasks vqa
    qa_split: str = "val"  # its split to score
    cache: Path | None = None  # scene-feature cache (default <out>/scene_cache)
    text_encoder: str = "minilm"  # text encoder of the GAFS scorers and the baseline
    seed: int = 0  # draws of the oracle selection
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise ValueError(f"--tasks must be among {list(TASKS)}, got {list(self.tasks)}")
        bad = [s for s in self.selections if s not in SELECTIONS]
        if bad:
            raise ValueError(f"--selections must be among {list(SELECTIONS)}, got {bad}")
        if self.num_views is not None and self.num_views < 1:
            raise ValueError(f"--num-views must be >= 1, got {self.num_views}")
        if "gafs-geometry" in self.selections and "referring" in self.tasks and self.frames_geometry is None:
            raise ValueError("--selections gafs-geometry needs --frames-geometry RUN (a `liftgs gensplat-frames` run)")
        if "gafs-views" in self.selections and "referring" in self.tasks and self.frames_views is None:
            raise ValueError("--selections gafs-views needs --frames-views RUN (a `liftgs gensplat-frames "
                             "--mode views` run)")
        if "vqa" in self.tasks and self.qa is None:
            raise ValueError("--tasks vqa needs --qa FILE (questions in the ScanQA layout)")


def _scene_list(cfg: LanguageEvalConfig) -> list[tuple[Path, str]]:
    from liftgs.io.scene_dir import read_scene_json
    from liftgs.recipes.common import scene_paths

    if not Path(cfg.data).is_dir():
        raise DataError("dataset root is not a directory", Path(cfg.data))
    paths = scene_paths(Path(cfg.data), cfg.split)
    if not paths:
        raise DataError(f"no scenes (split {cfg.split!r})", Path(cfg.data))
    return [(p, read_scene_json(p)["scene_id"]) for p in paths]


def _load_scorer(path: Path | None, mode: str):
    if path is None:
        return None
    from liftgs.models.gensplat.gafs import FrameScorer

    folder = Path(path)
    folder = folder / "model" if (folder / "model").is_dir() else folder
    scorer = FrameScorer.from_pretrained(folder)
    if scorer.config.mode != mode:
        raise ValueError(f"{folder}: a GAFS scorer of mode {scorer.config.mode!r}, expected {mode!r}")
    return scorer.eval()


def run_language_eval(cfg: LanguageEvalConfig) -> dict[str, Any]:
    """Score the tasks of ``cfg``; returns the results dict and writes results.json + report.md."""
    from tqdm.auto import tqdm

    from liftgs.io.scene_dir import read_scene
    from liftgs.recipes.gensplat_frames import select_frames
    from liftgs.recipes.gensplat_language import load_language_model
    from liftgs.recipes.gensplat_scenes import SceneCacheConfig, SceneFeatureCache
    from liftgs.text import load_text_encoder

    scenes = _scene_list(cfg)
    model = load_language_model(cfg.model, map_location=cfg.device)
    st = model.settings
    k = int(cfg.num_views or st.num_views)
    scorers = {"gafs-geometry": _load_scorer(cfg.frames_geometry, "geometry"),
               "gafs-views": _load_scorer(cfg.frames_views, "views")}
    encoder = load_text_encoder(cfg.text_encoder, device=cfg.device)
    cache = SceneFeatureCache(model.stage2, Path(cfg.recon), Path(cfg.cache or Path(cfg.out) / "scene_cache"),
                              SceneCacheConfig(image_size=st.image_size, max_per_view=st.max_per_view,
                                               label_radius=st.label_radius))
    liftgs_grounder = None
    if cfg.liftgs is not None and "referring" in cfg.tasks:
        from liftgs.eval.runner import ModelGrounder
        from liftgs.models import load_model
        from liftgs.train.checkpoint import resolve_model_dir

        lg = load_model(resolve_model_dir(cfg.liftgs), map_location=cfg.device).eval()
        liftgs_grounder = ModelGrounder(lg, encoder)
    results: dict[str, Any] = {"model": str(cfg.model), "data": str(cfg.data), "split": cfg.split,
                               "num_views": k, "scenes": [s for _, s in scenes]}
    tables: list[Table] = []
    rng = np.random.default_rng(cfg.seed)

    def embed(texts: list[str]) -> torch.Tensor:
        return encoder.encode(texts).pooled.float().cpu()

    if "referring" in cfg.tasks:
        methods = {name: MethodScores() for name in cfg.selections}
        if cfg.baseline:
            methods[BASELINE] = MethodScores()
        if liftgs_grounder is not None:
            methods["LIFT-GS"] = MethodScores()
        rows = []
        for path, sid in tqdm(scenes, desc="referring", disable=not cfg.progress):
            scene = read_scene(path, load_frames=False)
            feats = cache.get(path, sid)
            exprs = [e for e in scene.expressions if e.target_ids]
            if not exprs:
                continue
            if scene.instance_ids is None:
                raise DataError("the scene's points have no instance ids", path / "scene.json")
            index, _ = nearest_gaussian(scene.points, feats.means.numpy())
            texts = [e.text for e in exprs]
            emb = embed(texts)
            classes = {int(k_): o.category for k_, o in scene.objects.items()}
            for name in cfg.selections:
                views = []
                for e, t in zip(exprs, emb):
                    if name == "uniform":
                        views.append(select_frames(None, feats, t, k, "uniform"))
                    elif name == "oracle":
                        views.append(oracle_views(feats.visible(e.target_ids, st.min_pixels), k, rng))
                    else:
                        views.append(select_frames(scorers[name], feats, t, k, "gafs"))
                masks = refer_masks(model, feats, texts, views)
                for e, v, m in zip(exprs, views, masks):
                    _add(methods[name], scene, e, m[index], classes,
                         _recall(feats.visible(e.target_ids, st.min_pixels), v))
            if cfg.baseline:
                for e, m in zip(exprs, text_to_instance_masks(model.stage2, feats, emb)):
                    _add(methods[BASELINE], scene, e, m[index], classes, float("nan"))
            if liftgs_grounder is not None:
                for e, (masks, _) in zip(exprs, liftgs_grounder.expressions(scene, exprs)):
                    top = masks[0] if len(masks) else np.zeros(scene.num_points, bool)
                    _add(methods["LIFT-GS"], scene, e, top, classes, float("nan"))
            rows.append(sid)
        if not rows:
            raise DataError("no expression with targets in the evaluated scenes", Path(cfg.data))
        results["referring"] = {name: {**m.summary(), "iou": m.iou, "view_recall": m.recall}
                                for name, m in methods.items()}
        ref = "uniform" if "uniform" in methods else next(iter(methods))
        results["referring_paired"] = {name: paired(m.iou, methods[ref].iou) for name, m in methods.items()
                                       if name != ref}
        results["ablation_steps"] = steps = ablation_steps(methods)
        tables += referring_tables(methods, ref, steps)
    if "vqa" in cfg.tasks:
        tables_vqa, vqa = _vqa(cfg, model, cache, scenes, scorers["gafs-geometry"] or
                               _load_scorer(cfg.frames_geometry, "geometry"), embed, k)
        results["vqa"] = vqa
        tables += tables_vqa
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_json_atomic(out / "results.json", json_ready(results))
    text = to_markdown(tables, "GenSplat stage III")
    from liftgs.files import atomic_write

    with atomic_write(out / "report.md") as f:
        f.write(text)
    return results


def _recall(visible: np.ndarray, views: np.ndarray) -> float:
    from liftgs.models.gensplat.frames import view_recall

    return view_recall(np.asarray(views, np.int64), visible)


def _add(scores: MethodScores, scene, expr, pred_points: np.ndarray, classes: dict[int, str],
         recall: float) -> None:
    target = np.isin(scene.instance_ids, np.asarray(expr.target_ids))
    if not target.any():
        return
    cats = {classes.get(int(t)) for t in expr.target_ids}
    unique = sum(1 for c in classes.values() if c in cats) == len(expr.target_ids)
    q = SegReferQuery(scene.points, pred_points.astype(bool), target, unique)
    scores.queries.append(q)
    inter = float((q.pred_mask & q.target_mask).sum())
    union = float((q.pred_mask | q.target_mask).sum())
    scores.iou.append(inter / union if union else 0.0)
    scores.recall.append(recall)


def _vqa(cfg: LanguageEvalConfig, model, cache, scenes, scorer, embed, k: int):
    from liftgs.recipes.gensplat_frames import select_frames
    from liftgs.vqa import answer_prior, prior_predictions, score_answers
    from liftgs.vqa.data import read_scanqa

    items = read_scanqa(cfg.qa)
    ids = {sid: p for p, sid in scenes}
    val = [q for q in items if q.split == cfg.qa_split and q.scene_id in ids]
    train = [q for q in items if q.split == "train"]
    if not val:
        raise DataError(f"no question of split {cfg.qa_split!r} about the evaluated scenes", Path(cfg.qa))
    if not train:
        raise DataError("no training-split question for the answer-prior baseline", Path(cfg.qa))
    preds: dict[str, list[str]] = {}
    by_scene: dict[str, list] = {}
    for q in val:
        by_scene.setdefault(q.scene_id, []).append(q)
    for sid, qs in by_scene.items():
        feats = cache.get(ids[sid], sid)
        emb = embed([q.question for q in qs])
        views = [select_frames(scorer, feats, t, k, "gafs" if scorer is not None else "uniform") for t in emb]
        for q, ans in zip(qs, answer_questions(model, feats, [q.question for q in qs], views)):
            preds[q.question_id] = ans
    from liftgs.vqa.metrics import CaptionScorer

    with CaptionScorer() as scorer_:  # one METEOR process for both
        ours = score_answers(val, preds, scorer=scorer_)
        prior = score_answers(val, prior_predictions(val, answer_prior(train)), scorer=scorer_)
    names = list(ours.overall)
    t = Table(f"3D question answering ({len(val)} questions of split {cfg.qa_split!r}; percent)", ["method", *names])
    t.rows.append(["answer prior (per question type)",  # one answer per question: no EM@10
                   *[f"{prior.overall[n]:.1f}" if n in prior.overall else "-" for n in names]])
    t.rows.append(["GenSplat (compact reasoner, "
                   f"{'GAFS' if scorer is not None else 'uniform'} views)", *[f"{ours.overall[n]:.1f}" for n in names]])
    per = Table("3D question answering by type (EM@1, percent)", ["type", "questions", "answer prior", "GenSplat"])
    for typ, row in ours.per_type.items():
        per.rows.append([typ, int(row["count"]), f"{prior.per_type.get(typ, {}).get('EM@1', float('nan')):.1f}",
                         f"{row['EM@1']:.1f}"])
    return [t, per], {"gensplat": ours.to_dict(), "prior": prior.to_dict(), "predictions": preds}


def main(argv: list[str]) -> int:
    cfg = parse_cli(LanguageEvalConfig, argv, prog="liftgs gensplat-eval-language", description=__doc__)
    results = run_language_eval(cfg)
    print((Path(cfg.out) / "report.md").read_text())
    del results
    return 0


__all__ = ["BASELINE", "LanguageEvalConfig", "MethodScores", "SELECTIONS", "answer_questions", "oracle_views",
           "ablation_steps", "refer_masks", "run_language_eval", "text_to_instance_masks"]
