"""Benchmark runner and ``liftgs eval`` with fake grounders on tiny on-disk scenes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from liftgs.eval.cli import EvalConfig, load_class_set, main, results_report, run_checkpoint
from liftgs.eval.instance_ap import ClassSet
from liftgs.eval.open_vocab import predict_instances, scene_gt_ids
from liftgs.eval.report import write_report
from liftgs.eval.runner import evaluate_scenes
from liftgs.io import read_scene, write_scene, write_splits
from liftgs.types import Expression, ObjectInfo, Scene


def make_scene(scene_id: str, layout: list[tuple[int, str, tuple[float, float]]], rng) -> Scene:
    """Objects = 150-point clusters in 0.4 m cubes at the given xy; 60 unannotated floor points."""
    pts, ids = [], []
    for oid, _, (x, y) in layout:
        pts.append(rng.random((150, 3)) * 0.4 + [x, y, 0.0])
        ids.append(np.full(150, oid))
    pts.append(np.c_[rng.random((60, 2)) * 5, np.zeros(60)])
    ids.append(np.full(60, -1))
    points = np.concatenate(pts).astype(np.float32)
    objects = {oid: ObjectInfo(cat) for oid, cat, _ in layout}
    chairs = [oid for oid, cat, _ in layout if cat == "chair"]
    exprs = [Expression(text=f"the {cat}", target_ids=[oid], spans=[(4, 4 + len(cat))])
             for oid, cat, _ in layout]
    exprs.append(Expression(text="all the chairs", target_ids=chairs, spans=[(8, 14)]))
    exprs.append(Expression(text="the piano", target_ids=[], spans=[(4, 9)]))
    return Scene(scene_id=scene_id, points=points, colors=np.full_like(points, 0.5),
                 instance_ids=np.concatenate(ids).astype(np.int32), objects=objects, expressions=exprs)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("data")
    write_scene(make_scene("a", [(0, "chair", (0, 0)), (1, "chair", (1, 0)), (2, "table", (2, 2))], rng), root)
    write_scene(make_scene("b", [(3, "lamp", (0, 3)), (4, "chair", (3, 0))], rng), root)
    write_splits(root, {"train": [], "val": ["a", "b"]})
    return root


class OracleGrounder:
    """GT masks (score 0.9) for every object of a category / every target, plus a low-scored
    random mask; ``blind`` returns nothing at all."""

    def __init__(self, blind: bool = False) -> None:
        self.blind = blind

    def _noise(self, scene):
        m = np.zeros(scene.num_points, dtype=bool)
        m[np.random.default_rng(1).choice(scene.num_points, 120, replace=False)] = True
        return m

    def phrases(self, scene, phrases):
        out = []
        for name in phrases:
            masks = [scene.instance_ids == k for k, o in scene.objects.items() if o.category == name]
            masks = [] if self.blind else masks + [self._noise(scene)]
            scores = np.array([0.9] * (len(masks) - 1) + [0.1])[: len(masks)]
            out.append((np.array(masks, dtype=bool).reshape(-1, scene.num_points), scores))
        return out

    def expressions(self, scene, exprs):
        out = []
        for e in exprs:
            masks = [] if self.blind else [scene.instance_ids == t for t in e.target_ids]
            out.append((np.array(masks, dtype=bool).reshape(-1, scene.num_points), np.full(len(masks), 0.9)))
        return out


def scenes_of(root):
    return [read_scene(root / s, load_frames=False) for s in ("a", "b")]


def test_oracle_scores_perfectly(dataset):
    scenes = scenes_of(dataset)
    classes = load_class_set("data", [dataset / "a", dataset / "b"])
    assert classes.names == ("chair", "lamp", "table")
    res = evaluate_scenes(scenes, OracleGrounder(), classes)
    assert res.instseg.summary() == {"ap": 1.0, "ap50": 1.0, "ap25": 1.0}
    # single-target expressions: 3 in "a", 2 + "all the chairs" (one chair) in "b"
    assert res.accuracy["overall"] == {"acc@0.25": 1.0, "acc@0.5": 1.0, "acc@0.75": 1.0, "miou": 1.0, "n": 6}
    assert res.accuracy["unique"]["n"] == 4 and res.accuracy["multiple"]["n"] == 2  # the two chairs of "a"
    assert res.f1["overall"]["f1@0.5"] == 1.0 and res.f1["overall"]["n"] == 9
    assert res.f1["zt_wo_d"]["n"] == 2 and res.f1["mt"]["n"] == 1 and res.f1["st_w_d"]["n"] == 2


def test_blind_grounder_scores_zero(dataset):
    classes = ClassSet.from_names(["chair", "lamp", "table"])
    res = evaluate_scenes(scenes_of(dataset), OracleGrounder(blind=True), classes)
    assert res.instseg.summary()["ap"] == 0.0
    assert res.accuracy["overall"]["acc@0.25"] == 0.0
    # only the two zero-target queries ("the piano", nothing predicted) score 1
    assert res.f1["overall"]["f1@0.25"] == pytest.approx(2 / 9)


def test_scene_vocabulary_and_missing_classes(dataset):
    classes = ClassSet.from_names(["chair", "sofa", "table"])  # lamp not evaluated, sofa has no GT
    res = evaluate_scenes(scenes_of(dataset), OracleGrounder(), classes, tasks=["instseg"], vocabulary="scene")
    pc = res.instseg.per_class()
    assert pc["chair"]["ap"] == 1.0 and math.isnan(pc["sofa"]["ap"]) and res.accuracy is None


def test_protocol_helper_validates_predictor_output():
    with pytest.raises(ValueError, match="label index 5"):
        predict_instances(10, ["a"], [1], lambda names: [(np.ones(10, bool), 5, 0.5)])
    with pytest.raises(ValueError, match="mask has 3 values for 10 points"):
        predict_instances(10, ["a"], [1], lambda names: [(np.ones(3, bool), 0, 0.5)])
    preds = predict_instances(10, ["a", "b"], [4, 7], lambda names: [(np.ones(10, int), 1, 0.5)])
    assert preds[0].label_id == 7 and preds[0].mask.dtype == bool


def test_scene_gt_ids(dataset):
    scene = scenes_of(dataset)[0]
    gt = scene_gt_ids(scene, ClassSet.from_names(["chair", "table"]))
    assert sorted(np.unique(gt).tolist()) == [0, 1001, 1002, 2003]


def test_checkpoint_run_with_fake_grounder_writes_report_and_benchmark_files(dataset, tmp_path):
    cfg = EvalConfig(checkpoint=tmp_path / "ckpt", data=dataset, out=tmp_path / "out", write_predictions=True)
    res = run_checkpoint(cfg, grounder=OracleGrounder())
    tables, data = results_report(res, "fake")
    md, js = write_report(cfg.out, tables, data)
    doc = json.loads(js.read_text())
    assert doc["instseg"]["summary"]["ap"] == 1.0 and doc["grounding"]["accuracy"]["overall"]["acc@0.5"] == 1.0
    assert doc["instseg"]["per_class"]["chair"]["ap"] == 1.0
    assert "| chair | 100.0 | 100.0 | 100.0 |" in md.read_text()
    # the written benchmark files score the same through the files mode of the CLI
    bench = cfg.out / "benchmark"
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"ids": [1, 2, 3], "names": ["chair", "lamp", "table"]}))
    assert main(["--predictions", str(bench / "predictions"), "--gt", str(bench / "gt"),
                 "--classes", str(classes), "--out", str(tmp_path / "files")]) == 0
    doc2 = json.loads((tmp_path / "files" / "metrics.json").read_text())
    assert doc2["instseg"]["ap_per_overlap"] == doc["instseg"]["ap_per_overlap"]


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="either --checkpoint"):
        EvalConfig()
    with pytest.raises(ValueError, match="needs both --predictions"):
        EvalConfig(predictions=tmp_path)
    with pytest.raises(ValueError, match="--tasks"):
        EvalConfig(checkpoint=tmp_path, data=tmp_path, tasks="instseg,detection")



class WordEncoder:
    """A fast stand-in text encoder: one seeded random vector per word (no model to load)."""

    name, dim = "words", 384

    def encode(self, texts):
        import torch

        from liftgs.text import TextEncoding

        tokens, spans = [], []
        for text in texts:
            words, pos = text.split(), 0
            vecs, sp = [], []
            for w in words:
                start = text.index(w, pos)
                pos = start + len(w)
                g = torch.Generator().manual_seed(sum(map(ord, w)))
                vecs.append(torch.randn(self.dim, generator=g))
                sp.append((start, pos))
            tokens.append(torch.stack(vecs))
            spans.append(sp)
        pooled = torch.nn.functional.normalize(torch.stack([t.mean(0) for t in tokens]), dim=-1)
        return TextEncoding(tokens=tokens, spans=spans, pooled=pooled)


def test_model_grounder_calls_the_inference_api(dataset, monkeypatch):
    """ModelGrounder's wiring: ground() for names, ground_expressions() with the first span."""
    import torch

    from liftgs.eval import runner

    calls = []

    class Result:
        def __init__(self, n):
            self.masks, self.scores = torch.ones(2, n, dtype=torch.bool), torch.tensor([0.7, 0.2])

    class FakeInference:
        @staticmethod
        def ground(model, enc, points, colors, phrases, top_k=5, rank_by="tokens"):
            calls.append(("ground", list(phrases), top_k, tuple(points.shape), rank_by))
            return [Result(points.shape[0]) for _ in phrases]

        @staticmethod
        def ground_expressions(model, enc, points, colors, texts, spans, top_k=5):
            calls.append(("expr", list(texts), list(spans), top_k))
            return [Result(points.shape[0]) for _ in texts]

    g = runner.ModelGrounder.__new__(runner.ModelGrounder)
    g.inference, g.model, g.text_encoder, g.top_k = FakeInference, None, WordEncoder(), 4
    g.rank_by = "features"  # zero-shot: the Gaussian feature field ranks
    scene = scenes_of(dataset)[1]
    masks, scores = g.phrases(scene, ["chair", "lamp"])[0]
    assert masks.dtype == bool and masks.shape == (2, scene.num_points) and scores.tolist() == pytest.approx([0.7, 0.2])
    g.expressions(scene, scene.expressions[:2])
    assert calls[0] == ("ground", ["chair", "lamp"], 4, (scene.num_points, 3), "features")
    assert calls[1] == ("expr", ["the lamp", "the chair"], [(4, 8), (4, 9)], 4)


