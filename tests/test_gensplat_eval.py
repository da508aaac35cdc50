"""GenSplat evaluation (``liftgs gensplat-eval``): the transfer, the inference rules, AP / mIoU on
fabricated rooms with a model object that follows the GenSplat contract, the side-by-side with a
LIFT-GS-style grounder, and the command's one-line errors."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from liftgs.eval import gensplat as gs
from liftgs.eval.instance_ap import ClassSet, InstancePrediction
from liftgs.io import write_scene, write_splits
from liftgs.io.splat_ply import SH_C0, SplatCloud, write_splat_ply
from liftgs.testing import fabricate_scene
from liftgs.text import load_text_encoder

TEXT_DIM = 32
FLOATERS = 30  # low-opacity Gaussians sitting on each object's surface


def logit(p):
    p = np.asarray(p, dtype=np.float64)
    return np.log(p / (1 - p))


# ----------------------------------------------------------------------------- the rules


def test_nearest_gaussian_matches_brute_force():
    rng = np.random.default_rng(0)
    points, means = rng.random((400, 3)), rng.random((150, 3))
    opacities = rng.random(150)
    for floor in (0.0, 0.3, 0.8):
        index, distance = gs.nearest_gaussian(points, means, opacities, floor)
        cand = np.flatnonzero(opacities > floor) if floor > 0 else np.arange(150)
        d = np.linalg.norm(points[:, None] - means[None, cand], axis=-1)
        assert np.array_equal(index, cand[d.argmin(1)])
        assert np.allclose(distance, d.min(1))
        assert (opacities[index] > floor).all() or floor == 0.0


def test_nearest_gaussian_refuses_an_empty_candidate_set():
    with pytest.raises(ValueError, match="no Gaussian has an opacity above the floor 0.9"):
        gs.nearest_gaussian(np.zeros((2, 3)), np.zeros((3, 3)), np.full(3, 0.5), 0.9)
    with pytest.raises(ValueError, match="opacity_floor must be in"):
        gs.nearest_gaussian(np.zeros((2, 3)), np.zeros((3, 3)), np.full(3, 0.5), 1.0)


def test_semantic_from_instances_sums_over_queries():
    # classes 0, 1 + no-object; point 3 is covered equally by all three queries: two medium
    # class-0 queries outvote one confident class-1 query (a sum, not the best query)
    probs = np.array([[0.6, 0.1, 0.3], [0.6, 0.1, 0.3], [0.05, 0.9, 0.05]])
    sig = np.array([[0.9, 0.5, 0.1, 0.8],
                    [0.1, 0.2, 0.1, 0.8],
                    [0.1, 0.6, 0.9, 0.8]])
    expected = (sig.T @ probs[:, :2]).argmax(1)
    assert expected.tolist() == [0, 1, 1, 0]
    got = gs.semantic_from_instances(torch.tensor(logit(sig)), torch.tensor(np.log(probs)))
    assert got.tolist() == [0, 1, 1, 0]
    # the no-object column never wins, however large
    probs_noobj = np.array([[0.2, 0.1, 0.7]])
    assert gs.semantic_from_instances(logit([[0.9, 0.9]]), np.log(probs_noobj)).tolist() == [0, 0]


def test_semantic_from_latents_is_the_nearest_class_by_cosine():
    text = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    emb = np.array([[10.0, 1.0], [0.1, 0.5], [-3.0, -2.0], [-0.1, -1.0]])
    assert gs.semantic_from_latents(emb, text).tolist() == [0, 1, 2, 2]


def test_instance_predictions_rule():
    # 3 queries over 4 points, 2 classes (+ no object)
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.3, 0.2]])
    sig = np.array([[0.9, 0.7, 0.2, 0.5],  # mask {0, 1} (0.5 is not > 0.5), confidence 0.8
                    [0.1, 0.1, 0.95, 0.85],  # mask {2, 3}, confidence 0.9
                    [0.4, 0.3, 0.2, 0.1]])  # empty: dropped
    preds = gs.instance_predictions(logit(sig), np.log(probs), label_ids=[7, 9])
    assert len(preds) == 2
    first, second = preds  # by descending score: 0.7 * 0.8 = 0.56, then 0.6 * 0.9 = 0.54
    assert first.label_id == 7 and first.mask.tolist() == [True, True, False, False]
    assert first.score == pytest.approx(0.7 * 0.8, rel=1e-5)
    assert second.label_id == 9 and second.mask.tolist() == [False, False, True, True]
    assert second.score == pytest.approx(0.6 * 0.9, rel=1e-5)
    with pytest.raises(ValueError, match=r"class_logits must be \[Q, 3\]"):
        gs.instance_predictions(logit(sig), np.log(probs[:, :2]), label_ids=[7, 9])


def test_semantic_from_predictions_and_scannet_iou():
    P = 6
    m = lambda idx: np.isin(np.arange(P), idx)  # noqa: E731
    preds = [InstancePrediction(m([0, 1, 2]), 1, 0.5), InstancePrediction(m([2, 3]), 2, 0.4),
             InstancePrediction(m([2]), 2, 0.3)]
    pred = gs.semantic_from_predictions(preds, label_ids=[1, 2], num_points=P)
    # point 2: class 2 gets 0.4 + 0.3 = 0.7 > 0.5; points 4, 5 uncovered
    assert pred.tolist() == [0, 0, 1, 1, -1, -1]
    gt = np.array([0, 0, 0, 1, 1, -1])  # point 5 not evaluated
    tp, fp, fn = gs.semantic_counts(pred, gt, 2)
    assert tp.tolist() == [2, 1] and fp.tolist() == [0, 1] and fn.tolist() == [1, 1]
    sem = gs.SemanticResult(ClassSet.from_names(["a", "b"]), "from-predictions", np.stack([tp, fp, fn]))
    assert sem.per_class() == pytest.approx({"a": 2 / 3, "b": 1 / 3})
    assert sem.miou() == pytest.approx(0.5)


def test_mean_se():
    out = gs.mean_se([0.2, 0.4, float("nan"), 0.6])
    assert out["n"] == 3 and out["mean"] == pytest.approx(0.4) and out["se"] == pytest.approx(0.2 / math.sqrt(3))
    assert math.isnan(gs.mean_se([0.5])["se"]) and gs.mean_se([])["n"] == 0


# ----------------------------------------------------------------------------- a fake model


class OracleGenSplat(torch.nn.Module):
    """Follows the GenSplat contract on SplatClouds (identity ``to_input``) and knows each room's
    ground truth through the ``room`` extra property of its Gaussians: one query per object with
    its exact mask, two empty queries, class logits from the text vectors of the categories.
    Gaussians of opacity < 0.5 (floaters) belong to no object. ``shuffle`` rotates the classes."""

    def __init__(self, scenes, encoder, shuffle: bool = False) -> None:
        super().__init__()
        self.scenes, self.encoder, self.shuffle = scenes, encoder, shuffle
        self.config = SimpleNamespace(text_dim=TEXT_DIM)
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.calls = []

    def _instances(self, g):
        scene = self.scenes[int(g.extra["room"][0])]
        inst = scene.instance_ids[cKDTree(scene.points).query(g.means)[1]].copy()
        inst[g.opacities() < 0.5] = -1
        return scene, inst

    def forward(self, g, class_text):
        self.calls.append(("forward", class_text.shape))
        scene, inst = self._instances(g)
        oids = sorted(scene.objects)
        cats = [scene.objects[o].category for o in oids]
        if self.shuffle:
            cats = cats[1:] + cats[:1]
        masks = [np.where(inst == o, 8.0, -8.0) for o in oids] + [np.full(len(inst), -8.0)] * 2
        vec = torch.nn.functional.normalize(self.encoder.encode(cats).pooled, dim=1)
        cls = 10 * vec @ torch.nn.functional.normalize(class_text, dim=1).T  # [objects, K]
        cls = torch.cat([torch.cat([cls, torch.full((len(oids), 1), -5.0)], 1),
                         torch.cat([torch.zeros(2, class_text.shape[0]), torch.full((2, 1), 10.0)], 1)])
        return SimpleNamespace(mask_logits=torch.tensor(np.array(masks), dtype=torch.float32), class_logits=cls,
                               aux=[], queries=torch.zeros(len(masks), 4))

    def encode(self, g):
        self.calls.append(("encode",))
        scene, inst = self._instances(g)
        latents = torch.zeros(len(inst), TEXT_DIM)
        for o, info in scene.objects.items():
            latents[torch.from_numpy(inst == o)] = self.encoder.encode([info.category]).pooled[0]
        return latents

    def semantic_head(self, latents):
        return latents @ torch.eye(TEXT_DIM)


def recon_of(scene, room: int, seed: int = 0) -> SplatCloud:
    """One Gaussian per point (jittered by <= 1 mm, shuffled) plus FLOATERS low-opacity Gaussians
    0.01 mm from points of every object."""
    rng = np.random.default_rng(seed)
    means = scene.points + rng.uniform(-0.001, 0.001, scene.points.shape)
    opacity = np.full(len(means), 0.9)
    floaters = [scene.points[rng.choice(np.flatnonzero(scene.instance_ids == o), FLOATERS, replace=False)] + 1e-5
                for o in scene.objects]
    means = np.concatenate([means, *floaters]).astype(np.float32)
    opacity = np.concatenate([opacity, np.full(len(means) - len(opacity), 0.1)])
    order = rng.permutation(len(means))
    N = len(means)
    return SplatCloud(means=means[order], sh=np.zeros((N, 1, 3), np.float32),
                      opacity_logits=logit(opacity[order]).astype(np.float32),
                      log_scales=np.full((N, 3), np.log(0.01), np.float32),
                      quats=np.tile(np.float32([1, 0, 0, 0]), (N, 1)),
                      extra={"room": np.full(N, room, np.float32)})


@pytest.fixture(scope="module")
def rooms(tmp_path_factory):
    """Three fabricated rooms on disk (split "val") with their reconstructions."""
    root = tmp_path_factory.mktemp("gensplat")
    scenes = [fabricate_scene(f"room{i}", seed=i)[0] for i in range(3)]
    for i, s in enumerate(scenes):
        write_scene(s, root / "data")
        write_splat_ply(root / "recon" / s.scene_id / "gaussians.ply", recon_of(s, i, seed=i))
    write_splits(root / "data", {"train": [], "val": [s.scene_id for s in scenes]})
    return SimpleNamespace(root=root, data=root / "data", recon=root / "recon", scenes=scenes)


@pytest.fixture(scope="module")
def encoder():
    return load_text_encoder(f"hash-{TEXT_DIM}")


def classes_of(scenes):
    return ClassSet.from_names(sorted({o.category for s in scenes for o in s.objects.values()}))


def pairs(rooms):
    return [(s, rooms.recon / s.scene_id / "gaussians.ply") for s in rooms.scenes]


def identity(cloud):
    return cloud


def run(rooms, encoder, **kw):
    model = kw.pop("model", None) or OracleGenSplat(rooms.scenes, encoder)
    return gs.evaluate_gensplat(pairs(rooms), model, encoder, classes_of(rooms.scenes), to_input=identity, **kw)


def test_perfect_model_scores_100(rooms, encoder):
    res = run(rooms, encoder, opacity_floor=0.5)
    m = res.methods[0]
    assert m.instseg.summary() == {"ap": 1.0, "ap50": 1.0, "ap25": 1.0}
    assert all(v["ap"] == 1.0 for v in m.instseg.per_class().values())
    assert m.semantic.rule == "from-instances" and m.semantic.miou() == 1.0
    assert m.votes.rule == "from-predictions" and m.votes.miou() == 1.0
    stats = m.scene_stats()
    assert stats["ap50"] == {"mean": 1.0, "se": 0.0, "n": 3} and stats["miou"]["mean"] == 1.0
    assert set(res.info["transfer_distance"]) == {"room0", "room1", "room2"}
    assert res.info["transfer_distance"]["room0"]["distance_max"] < 0.002


def test_floaters_spoil_the_points_they_capture_unless_the_opacity_floor_skips_them(rooms, encoder):
    m = run(rooms, encoder).methods[0]  # no floor: object points next to a floater take its values
    assert m.instseg.summary()["ap"] == 1.0  # masks lose 30 of ~600 points: IoU stays > 0.9
    assert m.semantic.miou() < 1.0 and m.votes.miou() < 1.0
    assert m.votes.counts[2].sum() >= FLOATERS * 9  # 9 objects: every captured point is uncovered (FN)


def test_shuffled_classes_score_lower(rooms, encoder):
    model = OracleGenSplat(rooms.scenes, encoder, shuffle=True)
    m = run(rooms, encoder, model=model, opacity_floor=0.5).methods[0]
    assert m.instseg.summary()["ap"] < 0.5 and m.semantic.miou() < 0.5


def test_stage_one_latents(rooms, encoder):
    model = OracleGenSplat(rooms.scenes, encoder)
    res = run(rooms, encoder, model=model, instseg=False, semantic="from-latents", opacity_floor=0.5)
    m = res.methods[0]
    assert m.instseg is None and m.votes is None and m.semantic.rule == "from-latents"
    assert m.semantic.miou() == 1.0
    assert {c[0] for c in model.calls} == {"encode"}  # no decoder call for a stage-I evaluation


def test_scene_vocabulary_passes_only_present_classes(rooms, encoder):
    model = OracleGenSplat(rooms.scenes, encoder)
    m = run(rooms, encoder, model=model, vocabulary="scene", opacity_floor=0.5).methods[0]
    assert m.instseg.summary()["ap"] == 1.0
    assert all(shape[0] == 3 for _, shape in model.calls)  # each room has 3 of the 4 categories


class OracleGrounder:
    """A LIFT-GS-style grounder: each category's GT masks (score 0.9) and a low-scored stray mask."""

    def phrases(self, scene, phrases):
        out = []
        for name in phrases:
            masks = [scene.instance_ids == k for k, o in scene.objects.items() if o.category == name]
            stray = np.zeros(scene.num_points, bool)
            stray[: 150] = True
            masks.append(stray)
            out.append((np.array(masks), np.array([0.9] * (len(masks) - 1) + [0.05])))
        return out

    def expressions(self, scene, exprs):
        raise AssertionError("not used")


