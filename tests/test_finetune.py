"""Fine-tuning with 3D labels end to end on tiny fabricated rooms (liftgs.testing.rooms), and the
recipes' bad-input errors."""

from __future__ import annotations

import pytest
import torch

from liftgs.testing.rooms import RoomTextEncoder

from helpers.recipe_configs import pretrain_config


def test_finetune_loss_falls_from_pretrained(dataset, tmp_path):
    from liftgs.losses import GroundingCriterion
    from liftgs.models.liftgs import LiftGS
    from liftgs.recipes.finetune import FinetuneConfig, FinetuneDataset, make_step_fn, run_finetune
    from liftgs.train.loop import probe_loss
    from liftgs.train.optim import OptimConfig
    from liftgs.recipes.pretrain import run_pretrain, scene_paths

    run_pretrain(pretrain_config(dataset, tmp_path / "pre", steps=2))
    cfg = FinetuneConfig(data=dataset / "data", out=tmp_path / "ft", init=tmp_path / "pre",
                         task="both", steps=40, batch_size=1, ckpt_every=20, log_every=1,
                         tensorboard=False, progress=False, optim=OptimConfig(lr=1e-3, warmup_steps=5))
    res = run_finetune(cfg, text_encoder=RoomTextEncoder())
    assert res.step == 40 and (tmp_path / "ft" / "model" / "model.safetensors").is_file()
    ds = FinetuneDataset(scene_paths(cfg.data, "train"), RoomTextEncoder(), seed=0, task="both")
    step = make_step_fn(ds, GroundingCriterion(), torch.device("cpu"))
    probe = list(range(1000, 1006))
    before = probe_loss(LiftGS.from_pretrained(tmp_path / "pre" / "model"), step, probe)
    after = probe_loss(LiftGS.from_pretrained(tmp_path / "ft" / "model"), step, probe)
    print(f"finetune probe loss {before['loss']:.2f} -> {after['loss']:.2f}")
    assert after["loss"] <= 0.6 * before["loss"]


def test_finetune_exact_resume(dataset, tmp_path):
    from safetensors.torch import load_file

    from liftgs.recipes.finetune import FinetuneConfig, run_finetune

    class Killed(Exception):
        pass

    def kill(step, scalars):
        if step == 2:
            raise Killed

    def cfg(out, resume=False):
        return FinetuneConfig(data=dataset / "data", out=out, task="both", steps=3, batch_size=1,
                              ckpt_every=2, tensorboard=False, progress=False, resume=resume,
                              data_fraction=0.67, loss_points=500)

    run_finetune(cfg(tmp_path / "full"), text_encoder=RoomTextEncoder())
    with pytest.raises(Killed):
        run_finetune(cfg(tmp_path / "cut"), text_encoder=RoomTextEncoder(), on_step_end=kill)
    run_finetune(cfg(tmp_path / "cut", resume=True), text_encoder=RoomTextEncoder())
    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after kill + resume"


def test_finetune_data_fraction_and_targets(dataset):
    from liftgs.recipes.finetune_data import FinetuneDataset
    from liftgs.recipes.pretrain import scene_paths

    paths = scene_paths(dataset / "data", "train")
    ds = FinetuneDataset(paths, RoomTextEncoder(), seed=0, task="refer", data_fraction=0.34)
    assert len(ds.scenes) == 2 and len(ds) == 6  # ceil(0.34 * 3) scenes x 3 expressions
    s = ds.sample(0)
    text_tokens = s.queries.shape[0]
    assert s.task == "refer" and s.target_masks.shape[0] == 1 and text_tokens == 6
    assert s.token_sets == [[1, 2]]  # "the <colour> <category> in the room": tokens 1-2
    inst = FinetuneDataset(paths, RoomTextEncoder(), seed=0, task="instseg", negative_categories=1)
    t = inst.sample(0)
    assert t.queries.shape[0] == 4 and t.target_masks.shape[0] == 3  # 3 present + 1 absent
    assert sorted(x[0] for x in t.token_sets) == sorted({x[0] for x in t.token_sets})
    both = FinetuneDataset(paths, RoomTextEncoder(), seed=0, task="both")
    for pos in range(3):
        group = both.sample_group(pos, 3)
        first = both.sample(pos)
        assert len(group) == 3 and len({g.scene_id for g in group}) == 1
        assert torch.equal(group[0].queries, first.queries) and group[0].task == first.task
        assert torch.equal(both.sample_group(pos, 3)[2].target_masks, group[2].target_masks)  # pure
    with pytest.raises(ValueError, match="group size"):
        both.sample_group(0, 0)


