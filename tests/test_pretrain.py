"""Pre-training end to end on tiny fabricated rooms (liftgs.testing.rooms): samples, render targets,
the loss falling on held-out samples, exact resume, the CLI and 2-process DDP."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from liftgs.testing.rooms import EMBEDDING_DIM

from helpers.recipe_configs import pretrain_config




def test_pretrain_samples_are_pure_and_area_filtered(dataset):
    from liftgs.recipes.pretrain import scene_paths
    from liftgs.recipes.pretrain_data import PretrainDataset, min_area_at

    paths = scene_paths(dataset / "data", "train")
    assert [p.name for p in paths] == ["room0", "room1", "room2"]
    ds = PretrainDataset(paths, dataset / "labels", seed=1, image_size=32, num_pixels=256)
    a, b = ds.sample(7), ds.sample(7)
    assert torch.equal(a.pixels, b.pixels) and torch.equal(a.queries, b.queries)
    assert a.view.rgb.shape == (32, 32, 3) and a.pixels.shape == (256,)
    K = a.queries.shape[0]
    assert 1 <= K <= 3 and a.target_masks.shape == (K, 256)
    assert min_area_at(32, 32, 1024) == 4.0
    ds_strict = PretrainDataset(paths, dataset / "labels", seed=1, image_size=32, min_area_512=10**6)
    assert ds_strict.sample(0).queries.shape[0] == 0  # nothing passes the filter


def test_multi_view_samples_extend_the_single_view_stream(dataset):
    """View 0 of ``sample_views`` is ``sample``; the other views are other frames of that scene."""
    from liftgs.recipes.pretrain import scene_paths
    from liftgs.recipes.pretrain_data import PretrainDataset

    ds = PretrainDataset(scene_paths(dataset / "data", "train"), dataset / "labels", seed=1,
                         image_size=32, num_pixels=256)
    for pos in range(4):
        one, views = ds.sample(pos), ds.sample_views(pos, 3)
        assert len(views) == 3 and len({v.scene_id for v in views}) == 1
        assert torch.equal(one.pixels, views[0].pixels) and torch.equal(one.queries, views[0].queries)
        assert len({id(v.view) for v in views}) == 3  # distinct frames (the rooms have enough)
    with pytest.raises(ValueError, match="views"):
        ds.sample_views(0, 0)


def test_pseudo_query_count_is_drawn_from_one_to_max(dataset):
    """Appendix A.1's "up to 8": the count varies (1 included: zero-shot asks one phrase)."""
    from liftgs.recipes.pretrain import scene_paths
    from liftgs.recipes.pretrain_data import PretrainDataset

    paths = scene_paths(dataset / "data", "train")
    ds = PretrainDataset(paths, dataset / "labels", seed=1, image_size=32, num_pixels=64)
    fixed = PretrainDataset(paths, dataset / "labels", seed=1, image_size=32, num_pixels=64, random_count=False)
    counts = [ds.sample(p).queries.shape[0] for p in range(40)]
    most = [fixed.sample(p).queries.shape[0] for p in range(40)]
    assert 1 in counts and len(set(counts)) > 1
    assert all(1 <= c <= m for c, m in zip(counts, most)) and sum(counts) < sum(most)


