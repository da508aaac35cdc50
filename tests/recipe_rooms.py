"""Tiny fabricated rooms and fixtures shared by the recipe tests (test_pretrain, test_finetune).

The rooms are built here with numpy (a floor and three coloured boxes, frames rendered by a
point z-buffer, pseudo-labels = the instance map with one fixed embedding per category) so
the recipe tests depend only on the scene format, the label store, the model, the renderer
and the losses — not on the synthetic benchmark generator.
"""

from __future__ import annotations

import zlib

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


def _pre_config(dataset, out, **kw):
    from liftgs.train.optim import OptimConfig
    from liftgs.recipes.pretrain import PretrainConfig

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
