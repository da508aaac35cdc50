"""Pre-training and fine-tuning recipes end to end on tiny fabricated rooms.

The rooms are built here with numpy (a floor and three coloured boxes, frames rendered by a
point z-buffer, pseudo-labels = the instance map with one fixed embedding per category) so
these tests depend only on the scene format, the label store, the model, the renderer and
the losses — not on the synthetic benchmark generator.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from liftgs.text.base import TextEncoding
from liftgs.types import Camera, Expression, Frame, ObjectInfo, PseudoLabels, Scene

DIM = 32
CATEGORIES = ["chair", "table", "lamp", "bed"]
COLORS = {"red": (0.9, 0.1, 0.1), "green": (0.1, 0.8, 0.2), "blue": (0.1, 0.2, 0.9)}


def _category_embedding(name: str) -> np.ndarray:
    rng = np.random.default_rng(CATEGORIES.index(name) + 100)
    v = rng.normal(size=DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


def _box_surface(center, size, spacing, rng) -> np.ndarray:
    n = max(50, int(6 * size * size / spacing**2))
    u = rng.uniform(-0.5, 0.5, size=(n, 3))
    face = rng.integers(0, 3, n)
    u[np.arange(n), face] = np.where(rng.random(n) < 0.5, -0.5, 0.5)
    return (np.asarray(center) + u * size).astype(np.float32)


def _zbuffer(points, colors, inst, K, viewmat, W, H, radius=2):
    """Splat every point as a (2r+1)^2 square; the nearest point wins each pixel."""
    cam = points @ viewmat[:3, :3].T + viewmat[:3, 3]
    ok = cam[:, 2] > 0.1
    z = cam[ok, 2]
    uv = cam[ok, :2] / z[:, None] * np.array([K[0, 0], K[1, 1]]) + np.array([K[0, 2], K[1, 2]])
    px = np.floor(uv).astype(int)
    src = np.flatnonzero(ok)
    offs = np.array([(dx, dy) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)])
    x = (px[:, None, 0] + offs[None, :, 0]).ravel()
    y = (px[:, None, 1] + offs[None, :, 1]).ravel()
    zz, pid = np.repeat(z, len(offs)), np.repeat(src, len(offs))
    m = (x >= 0) & (x < W) & (y >= 0) & (y < H)
    flat, zz, pid = (y * W + x)[m], zz[m], pid[m]
    order = np.lexsort((zz, flat))  # by pixel, then nearest first
    flat, zz, pid = flat[order], zz[order], pid[order]
    first = np.r_[True, flat[1:] != flat[:-1]]
    depth = np.zeros(H * W, np.float32)
    rgb = np.zeros((H * W, 3), np.uint8)
    ids = np.full(H * W, -1, np.int32)
    depth[flat[first]] = zz[first]
    rgb[flat[first]] = (colors[pid[first]] * 255).astype(np.uint8)
    ids[flat[first]] = inst[pid[first]]
    return rgb.reshape(H, W, 3), depth.reshape(H, W), ids.reshape(H, W)


def fabricate_scene(scene_id: str, seed: int, size: int = 48) -> tuple[Scene, list[PseudoLabels]]:
    from liftgs.geometry import look_at

    rng = np.random.default_rng(seed)
    floor = np.c_[rng.uniform(0, 2, (900, 2)), np.zeros(900)].astype(np.float32)
    pts, cols, inst = [floor], [np.full((900, 3), 0.5, np.float32)], [np.full(900, -1, np.int32)]
    objects, expressions = {}, []
    cats = rng.permutation(CATEGORIES)[:3]
    for k, (cat, (cname, rgbv)) in enumerate(zip(cats, COLORS.items())):
        center = (0.4 + 0.6 * k, 1.0 + rng.uniform(-0.3, 0.3), 0.25)
        p = _box_surface(center, 0.4, 0.04, rng)
        pts.append(p)
        cols.append(np.tile(np.float32(rgbv), (len(p), 1)))
        inst.append(np.full(len(p), k, np.int32))
        objects[k] = ObjectInfo(category=str(cat), attributes={"color": cname})
        text = f"the {cname} {cat} in the room"
        expressions.append(Expression(text=text, target_ids=[k], spans=[(4, 5 + len(cname) + len(cat))],
                                      source="synthetic"))
    points, colors, ids = np.concatenate(pts), np.concatenate(cols), np.concatenate(inst)
    K = np.array([[size * 0.8, 0, size / 2], [0, size * 0.8, size / 2], [0, 0, 1]])
    frames, labels = [], []
    for v in range(3):
        a = 2 * np.pi * v / 3 + rng.uniform(-0.3, 0.3)
        eye = (1 + 2.2 * np.cos(a), 1 + 2.2 * np.sin(a), 1.6)
        viewmat = look_at(eye, (1.0, 1.0, 0.2))
        rgb, depth, seg = _zbuffer(points, colors, ids, K, viewmat, size, size)
        frames.append(Frame(Camera(K, viewmat, size, size), rgb, depth, seg, name=f"{v:06d}"))
        emb = np.stack([_category_embedding(objects[k].category) for k in range(3)])
        labels.append(PseudoLabels(segments=seg, embeddings=emb))
    return Scene(scene_id, points, colors, frames, ids, objects, expressions), labels


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Four fabricated rooms (3 train, 1 val) with pseudo-labels for every frame."""
    from liftgs.io.scene_dir import write_scene, write_splits
    from liftgs.teachers.store import PseudoLabelStore

    root = tmp_path_factory.mktemp("rooms")
    store = PseudoLabelStore(root / "labels")
    ids = []
    for i in range(4):
        scene, labels = fabricate_scene(f"room{i}", seed=i)
        write_scene(scene, root / "data")
        for fr, lab in zip(scene.frames, labels):
            store.put(scene.scene_id, fr.name, lab)
        ids.append(scene.scene_id)
    write_splits(root / "data", {"train": ids[:3], "val": ids[3:]})
    return root