def test_render_view_paths_agree():
    """Masks / features at the sampled pixels == the full image rendered and indexed (values +
    grads); the RGB image == the full render's colours."""
    from liftgs.render import composite, render_weights
    from liftgs.recipes.render_targets import render_view
    from liftgs.types import Gaussians, Grounding

    g = torch.Generator().manual_seed(0)
    N, m = 200, 4
    means = (torch.rand(N, 3, generator=g) - 0.5) * torch.tensor([1.0, 1.0, 0.2]) + torch.tensor([0, 0, 3.0])
    means.requires_grad_(True)
    logits = torch.randn(m, N, generator=g, requires_grad=True)
    gauss = Gaussians(means=means, quats=torch.nn.functional.normalize(torch.randn(N, 4, generator=g), dim=1),
                      scales=torch.full((N, 3), 0.05), opacities=torch.full((N,), 0.6),
                      colors=torch.rand(N, 3, generator=g), features=torch.rand(N, 5, generator=g))
    grounding = Grounding(mask_logits=logits, token_logits=torch.zeros(m, 3),
                          aux=[Grounding(mask_logits=logits * 0.5, token_logits=torch.zeros(m, 3))])
    K = torch.tensor([[30.0, 0, 16], [0, 30.0, 16], [0, 0, 1]])
    pixels = torch.tensor([3, 100, 511, 512, 530, 1000, 1023])
    a = render_view(gauss, grounding, torch.eye(4), K, 32, 32, pixels, want_rgb=True)
    full = render_weights(means, gauss.quats, gauss.scales, gauss.opacities, torch.eye(4), K, 32, 32)
    stack = torch.cat([gauss.colors, torch.sigmoid(logits * 0.5).T, torch.sigmoid(logits).T, gauss.features], 1)
    values = composite(full, stack)[0]
    b = SimpleNamespace(rgb=values[:, :3].reshape(32, 32, 3), features=values[pixels, 3 + 2 * m:],
                        mask_probs=[values[pixels, 3:3 + m].T, values[pixels, 3 + m:3 + 2 * m].T])
    assert a.rgb.shape == (32, 32, 3) and len(a.mask_probs) == 2
    assert a.mask_probs[0].shape == (m, 7) and a.features.shape == (7, 5)
    c = render_view(gauss, grounding, torch.eye(4), K, 32, 32, pixels, want_rgb=False)  # own rasterisation
    assert c.rgb is None
    for x, y in zip([a.rgb] + a.mask_probs + [a.features] + c.mask_probs + [c.features],
                    [b.rgb] + b.mask_probs + [b.features] + b.mask_probs + [b.features]):
        torch.testing.assert_close(x, y)
    assert float(a.mask_probs[1].detach().max()) > 0  # something is actually rendered
    ga = torch.autograd.grad(sum(p.sum() for p in a.mask_probs), [means, logits], retain_graph=True)
    gb = torch.autograd.grad(sum(p.sum() for p in b.mask_probs), [means, logits])
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y)



@pytest.mark.parametrize("want_rgb", [True, False])
def test_render_view_with_factored_masks_equals_eager_logits(want_rgb):
    """Lazy mask logits (only the Gaussians the pixels see) == every Gaussian's logits:
    rendered masks, features and the gradients to basis, embeddings and geometry."""
    from liftgs.recipes.render_targets import render_view
    from liftgs.models.liftgs.factors import FactoredGrounding, MaskFactors
    from liftgs.types import Gaussians, Grounding

    g = torch.Generator().manual_seed(1)
    N, V, D, m = 300, 120, 7, 4
    means = ((torch.rand(N, 3, generator=g) - 0.5) * torch.tensor([2.0, 2.0, 0.2]) + torch.tensor([0, 0, 3.0]))
    basis = torch.randn(V, D, generator=g)
    rows = torch.randint(0, V, (N,), generator=g)
    emb = [torch.randn(m, D, generator=g) for _ in range(2)]
    offs = [torch.randn(m, generator=g) for _ in range(2)]
    K = torch.tensor([[30.0, 0, 16], [0, 30.0, 16], [0, 0, 1]])
    pixels = torch.tensor([3, 100, 511, 512, 530, 1000, 1023, 530])
    out = []
    for lazy in (False, True):
        leaves = [x.clone().requires_grad_(True) for x in [means, basis, *emb]]
        mu, bs, e0, e1 = leaves
        factors = [MaskFactors(bs, e, o, rows) for e, o in zip((e0, e1), offs)]
        layers = [FactoredGrounding(None, torch.zeros(m, 3), mask_factors=f) if lazy else
                  Grounding(f.logits(), torch.zeros(m, 3)) for f in factors]
        grounding = (FactoredGrounding(None, layers[1].token_logits, aux=[layers[0]], mask_factors=factors[1])
                     if lazy else Grounding(layers[1].mask_logits, layers[1].token_logits, aux=[layers[0]]))
        gauss = Gaussians(means=mu, quats=torch.tensor([[1.0, 0, 0, 0]]).expand(N, 4),
                          scales=torch.full((N, 3), 0.06), opacities=torch.full((N,), 0.6),
                          colors=torch.rand(N, 3, generator=torch.Generator().manual_seed(2)),
                          features=torch.rand(N, 5, generator=torch.Generator().manual_seed(3)))
        view = render_view(gauss, grounding, torch.eye(4), K, 32, 32, pixels, want_rgb=want_rgb)
        loss = sum((p * torch.arange(1.0, p.shape[1] + 1)).sum() for p in view.mask_probs) + view.features.sum()
        out.append([*view.mask_probs, view.features, *torch.autograd.grad(loss, leaves)])
    assert float(out[0][1].detach().max()) > 0  # something is rendered
    for a, b in zip(*out):
        torch.testing.assert_close(a, b)