@pytest.mark.slow
def test_tiny_model_end_to_end(dataset, tmp_path):
    """The real model path: LiftGS.from_pretrained + liftgs.models.liftgs.inference on the fixture."""
    import torch

    from liftgs.eval.runner import ModelGrounder
    from liftgs.models.liftgs import LiftGS, ModelConfig, build_liftgs

    torch.manual_seed(0)
    ckpt = tmp_path / "ckpt"
    build_liftgs(ModelConfig.tiny(text_dim=384)).save_pretrained(ckpt)
    model = LiftGS.from_pretrained(ckpt).eval()
    grounder = ModelGrounder(model, WordEncoder(), top_k=3)
    scene = scenes_of(dataset)[0]
    masks, scores = grounder.phrases(scene, ["chair"])[0]
    assert masks.shape == (3, scene.num_points) and masks.dtype == bool and masks.any(axis=1).all()
    assert np.all(np.diff(scores) <= 0) and np.all((scores > 0) & (scores <= 1))  # ranked, calibrated
    cfg = EvalConfig(checkpoint=ckpt, data=dataset, out=tmp_path / "out", max_scenes=1, top_k=3)
    res = run_checkpoint(cfg, grounder=grounder)
    per_class = res.instseg.per_class()
    assert sorted(per_class) == ["chair", "table"]  # the categories of the one evaluated scene
    # both classes have GT, so every AP is computed (NaN would fail the range check)
    assert all(0.0 <= v <= 1.0 for ap in per_class.values() for v in ap.values())
    assert res.instseg.summary()["ap"] == pytest.approx((per_class["chair"]["ap"] + per_class["table"]["ap"]) / 2)
    assert res.accuracy["overall"]["n"] == 3 and res.f1["overall"]["n"] == 5


def test_report_writes_nan_as_dash_and_null(dataset, tmp_path):
    classes = ClassSet.from_names(["chair", "sofa"])
    res = evaluate_scenes(scenes_of(dataset), OracleGrounder(), classes, tasks=["instseg"])
    tables, data = results_report(res, "t")
    md, js = write_report(tmp_path, tables, data, stem="m", heading="t")
    assert "| sofa | - | - | - |" in md.read_text()
    assert json.loads(js.read_text())["instseg"]["per_class"]["sofa"] == {"ap": None, "ap50": None, "ap25": None}
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files