class HashEncoder:
    """A deterministic stand-in text encoder: words -> fixed vectors (no weights to load)."""

    name, dim = "hash", DIM

    def encode(self, texts):
        tokens, spans, pooled = [], [], []
        for t in texts:
            words, pos, sp = t.split(), 0, []
            for w in words:
                start = t.index(w, pos)
                sp.append((start, start + len(w)))
                pos = start + len(w)
            vecs = [torch.from_numpy(_category_embedding(w)) if w in CATEGORIES else
                    torch.from_numpy(np.random.default_rng(zlib.crc32(w.encode())).normal(size=DIM)).float()
                    for w in words]
            tok = torch.stack(vecs).float()
            tokens.append(tok)
            spans.append(sp)
            pooled.append(torch.nn.functional.normalize(tok.mean(0), dim=0))
        return TextEncoding(tokens=tokens, spans=spans, pooled=torch.stack(pooled))


# ------------------------------------------------------------------------ data / render


def test_pretrain_samples_are_pure_and_area_filtered(dataset):
    from liftgs.train.pretrain import scene_paths
    from liftgs.train.pretrain_data import PretrainDataset, min_area_at

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
    from liftgs.train.pretrain import scene_paths
    from liftgs.train.pretrain_data import PretrainDataset

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
    from liftgs.train.pretrain import scene_paths
    from liftgs.train.pretrain_data import PretrainDataset

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
    from liftgs.train.render_targets import render_view
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
    assert render_view(gauss, grounding, torch.eye(4), K, 32, 32, pixels, want_rgb=False).rgb is None
    for x, y in zip([a.rgb] + a.mask_probs + [a.features], [b.rgb] + b.mask_probs + [b.features]):
        torch.testing.assert_close(x, y)
    assert float(a.mask_probs[1].detach().max()) > 0  # something is actually rendered
    ga = torch.autograd.grad(sum(p.sum() for p in a.mask_probs), [means, logits], retain_graph=True)
    gb = torch.autograd.grad(sum(p.sum() for p in b.mask_probs), [means, logits])
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y)


