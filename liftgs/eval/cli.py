"""``liftgs eval``: score a checkpoint on a dataset split, or score benchmark files.

    liftgs eval --checkpoint C --data DIR --split val --tasks instseg,grounding --out DIR
    liftgs eval --predictions DIR --gt DIR --classes scannet200 --out DIR

The first form runs the open-vocabulary protocol (every category name as a query) and grounds
every referring expression of each scene; the second scores ScanNet-format prediction files of
any method. Both print the tables and write ``<out>/metrics.md`` and ``<out>/metrics.json``.
With ``--scannet-scans DIR`` instance AP is counted per vertex of each ScanNet scan's mesh (the
official protocol) rather than per point; ``--write-submission`` also writes the grounding
predictions in the ScanRefer, ReferIt3D and Multi3DRefer benchmarks' formats under
``<out>/submission``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from liftgs.config import parse_cli, to_dict
from liftgs.eval.instance_ap import ClassSet
from liftgs.eval.mesh_vertices import check_scans
from liftgs.eval.report import Table, grounding_tables, instance_tables, to_markdown, write_report
from liftgs.eval.runner import TASKS, EvalResults, Grounder, ModelGrounder, evaluate_scenes
from liftgs.eval.scannet_format import evaluate_prediction_dir
from liftgs.eval.submission import Submission, check_submission_scenes

__all__ = ["EvalConfig", "main", "run_checkpoint", "run_prediction_dir", "load_class_set", "results_report"]


@dataclass
class EvalConfig:
    """Options of ``liftgs eval`` (give --checkpoint and --data, or --predictions and --gt)."""

    checkpoint: Path | None = None  # a model folder, a checkpoint (step_*) or a run folder
    data: Path | None = None  # dataset root (scene folders + splits.json)
    split: str = "val"  # a split of splits.json, or "all" (every scene of the root)
    tasks: str = "instseg,grounding"  # comma-separated subset of: instseg, grounding
    out: Path = Path("eval_out")
    text_encoder: str | None = None  # name, folder or repo id; default: the one the model records
    vocabulary: Literal["all", "scene"] = "all"  # query every class name, or only the scene's categories
    # auto | data | scannet20 | scannet200 | a JSON file;
    # auto = data (the split's categories) for a checkpoint, scannet20 for files
    classes: str = "auto"
    top_k: int = 10  # masks kept per query
    score_threshold: float = 0.5  # masks scoring >= this form the predicted set for F1@IoU
    max_scenes: int | None = None  # evaluate only the first N scenes of the split
    write_predictions: bool = False  # also write ScanNet-format predictions + GT under <out>/benchmark
    # also write the grounding predictions in the ScanRefer / ReferIt3D / Multi3DRefer benchmark
    # formats under <out>/submission (docs/metrics.md#submission-files)
    write_submission: bool = False
    # ScanNet's scans/ folder (<scene>/<scene>_vh_clean_2.ply, .aggregation.json, segs): count
    # instance AP per mesh vertex, as the official benchmark, instead of per point
    scannet_scans: Path | None = None
    predictions: Path | None = None  # folder of <scene>.txt prediction files (official format)
    gt: Path | None = None  # folder of <scene>.txt GT files (label*1000+instance per vertex)
    device: str = "cpu"

    def __post_init__(self) -> None:
        from liftgs.runtime import check_device

        check_device(self.device, allow_auto=False)
        files_mode = self.predictions is not None or self.gt is not None
        model_mode = self.checkpoint is not None or self.data is not None
        if files_mode == model_mode:
            raise ValueError("give either --checkpoint and --data (evaluate a model) or --predictions and --gt "
                             "(score benchmark files)")
        if files_mode and (self.predictions is None or self.gt is None):
            raise ValueError("scoring files needs both --predictions DIR and --gt DIR")
        if model_mode and (self.checkpoint is None or self.data is None):
            raise ValueError("evaluating a model needs both --checkpoint DIR and --data DIR")
        bad = set(self.task_list) - set(TASKS)
        if bad or not self.task_list:
            raise ValueError(f"--tasks must be a comma-separated subset of {','.join(TASKS)}, got {self.tasks!r}")
        if self.top_k < 1:
            raise ValueError(f"--top-k must be >= 1, got {self.top_k}")
        if self.max_scenes is not None and self.max_scenes < 1:
            raise ValueError(f"--max-scenes must be >= 1, got {self.max_scenes}")
        if self.write_submission and (files_mode or "grounding" not in self.task_list):
            raise ValueError("--write-submission writes grounding predictions: it needs --checkpoint, --data and "
                             "the grounding task")
        if self.scannet_scans is not None and (files_mode or "instseg" not in self.task_list):
            raise ValueError("--scannet-scans scores instance masks on mesh vertices: it needs --checkpoint, --data "
                             "and the instseg task")

    @property
    def task_list(self) -> list[str]:
        return [t.strip() for t in self.tasks.split(",") if t.strip()]


def load_class_set(spec: str, scene_paths=None) -> ClassSet:
    """"scannet20" | "scannet200" | "data" (sorted categories of the scenes at ``scene_paths``)
    | a JSON file ``{"ids": [...], "names": [...], "groups": {name: [class names]}}``."""
    if spec == "scannet20":
        return ClassSet.scannet20()
    if spec == "scannet200":
        return ClassSet.scannet200()
    if spec == "data":
        from liftgs.io.scene_dir import read_scene_json

        if scene_paths is None:
            raise ValueError("--classes data needs scenes; with --predictions give scannet20, scannet200 or a JSON")
        cats = sorted({o["category"] for p in scene_paths for o in read_scene_json(p)["objects"]})
        if not cats:
            raise ValueError("no object categories in the evaluated scenes: nothing to score for instseg")
        return ClassSet.from_names(cats)
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--classes {spec!r}: not a preset (data, scannet20, scannet200) nor a JSON file")
    try:
        doc = json.loads(path.read_text())
        groups = {k: tuple(v) for k, v in doc.get("groups", {}).items()}
        id_attribute = doc.get("id_attribute")
        if id_attribute is not None and not isinstance(id_attribute, str):
            raise ValueError(f"'id_attribute' must be an attribute name or null, got {id_attribute!r}")
        return ClassSet(ids=tuple(doc["ids"]), names=tuple(doc["names"]), groups=groups, id_attribute=id_attribute)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"class file {path}: expected JSON with 'ids' and 'names' lists and optionally "
                         f"'groups' and 'id_attribute' ({exc})") from exc


def results_report(results: EvalResults, heading: str) -> tuple[list[Table], dict]:
    """Tables and JSON data; instance AP names what it was counted on (``info["instseg_protocol"]``:
    "points", "mesh vertices", or "benchmark files" for ``--predictions``)."""
    tables, data = [], {"info": results.info}
    if results.instseg is not None:
        protocol = results.info.get("instseg_protocol", "benchmark files")
        tables += instance_tables(results.instseg, title=f"Instance segmentation on {protocol}")
        data["instseg"] = {"protocol": protocol,
                           "summary": results.instseg.summary(), "per_class": results.instseg.per_class(),
                           "overlaps": results.instseg.overlaps, "ap_per_overlap": results.instseg.ap,
                           "classes": {"ids": results.instseg.classes.ids, "names": results.instseg.classes.names}}
    if results.accuracy is not None or results.f1 is not None:
        tables += grounding_tables(results.accuracy, results.f1)
        data["grounding"] = {"accuracy": results.accuracy, "f1": results.f1}
    return tables, data


def run_prediction_dir(cfg: EvalConfig) -> EvalResults:
    classes = load_class_set("scannet20" if cfg.classes == "auto" else cfg.classes)
    result = evaluate_prediction_dir(cfg.predictions, cfg.gt, classes)
    return EvalResults(instseg=result, info={"predictions": str(cfg.predictions), "gt": str(cfg.gt),
                                             "instseg_protocol": "benchmark files"})


def run_checkpoint(cfg: EvalConfig, grounder: Grounder | None = None) -> EvalResults:
    """Evaluate ``cfg.checkpoint`` on ``cfg.data``/``cfg.split`` (``grounder`` overrides the model,
    for tests and for other methods). The inputs ``--scannet-scans`` and ``--write-submission``
    need are checked before anything runs; the submission is written once every scene is done."""
    from liftgs.io import list_scenes, read_scene

    paths = list_scenes(cfg.data) if cfg.split == "all" else list_scenes(cfg.data, cfg.split)
    if cfg.max_scenes is not None:
        paths = paths[: cfg.max_scenes]
    if not paths:
        raise ValueError(f"split {cfg.split!r} of {cfg.data} has no scenes")
    classes = None
    if "instseg" in cfg.task_list:
        classes = load_class_set("data" if cfg.classes == "auto" else cfg.classes, paths)
    if cfg.scannet_scans is not None:
        check_scans(cfg.scannet_scans, paths)
    submission = None
    if cfg.write_submission:
        check_submission_scenes(paths)
        submission = Submission(cfg.score_threshold)
    if grounder is None:
        grounder = _load_model_grounder(cfg)
    scenes = (read_scene(p, load_frames=False) for p in paths)
    pred_dir = cfg.out / "benchmark" if cfg.write_predictions else None
    results = evaluate_scenes(scenes, grounder, classes, cfg.task_list, cfg.vocabulary, cfg.score_threshold,
                              pred_dir=pred_dir, num_scenes=len(paths), scans_root=cfg.scannet_scans,
                              submission=submission)
    results.info.update({"checkpoint": str(cfg.checkpoint), "data": str(cfg.data), "split": cfg.split})
    if submission is not None:
        folder = submission.write(cfg.out / "submission")
        results.info["submission"] = {"folder": str(folder), "queries": submission.counts()}
    return results


def _load_model_grounder(cfg: EvalConfig) -> ModelGrounder:
    from liftgs.models import load_model
    from liftgs.models.provenance import check_text_width, text_encoder_for
    from liftgs.train.checkpoint import resolve_model_dir

    t0 = time.perf_counter()
    model_dir = resolve_model_dir(cfg.checkpoint)
    model = load_model(model_dir, map_location=cfg.device).eval()
    encoder = text_encoder_for(model_dir, cfg.text_encoder, device=cfg.device, model=model)
    check_text_width(model, encoder, model_dir)
    print(f"loaded {cfg.checkpoint} and text encoder {encoder.name!r} in {time.perf_counter() - t0:.1f} s")
    return ModelGrounder(model, encoder, top_k=cfg.top_k)


def main(argv: list[str]) -> int:
    """The command; a bad input raises (``liftgs.cli`` prints it on one line). The report is
    written only once every scene is scored, so a failed evaluation writes nothing."""
    cfg = parse_cli(EvalConfig, argv, prog="liftgs eval", description=__doc__)
    if cfg.predictions is not None:
        results, heading = run_prediction_dir(cfg), f"Benchmark files: {cfg.predictions}"
    else:
        results, heading = run_checkpoint(cfg), f"{cfg.checkpoint} on {cfg.data} ({cfg.split})"
    tables, data = results_report(results, heading)
    data["config"] = to_dict(cfg)
    md, js = write_report(cfg.out, tables, data, heading=heading)
    print(to_markdown(tables, heading))
    print(f"wrote {md} and {js}")
    if "submission" in results.info:
        print(f"wrote the benchmark submission files under {results.info['submission']['folder']}")
    return 0