def test_low_rank_features_render_exactly():
    """Compositing the basis then mapping == compositing basis @ W.T + b (values and grads)."""
    from liftgs.modules.gaussian_head import LowRankGaussians
    from liftgs.recipes.render_targets import render_view
    from liftgs.types import Gaussians, Grounding

    g = torch.Generator().manual_seed(1)
    N, m, H, F = 150, 3, 6, 11
    means = (torch.rand(N, 3, generator=g) - 0.5) * torch.tensor([1.0, 1.0, 0.2]) + torch.tensor([0, 0, 3.0])
    basis = torch.randn(N, H, generator=g, requires_grad=True)
    weight = torch.randn(F, H, generator=g, requires_grad=True)
    bias = torch.randn(F, generator=g, requires_grad=True)
    common = dict(means=means, quats=torch.tensor([[1.0, 0, 0, 0]]).expand(N, 4), scales=torch.full((N, 3), 0.05),
                  opacities=torch.full((N,), 0.6), colors=torch.rand(N, 3, generator=g))
    low = LowRankGaussians(**common, features=None, feature_basis=basis, feature_weight=weight, feature_bias=bias)
    full = Gaussians(**common, features=basis @ weight.T + bias)
    grounding = Grounding(mask_logits=torch.randn(m, N, generator=g), token_logits=torch.zeros(m, 3))
    K = torch.tensor([[30.0, 0, 16], [0, 30.0, 16], [0, 0, 1]])
    pixels = torch.arange(0, 1024, 7)
    a = render_view(low, grounding, torch.eye(4), K, 32, 32, pixels, want_rgb=False)
    b = render_view(full, grounding, torch.eye(4), K, 32, 32, pixels, want_rgb=False)
    assert a.features.shape == (pixels.numel(), F) and float(a.alpha.max()) > 0.5
    torch.testing.assert_close(a.features.dense(), b.features, atol=1e-5, rtol=1e-5)
    probe = torch.randn(pixels.numel(), F, generator=g)
    ga = torch.autograd.grad((a.features.dense() * probe).sum(), [basis, weight, bias])
    gb = torch.autograd.grad((b.features * probe).sum(), [basis, weight, bias])
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)




def _probe_pretrain(config, model, positions):
    from liftgs.losses import GroundingCriterion
    from liftgs.train.loop import probe_loss
    from liftgs.recipes.pretrain import PretrainDataset, make_step_fn, scene_paths

    ds = PretrainDataset(scene_paths(config.data, config.split), config.labels, seed=config.seed,
                         image_size=config.image_size, num_pixels=config.num_pixels)
    step = make_step_fn(ds, GroundingCriterion(), config, torch.device("cpu"), ds.embedding_dim)
    return probe_loss(model, step, positions)


