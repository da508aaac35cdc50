"""GenSplat stages I and II (liftgs.recipes.gensplat) on fabricated rooms with stand-in
reconstructions (one Gaussian per point, liftgs.testing.splats): samples, the stage-I L1 against
a dense reference, the stage-II criterion on a hand-checked case, loss falling, --init, exact
resume, the CLI and one-line input errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from liftgs.testing.rooms import EMBEDDING_DIM, RoomTextEncoder


@pytest.fixture(scope="module")
def rooms(tmp_path_factory):
    """Four fabricated rooms (3 train, 1 val) + pseudo-labels + a recon root for all four."""
    from liftgs.testing import write_rooms
    from liftgs.testing.splats import write_point_recon

    root = write_rooms(tmp_path_factory.mktemp("gsrooms"))
    write_point_recon(root / "data", root / "recon")
    return root


def _common(rooms: Path, out: Path, **kw) -> dict:
    base = dict(data=rooms / "data", recon=rooms / "recon", out=out, steps=4, batch_size=1, image_size=48,
                num_pixels=256, views_per_scene=2, ckpt_every=2, log_every=1, tensorboard=False, progress=False,
                text_encoder="hash-32")
    base.update(kw)
    return base


def semantic_config(rooms: Path, out: Path, **kw):
    from liftgs.recipes.gensplat import GenSplatSemanticConfig

    return GenSplatSemanticConfig(**_common(rooms, out, labels=rooms / "labels", **kw))


def instance_config(rooms: Path, out: Path, **kw):
    from liftgs.recipes.gensplat import GenSplatInstanceConfig

    return GenSplatInstanceConfig(**_common(rooms, out, **kw))


def _dataset(rooms: Path, stage: str, **kw):
    from liftgs.recipes.common import scene_paths
    from liftgs.recipes.gensplat_data import GenSplatDataset

    args = dict(label_root=rooms / "labels") if stage == "semantic" else dict(text_encoder=RoomTextEncoder())
    args.update(image_size=48, num_pixels=256)
    args.update(kw)
    return GenSplatDataset(scene_paths(rooms / "data", "train"), rooms / "recon", stage, seed=1, **args)


# ------------------------------------------------------------------------------------ data
def test_semantic_samples_are_pure_labelled_pixels_with_their_segment_embedding(rooms):
    from liftgs.io.scene_dir import read_frame
    from liftgs.teachers.store import PseudoLabelStore

    ds = _dataset(rooms, "semantic")
    assert ds.embedding_dim == EMBEDDING_DIM and len(ds) == 3
    store = PseudoLabelStore(rooms / "labels")
    for pos in range(4):
        a, b = ds.sample(pos), ds.sample(pos)
        assert len(a.views) == 2 and a.views[0].frame != a.views[1].frame
        for va, vb in zip(a.views, b.views):
            assert torch.equal(va.pixels, vb.pixels) and torch.equal(va.targets, vb.targets)
            fr = read_frame(rooms / "data" / a.scene_id, va.frame)
            labels = store.get(a.scene_id, fr.name)
            seg = torch.from_numpy(labels.segments).reshape(-1)[va.pixels]
            assert (seg >= 0).all() and len(set(va.pixels.tolist())) == va.pixels.numel()
            torch.testing.assert_close(va.targets, torch.from_numpy(labels.embeddings)[seg])
    assert ds.sample(0).views[0].pixels.numel() == 256


def test_instance_samples_carry_gt_masks_classes_and_half_their_pixels_on_objects(rooms):
    from liftgs.io.scene_dir import read_frame, read_scene

    ds = _dataset(rooms, "instance", num_pixels=200)
    assert ds.vocabulary == sorted(ds.vocabulary) and ds.class_text.shape == (len(ds.vocabulary), EMBEDDING_DIM)
    for pos in range(3):
        s = ds.sample(pos)
        assert len(s.groups) == 1 and s.groups[0].source == "gt" and s.groups[0].views == [0, 1]
        grp = s.groups[0]
        scene = read_scene(rooms / "data" / s.scene_id, load_frames=False)
        ids = torch.cat([torch.from_numpy(read_frame(rooms / "data" / s.scene_id, v.frame).instance_ids)
                         .reshape(-1)[v.pixels] for v in s.views])
        for k, (inst, cls) in enumerate(zip(grp.ids, grp.classes.tolist())):
            assert torch.equal(grp.masks[k].bool(), ids == inst)
            assert ds.vocabulary[cls] == scene.objects[inst].category
        for v in s.views:
            assert v.pixels.numel() == 200
        on_objects = int(grp.masks.sum())
        assert on_objects >= 200  # at least half of the 2 x 200 pixels lie on the targets
        assert s.num_targets == len(grp.ids) >= 1
    a, b = ds.sample(5), ds.sample(5)
    assert torch.equal(a.groups[0].masks, b.groups[0].masks) and torch.equal(a.views[1].pixels, b.views[1].pixels)


def test_instance_targets_fall_back_to_teacher_segments_one_group_per_view(rooms, tmp_path):
    """Scenes without instance maps: each view's pseudo-label segments are its targets, classed
    by the nearest class-name embedding (the fabricated labels use the category vectors)."""
    from liftgs.io.scene_dir import read_scene, write_scene, write_splits
    from liftgs.types import Frame

    data = tmp_path / "data"
    for name in ("room0", "room1"):
        s = read_scene(rooms / "data" / name)
        s.frames = [Frame(f.camera, f.rgb, f.depth, None, f.name) for f in s.frames]
        write_scene(s, data)
    write_splits(data, {"train": ["room0", "room1"]})
    from liftgs.recipes.gensplat_data import GenSplatDataset
    from liftgs.io.scene_dir import list_scenes

    ds = GenSplatDataset(list_scenes(data, "train"), rooms / "recon", "instance", seed=0,
                         label_root=rooms / "labels", text_encoder=RoomTextEncoder(), image_size=48, num_pixels=128)
    s = ds.sample(0)
    assert [g.source for g in s.groups] == ["teacher", "teacher"] and [g.views for g in s.groups] == [[0], [1]]
    scene = read_scene(data / s.scene_id, load_frames=False)
    categories = {scene.objects[k].category for k in scene.objects}
    for g in s.groups:
        assert g.masks.shape[1] == 128 and {ds.vocabulary[c] for c in g.classes.tolist()} <= categories
    with pytest.raises(Exception, match="no frame has an instance map"):
        GenSplatDataset(list_scenes(data, "train"), rooms / "recon", "instance", seed=0,
                        text_encoder=RoomTextEncoder())


# --------------------------------------------------------------------------------- stage I
def test_semantic_l1_equals_dense_reference_in_value_and_gradient(rooms):
    """The recipe's L1 (sampled pixels' weights, the seen Gaussians only, projection after
    compositing) == projecting every Gaussian's latent, rendering the full image with the dense
    reference backend and taking L1 at the same pixels."""
    from liftgs.models.gensplat import GenSplatConfig
    from liftgs.recipes.gensplat import SemanticStage, semantic_loss
    from liftgs.render import render_weights

    ds = _dataset(rooms, "semantic", num_pixels=300)
    s = ds.sample(2)
    torch.manual_seed(0)
    model = SemanticStage(GenSplatConfig.tiny(text_dim=EMBEDDING_DIM)).train()
    params = [p for p in model.parameters() if p.requires_grad]
    loss, scalars = semantic_loss(model([s]), [s])
    grads = torch.autograd.grad(loss, params, allow_unused=True)

    g = s.gaussians
    feats = model.semantic_head(model.encode(g))  # [N, F]: project first, then render
    diffs = []
    for v in s.views:
        w = render_weights(g.means, g.quats, g.scales, g.opacities, v.viewmat, v.K, v.width, v.height,
                           backend="reference")  # dense [H*W, N]
        image = w.values @ feats
        diffs.append((image[v.pixels] - v.targets).abs())
    ref = torch.cat(diffs).mean()
    ref_grads = torch.autograd.grad(ref, params, allow_unused=True)
    assert float(ref.detach()) > 0.01
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    assert scalars["l1"] == pytest.approx(float(ref.detach()), rel=1e-5)
    used = 0
    for a, b, p in zip(grads, ref_grads, params):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
            used += 1
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    trained = {n.split(".")[0] for n, gr in zip(names, grads) if gr is not None}
    assert trained == {"encoder", "semantic_proj"} and used > 4


def test_semantic_loss_falls(rooms, tmp_path):
    from liftgs.models import load_model
    from liftgs.recipes.gensplat import SemanticStage, make_semantic_step_fn, model_config, run_gensplat_semantic
    from liftgs.train.loop import probe_loss, seed_everything
    from liftgs.train.optim import OptimConfig

    config = semantic_config(rooms, tmp_path / "s1", steps=30, ckpt_every=30,
                             optim=OptimConfig(lr=3e-3, warmup_steps=3))
    run_gensplat_semantic(config, text_encoder=RoomTextEncoder())
    seed_everything(config.seed)  # the run builds its initial model right after this
    initial = SemanticStage(model_config("tiny", EMBEDDING_DIM))
    saved = load_model(tmp_path / "s1")
    trained = SemanticStage(saved.config)
    trained.load_state_dict(saved.state_dict())
    step = make_semantic_step_fn(_dataset(rooms, "semantic"))
    probe = list(range(1000, 1006))
    before, after = probe_loss(initial, step, probe), probe_loss(trained, step, probe)
    print(f"stage I probe L1 {before['l1']:.4f} -> {after['l1']:.4f}, cos {before['cos']:.3f} -> {after['cos']:.3f}")
    assert after["l1"] < 0.8 * before["l1"] and after["cos"] > before["cos"] + 0.2
    cfg = json.loads((tmp_path / "s1" / "config.json").read_text())
    assert cfg["recipe"] == "gensplat-semantic" and cfg["num_scenes"] == 3


# -------------------------------------------------------------------------------- stage II
def test_instance_criterion_hand_checked():
    """Q = 3 queries, 4 pixels, 2 classes + no object, 2 targets; queries 0 and 2 fit targets 0
    and 1. Expected terms computed by hand (Mask2Former's formulas)."""
    from liftgs.recipes.gensplat import InstanceCriterion

    probs = torch.tensor([[0.9, 0.8, 0.1, 0.2], [0.5, 0.5, 0.5, 0.5], [0.1, 0.1, 0.9, 0.9]], requires_grad=True)
    logits = torch.tensor([[2.0, 0, 0], [0, 0, 2.0], [0, 2.0, 0]], requires_grad=True)
    masks = torch.tensor([[0.0, 0, 1, 1], [1.0, 1, 0, 0]])  # target 0: pixels 2, 3, class 1; target 1: 0, 1, class 0
    classes = torch.tensor([1, 0])
    crit = InstanceCriterion()
    q, t = crit.match(probs, logits, masks, classes)
    assert q.tolist() == [0, 2] and t.tolist() == [1, 0]
    ce = math.log(1 + 2 * math.exp(-2))  # every query's target logit is 2, the others 0; weights 1, 0.1, 1
    bce = ((-2 * math.log(0.9) - 2 * math.log(0.8)) / 4 + (-math.log(0.9))) / 2
    dice = ((1 - (2 * 1.7 + 1) / (2.0 + 2 + 1)) + (1 - (2 * 1.8 + 1) / (2.0 + 2 + 1))) / 2
    loss, scalars = crit([[(probs, logits)] * 2], [(masks, classes)], num_masks=2)
    assert scalars["ce"] == pytest.approx(ce, rel=1e-6) and scalars["ce_0"] == pytest.approx(ce, rel=1e-6)
    assert scalars["mask"] == pytest.approx(bce, rel=1e-5) and scalars["dice"] == pytest.approx(dice, rel=1e-6)
    assert float(loss.detach()) == pytest.approx(2 * (2 * ce + 5 * bce + 5 * dice), rel=1e-5)
    # a lone query matched to class 1 while "no object" wins: weighted mean over the queries
    one = crit([[(probs[:1], torch.tensor([[0.0, 0, 3.0]]))]], [(masks[:1], classes[:1])], num_masks=1)[1]
    assert one["ce"] == pytest.approx(-math.log(1 / (2 + math.exp(3))), rel=1e-6)
    loss.backward()
    assert probs.grad[1].abs().sum() == 0 and logits.grad[1].abs().sum() > 0  # unmatched: class term only


def test_instance_training_runs_and_init_copies_the_stage_one_encoder(rooms, tmp_path):
    """--init: encoder + semantic head == the stage-I run's, the decoder == the one built without
    --init (same seed); --freeze-encoder keeps them bitwise while the decoder trains."""
    from liftgs.models import load_model
    from liftgs.recipes.gensplat import (build_instance_model, load_stage_one, run_gensplat_instance,
                                         run_gensplat_semantic)
    from liftgs.train.loop import seed_everything
    from liftgs.train.logging import read_jsonl

    enc = RoomTextEncoder()
    run_gensplat_semantic(semantic_config(rooms, tmp_path / "s1", steps=2), text_encoder=enc)
    stage_one = load_model(tmp_path / "s1")
    first = stage_one.encoder_state_dict()
    init = load_stage_one(tmp_path / "s1", EMBEDDING_DIM, "rooms")
    config = instance_config(rooms, tmp_path / "s2", init=tmp_path / "s1")
    seed_everything(0)
    with_init = build_instance_model(config, EMBEDDING_DIM, init).state_dict()
    seed_everything(0)
    scratch = build_instance_model(instance_config(rooms, tmp_path / "x"), EMBEDDING_DIM).state_dict()
    for k, v in with_init.items():
        if k in first:
            assert torch.equal(v, first[k]), k
        else:
            assert torch.equal(v, scratch[k]), k
    assert any(not torch.equal(first[k], scratch[k]) for k in first)

    frozen = instance_config(rooms, tmp_path / "s2f", init=tmp_path / "s1", freeze_encoder=True, steps=2)
    result = run_gensplat_instance(frozen, text_encoder=enc)
    after = load_model(tmp_path / "s2f").state_dict()
    for k, v in first.items():
        assert torch.equal(after[k], v), f"{k} changed with a frozen encoder"
    assert any(not torch.equal(after[k], with_init[k]) for k in after if k.startswith("decoder."))
    logged = read_jsonl(tmp_path / "s2f")
    assert len(logged) == 2 and {"ce", "mask", "dice", "targets"} <= set(logged[-1])
    cfg = json.loads((tmp_path / "s2f" / "config.json").read_text())
    assert cfg["recipe"] == "gensplat-instance" and cfg["vocabulary"] and cfg["init_model"].endswith("model")
    assert result.step == 2


# ------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("stage", ["semantic", "instance"])
def test_exact_resume(rooms, tmp_path, stage):
    from safetensors.torch import load_file

    from liftgs.recipes.gensplat import run_gensplat_instance, run_gensplat_semantic

    run, make = ((run_gensplat_semantic, semantic_config) if stage == "semantic"
                 else (run_gensplat_instance, instance_config))

    class Killed(Exception):
        pass

    def kill(step, scalars):
        if step == 3:
            raise Killed

    enc = RoomTextEncoder()
    run(make(rooms, tmp_path / "full", batch_size=2), text_encoder=enc)
    with pytest.raises(Killed):
        run(make(rooms, tmp_path / "cut", batch_size=2), text_encoder=enc, on_step_end=kill)
    run(make(rooms, tmp_path / "cut", batch_size=2, resume=True), text_encoder=enc)
    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after kill + resume"


# ---------------------------------------------------------------------------- CLI, errors
def test_cli_runs_both_stages_and_rereads_its_config(rooms, tmp_path):
    from liftgs.cli import main as cli_main
    from liftgs.train.checkpoint import latest_checkpoint

    common = ["--data", str(rooms / "data"), "--recon", str(rooms / "recon"), "--text-encoder", "hash-32",
              "--image-size", "32", "--num-pixels", "128", "--steps", "1", "--no-tensorboard", "--no-progress"]
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    assert cli_main(["gensplat-semantic", *common, "--labels", str(rooms / "labels"), "--out", str(s1)]) == 0
    assert cli_main(["gensplat-instance", *common, "--init", str(s1), "--out", str(s2)]) == 0
    assert (s2 / "model" / "model.safetensors").is_file() and latest_checkpoint(s2).name == "step_00000001"
    assert cli_main(["gensplat-instance", "--config", str(s2 / "config.json"), "--steps", "2", "--resume"]) == 0
    assert latest_checkpoint(s2).name == "step_00000002"
    cfg = json.loads((s2 / "config.json").read_text())["gensplat-instance"]
    assert cfg["steps"] == 2 and cfg["init"] == str(s1) and cfg["image_size"] == 32


def test_inputs_are_checked_with_one_line_errors(rooms, tmp_path, cli_error):
    recon = tmp_path / "recon"
    shutil.copytree(rooms / "recon", recon)
    shutil.rmtree(recon / "room1")
    labels = tmp_path / "labels"
    shutil.copytree(rooms / "labels", labels)
    shutil.rmtree(labels / "room2")
    base = ["--data", str(rooms / "data"), "--text-encoder", "hash-32", "--steps", "1", "--no-progress"]
    err = cli_error(["gensplat-semantic", *base, "--recon", str(recon), "--labels",
                                   str(rooms / "labels"), "--out", str(tmp_path / "a")])
    assert str(recon / "room1" / "gaussians.ply") in err and "1 of 3 scenes have no reconstruction" in err
    err = cli_error(["gensplat-semantic", *base, "--recon", str(rooms / "recon"), "--labels",
                                   str(labels), "--out", str(tmp_path / "b")])
    assert str(labels / "room2") in err and "no cached pseudo-label" in err
    err = cli_error(["gensplat-semantic", *base[:2], "--text-encoder", "hash-16", *base[4:],
                                   "--recon", str(rooms / "recon"), "--labels", str(rooms / "labels"),
                                   "--out", str(tmp_path / "c")])
    assert "32-d" in err and "16-d" in err and str(rooms / "labels") in err
    err = cli_error(["gensplat-semantic", *base, "--recon", str(rooms / "recon"),
                                   "--out", str(tmp_path / "d")])
    assert "--labels" in err
    bad = tmp_path / "bad_recon"
    shutil.copytree(rooms / "recon", bad)
    (bad / "room0" / "gaussians.ply").write_bytes(b"ply\nformat ascii 1.0\nend_header\n")
    err = cli_error(["gensplat-instance", *base, "--recon", str(bad), "--out", str(tmp_path / "e")])
    assert str(bad / "room0" / "gaussians.ply") in err
    err = cli_error(["gensplat-instance", *base, "--recon", str(rooms / "recon"),
                                   "--init", str(tmp_path / "nothing"), "--out", str(tmp_path / "f")])
    assert str(tmp_path / "nothing") in err


# ------------------------------------------------------------------------------ data-parallel
def _ddp_worker(rank: int, world: int, port: int, rooms: str, out: str) -> None:
    import os

    from safetensors.torch import save_file

    from liftgs.recipes.gensplat import run_gensplat_instance, run_gensplat_semantic
    from liftgs.train.distributed import cleanup_distributed, init_distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    try:
        enc = RoomTextEncoder()
        s1 = run_gensplat_semantic(semantic_config(Path(rooms), Path(out) / "s1", steps=2), info=info,
                                   text_encoder=enc)
        s2 = run_gensplat_instance(instance_config(Path(rooms), Path(out) / "s2", steps=2, init=Path(out) / "s1"),
                                   info=info, text_encoder=enc)
        for name, result in (("s1", s1), ("s2", s2)):
            save_file({k: v.contiguous() for k, v in result.model.state_dict().items()},
                      str(Path(out) / f"{name}_rank{rank}.safetensors"))
    finally:
        cleanup_distributed()


@pytest.mark.slow
def test_ddp_two_processes_both_stages(rooms, tmp_path):
    """Both stages under two CPU processes (gloo): every trained parameter agrees across ranks
    (the stage forwards carry every gradient through DDP), rank 0 writes the run."""
    import socket

    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(rooms), str(tmp_path)), nprocs=2, join=True)
    for name in ("s1", "s2"):
        r0, r1 = (load_file(str(tmp_path / f"{name}_rank{r}.safetensors")) for r in (0, 1))
        saved = load_file(str(tmp_path / name / "model" / "model.safetensors"))
        for k, v in saved.items():
            assert torch.isfinite(v).all() and torch.equal(v, r0[k]), k
            if "running_" not in k and "num_batches_tracked" not in k:
                assert torch.equal(v, r1[k]), f"{name}: {k} differs between ranks"
        cfg = json.loads((tmp_path / name / "config.json").read_text())
        assert cfg["world_size"] == 2