def test_side_by_side_baseline_matches_liftgs_eval(rooms, encoder):
    from liftgs.eval.runner import evaluate_scenes

    classes = classes_of(rooms.scenes)
    res = run(rooms, encoder, baseline=OracleGrounder(), opacity_floor=0.5, names=("G", "L"))
    gen, base = res.methods
    assert (gen.name, base.name) == ("G", "L")
    ref = evaluate_scenes(rooms.scenes, OracleGrounder(), classes, tasks=["instseg"])
    assert np.array_equal(base.instseg.ap, ref.instseg.ap, equal_nan=True)  # the same numbers as liftgs eval
    assert base.semantic is None and base.votes.rule == "from-predictions"
    assert base.votes.miou() == 1.0  # the stray masks land on the floor (not evaluated)
    tables, data = gs.gensplat_report(res)
    summary = tables[0]
    assert [r[:2] for r in summary.rows] == [["G", "from-instances"], ["G", "from-predictions"],
                                             ["L", "from-predictions"]]
    md = summary.to_markdown()
    assert "| G | from-instances | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 ± 0.0 | 100.0 ± 0.0 |" in md
    assert [m["name"] for m in data["methods"]] == ["G", "L"]


# ----------------------------------------------------------------------------- the command


@pytest.fixture
def fake_loading(rooms, encoder, monkeypatch, tmp_path):
    """``--model`` loads the oracle (its folder records text_dim 32); GaussianInput = the cloud."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"family": "gensplat", "text_dim": TEXT_DIM}))
    model = OracleGenSplat(rooms.scenes, encoder)
    monkeypatch.setattr(gs, "_load", lambda path, family, device: (model, model_dir))
    monkeypatch.setattr(gs, "_default_to_input", lambda: identity)
    return model_dir


def cli(args, capsys):
    from liftgs.cli import main

    rc = main(["gensplat-eval", *map(str, args)])
    return rc, capsys.readouterr()


def test_command_writes_the_report(rooms, fake_loading, tmp_path, capsys):
    out = tmp_path / "out"
    rc, io = cli(["--model", fake_loading, "--data", rooms.data, "--recon", rooms.recon, "--out", out,
                  "--text-encoder", f"hash-{TEXT_DIM}", "--opacity-floor", "0.5"], capsys)
    assert rc == 0, io.err
    doc = json.loads((out / "metrics.json").read_text())
    method = doc["methods"][0]
    assert method["instseg"]["summary"]["ap"] == 1.0 and method["semantic"]["miou"] == 1.0
    assert method["scene_stats"]["ap50"]["n"] == 3 and doc["info"]["scenes"] == ["room0", "room1", "room2"]
    assert doc["config"]["opacity_floor"] == 0.5 and doc["info"]["text_encoder"] == f"hash-{TEXT_DIM}"
    assert "| chair | 100.0 | 100.0 | 100.0 |" in (out / "metrics.md").read_text()
    assert "AP50 per scene" in io.out and not list(out.glob(".*.tmp"))


def test_command_one_line_errors(rooms, fake_loading, tmp_path, capsys):
    base = ["--model", fake_loading, "--data", rooms.data, "--out", tmp_path / "e"]
    # a scene without its reconstruction: the file is named
    partial = tmp_path / "recon"
    (partial / "room0").mkdir(parents=True)
    (partial / "room0" / "gaussians.ply").write_bytes((rooms.recon / "room0" / "gaussians.ply").read_bytes())
    rc, io = cli([*base, "--recon", partial, "--text-encoder", f"hash-{TEXT_DIM}"], capsys)
    assert rc == 2 and io.err.count("\n") == 1
    assert io.err.startswith(f"liftgs gensplat-eval: {partial / 'room1' / 'gaussians.ply'}: no reconstruction "
                             "for scene 'room1'")
    # the text encoder's width differs from the model's
    rc, io = cli([*base, "--recon", rooms.recon, "--text-encoder", "hash-16"], capsys)
    assert rc == 2 and io.err.count("\n") == 1
    assert io.err.startswith(f"liftgs gensplat-eval: {fake_loading / 'config.json'}: text_dim is 32 but the "
                             "text encoder 'hash-16' gives 16-d vectors")
    rc, io = cli(["--model", fake_loading, "--data", rooms.data], capsys)
    assert rc == 2 and io.err == "liftgs gensplat-eval: --recon is required (gensplat-eval needs --model, --data " \
                                 "and --recon)\n"
    assert not (tmp_path / "e").exists()  # nothing written by a failed evaluation


def test_command_refuses_a_liftgs_model(rooms, tmp_path, capsys):
    rc, io = cli(["--model", "liftgs-tiny-finetuned", "--data", rooms.data, "--recon", rooms.recon,
                  "--out", tmp_path / "e"], capsys)
    assert rc == 2 and io.err.count("\n") == 1
    assert "family is 'liftgs'; use `liftgs eval` for LIFT-GS models" in io.err


def test_stage_one_run_defaults_to_latents(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "model").mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"recipe": "gensplat-semantic", "gensplat-semantic": {},
                                                     "text_encoder": "hash-32"}))
    assert gs.recorded_stage(run_dir / "model") == "semantic"
    assert gs._recorded_text_encoder(run_dir / "model") == "hash-32"
    cfg = gs.GenSplatEvalConfig(model=run_dir, data=tmp_path, recon=tmp_path)
    assert gs._plan(cfg, run_dir / "model")[:2] == (False, "from-latents")
    cfg = gs.GenSplatEvalConfig(model=run_dir, data=tmp_path, recon=tmp_path, tasks="instseg,semantic",
                                semantic="from-instances")
    with pytest.warns(UserWarning, match="no trained instance decoder"):
        assert gs._plan(cfg, run_dir / "model")[:2] == (True, "from-instances")
    (run_dir / "config.json").write_text(json.dumps({"recipe": "gensplat-instance", "gensplat-instance": {}}))
    cfg = gs.GenSplatEvalConfig(model=run_dir, data=tmp_path, recon=tmp_path)
    assert gs._plan(cfg, run_dir / "model")[:2] == (True, "from-instances")


def test_stage_is_found_from_a_checkpoint_folder(tmp_path):
    model_dir = tmp_path / "run" / "checkpoints" / "step_00000010" / "model"
    model_dir.mkdir(parents=True)
    (tmp_path / "run" / "config.json").write_text(json.dumps({"recipe": "gensplat-semantic"}))
    assert gs.recorded_stage(model_dir) == "semantic"
    assert gs.recorded_stage(tmp_path) is None


def test_tiny_gensplat_model_end_to_end(rooms, tmp_path, capsys):
    """The real family: a fresh tiny GenSplat saved as a model folder, loaded by the command,
    fed GaussianInput.from_splat of the reconstruction."""
    from liftgs.models import build_model

    torch.manual_seed(0)
    build_model("gensplat", "tiny", TEXT_DIM).save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    rc, io = cli(["--model", tmp_path / "model", "--data", rooms.data, "--recon", rooms.recon, "--out", out,
                  "--text-encoder", f"hash-{TEXT_DIM}", "--max-scenes", "1"], capsys)
    assert rc == 0, io.err
    method = json.loads((out / "metrics.json").read_text())["methods"][0]
    assert method["semantic"]["rule"] == "from-instances"
    assert 0.0 <= method["semantic"]["miou"] <= 1.0
    assert all(v is None or 0.0 <= v <= 1.0 for v in method["instseg"]["summary"].values())


def test_stage_one_run_folder_end_to_end(rooms, tmp_path, capsys):
    """A run folder recorded by the stage-I recipe: its text encoder and the latents rule are
    taken from its config.json, and the decoder is not scored."""
    from liftgs.models import build_model

    torch.manual_seed(0)
    run_dir = tmp_path / "run"
    build_model("gensplat", "tiny", TEXT_DIM).save_pretrained(run_dir / "model")
    (run_dir / "config.json").write_text(json.dumps({"recipe": "gensplat-semantic", "gensplat-semantic": {},
                                                     "text_encoder": f"hash-{TEXT_DIM}"}))
    out = tmp_path / "out"
    rc, io = cli(["--model", run_dir, "--data", rooms.data / "room1", "--recon", rooms.recon, "--out", out], capsys)
    assert rc == 0, io.err
    doc = json.loads((out / "metrics.json").read_text())
    method = doc["methods"][0]
    assert doc["info"]["stage"] == "semantic" and doc["info"]["text_encoder"] == f"hash-{TEXT_DIM}"
    assert doc["info"]["scenes"] == ["room1"]  # --data may be one scene folder
    assert "instseg" not in method and method["semantic"]["rule"] == "from-latents"
    assert 0.0 <= method["semantic"]["miou"] <= 1.0
    assert "| GenSplat (" in io.out and "| from-latents | - | - | - |" in io.out