def test_bad_inputs_give_clear_errors(dataset, tmp_path, capsys):
    from liftgs.io.errors import DataError
    from liftgs.train.checkpoint import CheckpointError
    from liftgs.train.checkpoint import resolve_model_dir
    from liftgs.cli import main as cli_main

    with pytest.raises(DataError, match="pseudo-labels"):
        from liftgs.recipes.pretrain import run_pretrain

        run_pretrain(pretrain_config(dataset, tmp_path / "x", labels=tmp_path / "empty"))
    with pytest.raises(CheckpointError, match="not a model folder"):
        resolve_model_dir(tmp_path)
    assert cli_main(["pretrain", "--out", str(tmp_path / "y")]) == 2  # one line on stderr, no traceback
    assert capsys.readouterr().err.strip().splitlines() == [
        "liftgs pretrain: pretrain needs --data DIR (scene directories) and --labels DIR (pseudo-labels)"]


def test_sampled_point_loss_matches_the_full_logits_reference(dataset):
    """The factored mask logits at a group's shared sampled points (one basis per scene) give
    the loss and gradients of indexing every point's logits (the plain reference)."""
    from liftgs.losses import GroundingCriterion
    from liftgs.recipes.common import build_model
    from liftgs.recipes.finetune import finetune_loss
    from liftgs.recipes.finetune_data import FinetuneDataset
    from liftgs.recipes.pretrain import scene_paths
    from liftgs.train.batching import collate_groups

    ds = FinetuneDataset(scene_paths(dataset / "data", "train"), RoomTextEncoder(), seed=0, task="both",
                         loss_points=300)
    groups = [ds.sample_group(p, 3) for p in (0, 1)]
    samples = [s for g in groups for s in g]
    assert all(torch.equal(s.loss_points, g[0].loss_points) for g in groups for s in g)  # shared per group
    batch, query_scene = collate_groups(groups, ds.dim)
    torch.manual_seed(0)
    model = build_model("tiny", ds.dim).double()
    crit = GroundingCriterion()
    results = []
    for lazy in (True, False):
        model.zero_grad()
        out = model(batch.points.double(), batch.colors.double(), batch.offsets, batch.queries.double(),
                    batch.query_mask, query_scene=query_scene, lazy_masks=lazy)
        loss, _ = finetune_loss(out, samples, batch.queries.shape[1], crit,
                                groups=query_scene.tolist() if lazy else None)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (fast, g_fast), (ref, g_ref) = results
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)
    assert g_fast.keys() == g_ref.keys()
    for name in g_ref:
        torch.testing.assert_close(g_fast[name], g_ref[name], rtol=1e-8, atol=1e-10, msg=name)


def test_frozen_encoder_keeps_the_pretrained_features(dataset, tmp_path):
    """--freeze-encoder: the UNet (weights and batch-norm statistics) stays bitwise the
    pre-trained one while the decoder trains; it needs --init."""
    from safetensors.torch import load_file

    from liftgs.recipes.finetune import FinetuneConfig, run_finetune
    from liftgs.recipes.pretrain import run_pretrain

    run_pretrain(pretrain_config(dataset, tmp_path / "pre", steps=1, ckpt_every=1))
    cfg = FinetuneConfig(data=dataset / "data", out=tmp_path / "ft", init=tmp_path / "pre", freeze_encoder=True,
                         steps=2, batch_size=1, ckpt_every=2, tensorboard=False, progress=False)
    run_finetune(cfg, text_encoder=RoomTextEncoder())
    before = load_file(str(tmp_path / "pre" / "model" / "model.safetensors"))
    after = load_file(str(tmp_path / "ft" / "model" / "model.safetensors"))
    encoder = [k for k in after if k.startswith("encoder.")]
    assert any("running_mean" in k for k in encoder)
    assert all(torch.equal(after[k], before[k]) for k in encoder)
    assert any(not torch.equal(after[k], before[k]) for k in after if k.startswith("decoder."))
    with pytest.raises(ValueError, match="--freeze-encoder needs --init"):
        FinetuneConfig(data=dataset / "data", freeze_encoder=True)