def test_pretrain_grounding_loss_falls_on_quick_rooms(quick_rooms, tmp_path):
    """On a fixed probe set of samples, the grounding loss of the
    pre-trained model is at most half that of the initial model, after 60 steps."""
    from liftgs.models.liftgs import LiftGS
    from liftgs.train.logging import read_jsonl
    from liftgs.train.loop import seed_everything
    from liftgs.train.optim import OptimConfig
    from liftgs.recipes.pretrain import build_model, run_pretrain

    torch.set_num_threads(1)
    config = pretrain_config(quick_rooms, tmp_path / "pre", steps=60,
                         optim=OptimConfig(lr=1e-3, warmup_steps=5))
    run_pretrain(config)
    seed_everything(config.seed)  # run_pretrain builds its initial model right after this
    initial = build_model("tiny", EMBEDDING_DIM)
    trained = LiftGS.from_pretrained(tmp_path / "pre" / "model")
    probe = list(range(10_000, 10_008))
    before = _probe_pretrain(config, initial, probe)
    after = _probe_pretrain(config, trained, probe)
    print(f"pretrain probe ground loss (quick rooms) {before['ground']:.2f} -> {after['ground']:.2f}",
          {k: (round(before[k], 3), round(after[k], 3)) for k in ("dice", "mask", "token")})
    assert after["ground"] <= 0.5 * before["ground"]
    assert len(read_jsonl(tmp_path / "pre")) == 60
    cfg = json.loads((tmp_path / "pre" / "config.json").read_text())
    assert cfg["recipe"] == "pretrain" and cfg["pretrain"]["losses"] == "ground"


def test_cpu_recipe_weights_differ_from_the_paper_preset_only_where_documented():
    """The CPU recipe trains the single-phrase ranking and a strong feature field, which
    zero-shot grounding ranks by (docs/training.md); the paper preset keeps appendix A's losses."""
    from liftgs.recipes.pretrain import PRESETS, PretrainConfig

    assert PretrainConfig().rank_weight == PRESETS["tiny"].rank_weight == 2.0
    assert PretrainConfig().feature_weight == PRESETS["tiny"].feature_weight == 10.0
    assert PRESETS["paper"].rank_weight == 0.0 and PRESETS["paper"].feature_weight == 0.1


def test_pretrain_all_losses_and_exact_resume(dataset, tmp_path):
    from liftgs.recipes.pretrain import run_pretrain

    class Killed(Exception):
        pass

    def kill(step, scalars):
        if step == 3:
            raise Killed

    cfg = dict(steps=4, ckpt_every=2, losses="ground+rgb+feat", batch_size=2)
    full = run_pretrain(pretrain_config(dataset, tmp_path / "full", **cfg))
    assert {"rgb", "feat", "ground", "rank"} <= set(full.last_scalars)  # rank: CPU recipe default
    with pytest.raises(Killed):
        run_pretrain(pretrain_config(dataset, tmp_path / "cut", **cfg), on_step_end=kill)
    run_pretrain(pretrain_config(dataset, tmp_path / "cut", resume=True, **cfg))
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after kill + resume"


def test_pretrain_cli_writes_run_dir(dataset, tmp_path):
    from liftgs.cli import main as cli_main
    from liftgs.config import to_dict
    from liftgs.train.checkpoint import latest_checkpoint

    out = tmp_path / "cli"
    args = ["pretrain", "--data", str(dataset / "data"), "--labels", str(dataset / "labels"),
            "--preset", "tiny", "--out", str(out), "--steps", "1", "--ckpt-every", "1",
            "--image-size", "24", "--num-pixels", "128", "--no-tensorboard", "--no-progress"]
    assert cli_main(args) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["pretrain"]["steps"] == 1 and cfg["model"]["num_queries"] >= 1
    assert latest_checkpoint(out).name == "step_00000001"
    # the saved config.json gives the run back: same settings, resumed without retyping flags
    from liftgs.recipes.common import parse_recipe_config
    from liftgs.recipes.pretrain import PRESETS, PretrainConfig

    given = parse_recipe_config(args[1:], PretrainConfig, PRESETS, "pretrain")
    assert parse_recipe_config(["--config", str(out / "config.json")], PretrainConfig, PRESETS, "pretrain") == given
    assert cli_main(["pretrain", "--config", str(out / "config.json"), "--steps", "2", "--resume"]) == 0
    assert latest_checkpoint(out).name == "step_00000002"
    cfg = json.loads((out / "config.json").read_text())["pretrain"]
    assert cfg == {**to_dict(given), "steps": 2, "resume": True}


