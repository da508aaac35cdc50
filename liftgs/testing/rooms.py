"""Tiny fabricated rooms with pseudo-labels, for tests and smoke runs of the training recipes.

The rooms are built with numpy (a floor and three coloured boxes, frames rendered by a point
z-buffer, pseudo-labels = the instance map with one fixed embedding per category), so a run
on them depends only on the scene format, the label store, the model, the renderer and the
losses — not on the synthetic benchmark generator. :class:`RoomTextEncoder` maps category
words to the very embeddings the pseudo-labels carry, so fine-tuning on the rooms'
expressions is learnable without a real text model.

    from liftgs.testing import write_rooms
    write_rooms("smoke")  # smoke/data: scenes + splits.json, smoke/labels: pseudo-labels
    # liftgs pretrain --data smoke/data --labels smoke/labels --out runs/smoke --steps 40
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch

from liftgs.text.base import TextEncoding
from liftgs.types import Camera, Expression, Frame, ObjectInfo, PseudoLabels, Scene

EMBEDDING_DIM = 32
"""width of the pseudo-label embeddings and of :class:`RoomTextEncoder`'s vectors"""
CATEGORIES = ["chair", "table", "lamp", "bed"]
COLORS = {"red": (0.9, 0.1, 0.1), "green": (0.1, 0.8, 0.2), "blue": (0.1, 0.2, 0.9)}

__all__ = ["EMBEDDING_DIM", "CATEGORIES", "RoomTextEncoder", "fabricate_scene", "write_rooms",
           "write_quick_rooms"]


def _category_embedding(name: str) -> np.ndarray:
    rng = np.random.default_rng(CATEGORIES.index(name) + 100)
    v = rng.normal(size=EMBEDDING_DIM)
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


def write_rooms(root: str | Path, count: int = 4, val: int = 1) -> Path:
    """``count`` fabricated rooms (the last ``val`` in the val split) under ``root/data`` with
    pseudo-labels for every frame under ``root/labels``; returns ``root``."""
    from liftgs.io.scene_dir import write_scene, write_splits
    from liftgs.teachers.store import PseudoLabelStore

    root = Path(root)
    store = PseudoLabelStore(root / "labels")
    ids = []
    for i in range(count):
        scene, labels = fabricate_scene(f"room{i}", seed=i)
        write_scene(scene, root / "data")
        for fr, lab in zip(scene.frames, labels):
            store.put(scene.scene_id, fr.name, lab)
        ids.append(scene.scene_id)
    write_splits(root / "data", {"train": ids[:count - val], "val": ids[count - val:]})
    return root


class RoomTextEncoder:
    """A deterministic stand-in text encoder: words -> fixed vectors (no weights to load).

    Category words get the embedding the fabricated pseudo-labels use for that category;
    every other word a fixed pseudo-random vector seeded by its CRC32.
    """

    name, dim = "hash", EMBEDDING_DIM

    def encode(self, texts):
        tokens, spans, pooled = [], [], []
        for t in texts:
            words, pos, sp = t.split(), 0, []
            for w in words:
                start = t.index(w, pos)
                sp.append((start, start + len(w)))
                pos = start + len(w)
            vecs = [torch.from_numpy(_category_embedding(w)) if w in CATEGORIES else _word_vector(w)
                    for w in words]
            tok = torch.stack(vecs).float()
            tokens.append(tok)
            spans.append(sp)
            pooled.append(torch.nn.functional.normalize(tok.mean(0), dim=0))
        return TextEncoding(tokens=tokens, spans=spans, pooled=torch.stack(pooled))


def _word_vector(word: str) -> torch.Tensor:
    rng = np.random.default_rng(zlib.crc32(word.encode()))
    return torch.from_numpy(rng.normal(size=EMBEDDING_DIM)).float()


def write_quick_rooms(root: str | Path, count: int = 2, thin: int = 4) -> Path:
    """``count`` ``quick`` synthetic rooms pseudo-labelled by the synthetic teacher (with
    :class:`RoomTextEncoder` vectors), all in the train split; returns ``root``.

    The fused clouds (~16k points) keep every ``thin``-th point so a CPU run stays short;
    frames and labels are untouched.
    """
    from liftgs.io.scene_dir import write_scene, write_splits
    from liftgs.synth import QUICK, generate_room
    from liftgs.teachers.store import PseudoLabelStore, frame_key
    from liftgs.teachers.synthetic import SyntheticTeacher

    root = Path(root)
    store, teacher = PseudoLabelStore(root / "labels"), SyntheticTeacher(RoomTextEncoder())
    ids = []
    for i in range(count):
        scene = generate_room(QUICK, seed=i, scene_id=f"quick{i}")
        keep = slice(None, None, thin)
        thinned = Scene(scene.scene_id, scene.points[keep], scene.colors[keep], scene.frames,
                        scene.instance_ids[keep], scene.objects, scene.expressions, scene.meta)
        write_scene(thinned, root / "data")
        for j, (fr, lab) in enumerate(zip(scene.frames, teacher.label_frames(scene.frames, scene))):
            store.put(scene.scene_id, frame_key(fr, j), lab)
        ids.append(scene.scene_id)
    write_splits(root / "data", {"train": ids, "val": []})
    return root