@pytest.mark.parametrize("stage", ["semantic", "instance"])
def test_loader_workers_give_bitwise_the_same_run(rooms, tmp_path, stage):
    from safetensors.torch import load_file

    from liftgs.recipes.gensplat import run_gensplat_instance, run_gensplat_semantic

    run, make = ((run_gensplat_semantic, semantic_config) if stage == "semantic"
                 else (run_gensplat_instance, instance_config))
    run(make(rooms, tmp_path / "inline", steps=3), text_encoder=RoomTextEncoder())
    run(make(rooms, tmp_path / "workers", steps=3, num_workers=2), text_encoder=RoomTextEncoder())
    a = load_file(str(tmp_path / "inline" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "workers" / "model" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_feature_recipes_refuse_loader_workers(tmp_path):
    from liftgs.recipes.gensplat_frames import GenSplatFramesConfig
    from liftgs.recipes.gensplat_language import GenSplatLanguageConfig

    for cls in (GenSplatLanguageConfig, GenSplatFramesConfig):
        with pytest.raises(ValueError, match="--num-workers: this recipe trains on scene features"):
            cls(num_workers=2)


@pytest.mark.parametrize("stage", ["semantic", "instance"])
def test_bf16_runs_keep_float32_weights(rooms, tmp_path, stage):
    """--precision bf16: the first-step loss within 10 % of float32's, float32 weights out."""
    from helpers.precision import run_both_precisions

    from liftgs.recipes.gensplat import run_gensplat_instance, run_gensplat_semantic

    run, make = ((run_gensplat_semantic, semantic_config) if stage == "semantic"
                 else (run_gensplat_instance, instance_config))
    run_both_precisions(lambda out, precision: run(make(rooms, out, steps=2, precision=precision),
                                                   text_encoder=RoomTextEncoder()), tmp_path)