def _ddp_worker(rank: int, world: int, port: int, root: str, out: str) -> None:
    import os

    from safetensors.torch import save_file

    from helpers.toy_training import ddp_toy_check
    from liftgs.train.distributed import cleanup_distributed, init_distributed
    from liftgs.recipes.pretrain import run_pretrain

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    try:
        ddp_toy_check(info, Path(out))
        cfg = pretrain_config(Path(root), Path(out) / "run", steps=2, ckpt_every=2, image_size=24,
                          num_pixels=128, losses="ground+rgb+feat")
        seen = []
        result = run_pretrain(cfg, info=info, on_step_end=lambda step, scalars: seen.append(step))
        assert seen == [1, 2]
        save_file({k: v.contiguous() for k, v in result.model.state_dict().items()},
                  str(Path(out) / f"rank{rank}.safetensors"))
    finally:
        cleanup_distributed()


def test_ddp_two_processes(dataset, tmp_path):
    """Two CPU processes over gloo (one spawn for both checks):

    * the generic loop on a toy model: ranks agree bitwise and match one process running the
      union batch (gradient all-reduce + per-rank data sharding are right);
    * the real pre-training recipe: ranks end with identical parameters, rank 0 alone writes
      the run directory, and the checkpoint holds both ranks' RNG states (exact resume).
    """
    import socket

    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    from helpers.toy_training import check_toy_ddp_result

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(dataset), str(tmp_path)), nprocs=2, join=True)
    check_toy_ddp_result(tmp_path)
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000002"
    assert (ckpt / "rng_rank0.safetensors").is_file() and (ckpt / "rng_rank1.safetensors").is_file()
    weights = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    r0, r1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    for k, v in weights.items():
        assert torch.isfinite(v).all() and torch.equal(v, r0[k]), k
        # parameters agree across ranks; batch-norm running statistics are per rank (DDP
        # broadcasts rank 0's before each forward, and rank 0's are the ones saved)
        if "running_" not in k and "num_batches_tracked" not in k:
            assert torch.equal(v, r1[k]), k
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["num_scenes"] == 3