def test_low_rank_features_render_exactly():
    """Compositing the basis then mapping == compositing basis @ W.T + b (values and grads)."""
    from liftgs.train.render_targets import render_view
    from liftgs.types import Gaussians, Grounding

    g = torch.Generator().manual_seed(1)
    N, m, H, F = 150, 3, 6, 11
    means = (torch.rand(N, 3, generator=g) - 0.5) * torch.tensor([1.0, 1.0, 0.2]) + torch.tensor([0, 0, 3.0])
    basis = torch.randn(N, H, generator=g, requires_grad=True)
    weight = torch.randn(F, H, generator=g, requires_grad=True)
    bias = torch.randn(F, generator=g, requires_grad=True)
    common = dict(means=means, quats=torch.tensor([[1.0, 0, 0, 0]]).expand(N, 4), scales=torch.full((N, 3), 0.05),
                  opacities=torch.full((N,), 0.6), colors=torch.rand(N, 3, generator=g))
    low = Gaussians(**common, features=None, feature_basis=basis, feature_weight=weight, feature_bias=bias)
    full = Gaussians(**common, features=basis @ weight.T + bias)
    grounding = Grounding(mask_logits=torch.randn(m, N, generator=g), token_logits=torch.zeros(m, 3))
    K = torch.tensor([[30.0, 0, 16], [0, 30.0, 16], [0, 0, 1]])
    pixels = torch.arange(0, 1024, 7)
    a = render_view(low, grounding, torch.eye(4), K, 32, 32, pixels, want_rgb=False)
    b = render_view(full, grounding, torch.eye(4), K, 32, 32, pixels, want_rgb=False)
    assert a.features.shape == (pixels.numel(), F) and float(a.alpha.max()) > 0.5
    torch.testing.assert_close(a.features, b.features, atol=1e-5, rtol=1e-5)
    probe = torch.randn(pixels.numel(), F, generator=g)
    ga = torch.autograd.grad((a.features * probe).sum(), [basis, weight, bias])
    gb = torch.autograd.grad((b.features * probe).sum(), [basis, weight, bias])
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------- recipes


def _pre_config(dataset, out, **kw):
    from liftgs.train.optim import OptimConfig
    from liftgs.train.pretrain import PretrainConfig

    base = dict(data=dataset / "data", labels=dataset / "labels", out=out, steps=40, batch_size=1,
                image_size=32, num_pixels=512, ckpt_every=20, log_every=1, tensorboard=False,
                progress=False, losses="ground", optim=OptimConfig(lr=1e-3))
    base.update(kw)
    return PretrainConfig(**base)


@pytest.fixture(scope="module")
def quick_rooms(tmp_path_factory):
    """Two `quick` synthetic rooms pseudo-labelled by the synthetic teacher (hash text vectors).

    The fused clouds (~16k points) are thinned to every 4th point to keep the test inside its
    CPU budget; frames and labels are untouched.
    """
    from liftgs.io.scene_dir import write_scene, write_splits
    from liftgs.synth import QUICK, generate_room
    from liftgs.teachers.store import PseudoLabelStore, frame_key
    from liftgs.teachers.synthetic import SyntheticTeacher

    root = tmp_path_factory.mktemp("quick")
    store, teacher = PseudoLabelStore(root / "labels"), SyntheticTeacher(HashEncoder())
    for i in range(2):
        scene = generate_room(QUICK, seed=i, scene_id=f"quick{i}")
        keep = slice(None, None, 4)
        thin = Scene(scene.scene_id, scene.points[keep], scene.colors[keep], scene.frames,
                     scene.instance_ids[keep], scene.objects, scene.expressions, scene.meta)
        write_scene(thin, root / "data")
        for j, (fr, lab) in enumerate(zip(scene.frames, teacher.label_frames(scene.frames, scene))):
            store.put(scene.scene_id, frame_key(fr, j), lab)
    write_splits(root / "data", {"train": ["quick0", "quick1"], "val": []})
    return root


def _probe_pretrain(config, model, positions):
    from liftgs.losses import GroundingCriterion
    from liftgs.train.loop import probe_loss
    from liftgs.train.pretrain import PretrainDataset, make_step_fn, scene_paths

    ds = PretrainDataset(scene_paths(config.data, config.split), config.labels, seed=config.seed,
                         image_size=config.image_size, num_pixels=config.num_pixels)
    step = make_step_fn(ds, GroundingCriterion(), config, torch.device("cpu"), ds.embedding_dim)
    return probe_loss(model, step, positions)