def test_negative_bank_draws_other_scenes_only():
    from liftgs.recipes.negatives import NegativeBank

    emb = np.arange(12, dtype=np.float32).reshape(6, 2)
    bank = NegativeBank(emb, np.array([1, 0, 2, 1, 0, 2]))
    for scene in (0, 1, 2, 5):
        rows = bank.draw(np.random.default_rng(scene), scene, 50)
        owners = {int(r[0]) // 2 for r in rows}  # row i holds (2i, 2i+1)
        assert rows.shape == (50, 2) and not owners & {i for i in range(6) if bank.scene_of[i] == scene}
    a, b = bank.draw(np.random.default_rng(3), 0, 4), bank.draw(np.random.default_rng(3), 0, 4)
    assert torch.equal(a, b)
    lonely = NegativeBank(emb[:2], np.array([0, 0]))
    assert lonely.draw(np.random.default_rng(0), 0, 8).shape == (0, 2)
    with pytest.raises(ValueError, match="scene_of"):
        NegativeBank(emb, np.zeros(5))


def test_samples_carry_feature_negatives_of_other_scenes(dataset):
    """Negatives are part of the pure sample and come from other rooms' label files; the
    single-view stream is unchanged by them."""
    from liftgs.recipes.pretrain import scene_paths
    from liftgs.recipes.pretrain_data import PretrainDataset

    paths = scene_paths(dataset / "data", "train")
    plain = PretrainDataset(paths, dataset / "labels", seed=1, image_size=32, num_pixels=64)
    ds = PretrainDataset(paths, dataset / "labels", seed=1, image_size=32, num_pixels=64, negatives=16)
    assert plain.sample(0).negatives is None and len(ds.bank) > 0
    for pos in range(4):
        a, b = ds.sample_views(pos, 2), ds.sample_views(pos, 2)
        assert a[0].negatives.shape == (16, EMBEDDING_DIM) and torch.equal(a[1].negatives, b[1].negatives)
        assert torch.equal(a[0].pixels, plain.sample(pos).pixels)
        own = next(i for i, e in enumerate(ds.scenes) if e.scene_id == a[0].scene_id)
        for r in a[0].negatives:  # every row is a row of another scene (rooms may share captions)
            assert any(torch.equal(ds.bank.embeddings[i], r) for i in range(len(ds.bank))
                       if ds.bank.scene_of[i] != own)


def test_rgb_feature_loss_set_trains_without_grounding(dataset, tmp_path):
    """Table 4's "RGB + feature without grounding": RGB and feature terms logged, no grounding
    term; the decoder gets no gradient (bitwise its initial weights) while the rest trains."""
    from safetensors.torch import load_file

    from liftgs.recipes.pretrain import build_model, run_pretrain
    from liftgs.train.logging import read_jsonl
    from liftgs.train.loop import seed_everything

    config = pretrain_config(dataset, tmp_path / "rf", steps=2, ckpt_every=2, losses="rgb+feat", num_pixels=128)
    run_pretrain(config)
    logged = read_jsonl(tmp_path / "rf")
    assert {"rgb", "feat"} <= set(logged[-1]) and "ground" not in logged[-1]
    seed_everything(config.seed)
    init = build_model("tiny", EMBEDDING_DIM).state_dict()
    after = load_file(str(tmp_path / "rf" / "model" / "model.safetensors"))
    decoder = [k for k in after if k.startswith("decoder.")]
    assert decoder and all(torch.equal(after[k], init[k]) for k in decoder)
    assert any(not torch.equal(after[k], init[k]) for k in after if k.startswith("encoder."))


@pytest.mark.parametrize("recipe", ["pretrain", "finetune"])
def test_loader_workers_give_bitwise_the_same_run(recipe, dataset, tmp_path):
    """--num-workers 2 loads the steps' data in two processes: the weights equal the in-process
    run's bitwise, also after a kill and --resume with workers."""
    from safetensors.torch import load_file

    from liftgs.recipes.finetune import FinetuneConfig, run_finetune
    from liftgs.recipes.pretrain import run_pretrain
    from liftgs.testing.rooms import RoomTextEncoder

    class Killed(Exception):
        pass

    def kill(step, scalars):
        if step == 2:
            raise Killed

    def run(out, workers, **kw):
        if recipe == "pretrain":
            return run_pretrain(pretrain_config(dataset, out, steps=4, ckpt_every=2, num_workers=workers,
                                                losses="ground+rgb+feat", num_pixels=128,
                                                resume=kw.pop("resume", False)), **kw)
        return run_finetune(FinetuneConfig(data=dataset / "data", out=out, steps=4, batch_size=1, ckpt_every=2,
                                           tensorboard=False, progress=False, num_workers=workers,
                                           resume=kw.pop("resume", False)), text_encoder=RoomTextEncoder(), **kw)

    run(tmp_path / "inline", 0)
    run(tmp_path / "workers", 2)
    with pytest.raises(Killed):
        run(tmp_path / "cut", 2, on_step_end=kill)
    run(tmp_path / "cut", 2, resume=True)
    a = load_file(str(tmp_path / "inline" / "model" / "model.safetensors"))
    for other in ("workers", "cut"):
        b = load_file(str(tmp_path / other / "model" / "model.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), other