def test_pretrain_grounding_loss_falls_on_quick_rooms(quick_rooms, tmp_path):
    """Acceptance (issue 5): on a fixed probe set of samples, the grounding loss of the
    pre-trained model is at most half that of the initial model, after 60 steps."""
    from liftgs.model import LiftGS
    from liftgs.train.logging import read_jsonl
    from liftgs.train.loop import seed_everything
    from liftgs.train.optim import OptimConfig
    from liftgs.train.pretrain import build_model, run_pretrain

    torch.set_num_threads(1)
    config = _pre_config(quick_rooms, tmp_path / "pre", steps=60,
                         optim=OptimConfig(lr=1e-3, warmup_steps=5))
    run_pretrain(config)
    seed_everything(config.seed)  # run_pretrain builds its initial model right after this
    initial = build_model("tiny", DIM)
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


def test_pretrain_all_losses_and_exact_resume(dataset, tmp_path):
    from liftgs.train.pretrain import run_pretrain

    class Killed(Exception):
        pass

    def kill(step, scalars):
        if step == 3:
            raise Killed

    cfg = dict(steps=4, ckpt_every=2, losses="ground+rgb+feat", batch_size=2)
    full = run_pretrain(_pre_config(dataset, tmp_path / "full", **cfg))
    assert {"rgb", "feat", "ground"} <= set(full.last_scalars)
    with pytest.raises(Killed):
        run_pretrain(_pre_config(dataset, tmp_path / "cut", **cfg), on_step_end=kill)
    run_pretrain(_pre_config(dataset, tmp_path / "cut", resume=True, **cfg))
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after kill + resume"


def test_finetune_loss_falls_from_pretrained(dataset, tmp_path):
    from liftgs.losses import GroundingCriterion
    from liftgs.model import LiftGS
    from liftgs.train.finetune import FinetuneConfig, FinetuneDataset, make_step_fn, run_finetune
    from liftgs.train.loop import probe_loss
    from liftgs.train.optim import OptimConfig
    from liftgs.train.pretrain import run_pretrain, scene_paths

    run_pretrain(_pre_config(dataset, tmp_path / "pre", steps=2))
    cfg = FinetuneConfig(data=dataset / "data", out=tmp_path / "ft", init=tmp_path / "pre",
                         task="both", steps=40, batch_size=1, ckpt_every=20, log_every=1,
                         tensorboard=False, progress=False, optim=OptimConfig(lr=1e-3, warmup_steps=5))
    res = run_finetune(cfg, text_encoder=HashEncoder())
    assert res.step == 40 and (tmp_path / "ft" / "model" / "model.safetensors").is_file()
    ds = FinetuneDataset(scene_paths(cfg.data, "train"), HashEncoder(), seed=0, task="both")
    step = make_step_fn(ds, GroundingCriterion(), torch.device("cpu"))
    probe = list(range(1000, 1006))
    before = probe_loss(LiftGS.from_pretrained(tmp_path / "pre" / "model"), step, probe)
    after = probe_loss(LiftGS.from_pretrained(tmp_path / "ft" / "model"), step, probe)
    print(f"finetune probe loss {before['loss']:.2f} -> {after['loss']:.2f}")
    assert after["loss"] <= 0.6 * before["loss"]


def test_finetune_exact_resume(dataset, tmp_path):
    from safetensors.torch import load_file

    from liftgs.train.finetune import FinetuneConfig, run_finetune

    class Killed(Exception):
        pass

    def kill(step, scalars):
        if step == 2:
            raise Killed

    def cfg(out, resume=False):
        return FinetuneConfig(data=dataset / "data", out=out, task="both", steps=3, batch_size=1,
                              ckpt_every=2, tensorboard=False, progress=False, resume=resume,
                              data_fraction=0.67, loss_points=500)

    run_finetune(cfg(tmp_path / "full"), text_encoder=HashEncoder())
    with pytest.raises(Killed):
        run_finetune(cfg(tmp_path / "cut"), text_encoder=HashEncoder(), on_step_end=kill)
    run_finetune(cfg(tmp_path / "cut", resume=True), text_encoder=HashEncoder())
    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after kill + resume"


def test_finetune_data_fraction_and_targets(dataset):
    from liftgs.train.finetune_data import FinetuneDataset
    from liftgs.train.pretrain import scene_paths

    paths = scene_paths(dataset / "data", "train")
    ds = FinetuneDataset(paths, HashEncoder(), seed=0, task="refer", data_fraction=0.34)
    assert len(ds.scenes) == 2 and len(ds) == 6  # ceil(0.34 * 3) scenes x 3 expressions
    s = ds.sample(0)
    text_tokens = s.queries.shape[0]
    assert s.task == "refer" and s.target_masks.shape[0] == 1 and text_tokens == 6
    assert s.token_sets == [[1, 2]]  # "the <colour> <category> in the room": tokens 1-2
    inst = FinetuneDataset(paths, HashEncoder(), seed=0, task="instseg", negative_categories=1)
    t = inst.sample(0)
    assert t.queries.shape[0] == 4 and t.target_masks.shape[0] == 3  # 3 present + 1 absent
    assert sorted(x[0] for x in t.token_sets) == sorted({x[0] for x in t.token_sets})
    both = FinetuneDataset(paths, HashEncoder(), seed=0, task="both")
    for pos in range(3):
        group = both.sample_group(pos, 3)
        first = both.sample(pos)
        assert len(group) == 3 and len({g.scene_id for g in group}) == 1
        assert torch.equal(group[0].queries, first.queries) and group[0].task == first.task
        assert torch.equal(both.sample_group(pos, 3)[2].target_masks, group[2].target_masks)  # pure
    with pytest.raises(ValueError, match="group size"):
        both.sample_group(0, 0)


def test_bad_inputs_give_clear_errors(dataset, tmp_path):
    from liftgs.io.errors import DataError
    from liftgs.train.checkpoint import CheckpointError
    from liftgs.train.finetune import resolve_pretrained
    from liftgs.train.pretrain import main as pretrain_main

    with pytest.raises(DataError, match="pseudo-labels"):
        from liftgs.train.pretrain import run_pretrain

        run_pretrain(_pre_config(dataset, tmp_path / "x", labels=tmp_path / "empty"))
    with pytest.raises(CheckpointError, match="not a model folder"):
        resolve_pretrained(tmp_path)
    with pytest.raises(ValueError, match="--data"):
        pretrain_main(["--out", str(tmp_path / "y")])


def test_pretrain_cli_writes_run_dir(dataset, tmp_path):
    from liftgs.cli import main as cli_main
    from liftgs.train.checkpoint import latest_checkpoint

    out = tmp_path / "cli"
    args = ["pretrain", "--data", str(dataset / "data"), "--labels", str(dataset / "labels"),
            "--preset", "tiny", "--out", str(out), "--steps", "1", "--ckpt-every", "1",
            "--image-size", "24", "--num-pixels", "128", "--no-tensorboard", "--no-progress"]
    assert cli_main(args) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["pretrain"]["steps"] == 1 and cfg["model"]["num_queries"] >= 1
    assert latest_checkpoint(out).name == "step_00000001"
    assert cli_main(args[:-2] + ["--steps", "2", "--resume", "--no-tensorboard", "--no-progress"]) == 0
    assert latest_checkpoint(out).name == "step_00000002"


def _ddp_worker(rank: int, world: int, port: int, root: str, out: str) -> None:
    import os

    from safetensors.torch import save_file
    from test_train_infra import ddp_toy_check

    from liftgs.train.distributed import cleanup_distributed, init_distributed
    from liftgs.train.pretrain import run_pretrain

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    try:
        ddp_toy_check(info, Path(out))
        cfg = _pre_config(Path(root), Path(out) / "run", steps=2, ckpt_every=2, image_size=24,
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
    from test_train_infra import check_toy_ddp_result

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
