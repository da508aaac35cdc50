"""Object catalogue of the synthetic benchmark: categories, colours and primitive-part builders.

Every object is a few axis-aligned primitives (boxes, z-axis cylinders, spheres) in a local
frame whose origin is the centre of its footprint on the floor (or on its support), with the
object's *front* facing +y. Rotations are multiples of 90 degrees about z, so a rotated box is
still axis-aligned (its half extents swap) and every part has an exact axis-aligned bounding
box -- which keeps the no-interpenetration checks of :mod:`liftgs.synth.layout` exact for boxes
and conservative for cylinders and spheres.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.12),
    "green": (0.15, 0.62, 0.22),
    "blue": (0.15, 0.30, 0.85),
    "yellow": (0.95, 0.85, 0.15),
    "orange": (0.95, 0.50, 0.10),
    "purple": (0.55, 0.20, 0.70),
    "pink": (0.95, 0.55, 0.70),
    "brown": (0.50, 0.30, 0.15),
    "white": (0.92, 0.92, 0.92),
    "black": (0.10, 0.10, 0.10),
    "gray": (0.50, 0.50, 0.50),
}
LEAF_GREEN = (0.20, 0.50, 0.18)


@dataclass
class Part:
    """One primitive. ``dims``: box half extents [3]; cylinder (radius, half height); sphere (radius,)."""

    shape: str  # "box" | "cylinder" | "sphere"
    dims: tuple[float, ...]
    center: np.ndarray  # [3]
    rgb: tuple[float, float, float]

    @property
    def half_extents(self) -> np.ndarray:  # [3] of the axis-aligned bounding box
        if self.shape == "box":
            return np.asarray(self.dims, dtype=np.float64)
        if self.shape == "cylinder":
            return np.array([self.dims[0], self.dims[0], self.dims[1]])
        return np.full(3, self.dims[0], dtype=np.float64)

    @property
    def aabb(self) -> np.ndarray:  # [6] (min xyz, max xyz)
        h = self.half_extents
        return np.concatenate([self.center - h, self.center + h])


@dataclass
class Surface:
    """A horizontal rectangle other objects may rest on (``rect`` = xmin, ymin, xmax, ymax)."""

    kind: str  # "top" (tables, cabinets), "desk" (tables: monitors), "shelf", "seat" (pillows)
    rect: np.ndarray  # [4]
    z: float
    clearance: float  # free height above the surface


@dataclass
class Model:
    """An object in its local frame, before placement."""

    parts: list[Part]
    surfaces: list[Surface] = field(default_factory=list)


def _box(cx, cy, cz, hx, hy, hz, rgb) -> Part:
    return Part("box", (hx, hy, hz), np.array([cx, cy, cz], dtype=np.float64), rgb)


def _cyl(cx, cy, z0, r, h, rgb) -> Part:
    return Part("cylinder", (r, h / 2), np.array([cx, cy, z0 + h / 2], dtype=np.float64), rgb)


def _shade(rgb, k: float = 0.7) -> tuple[float, float, float]:
    return tuple(float(np.clip(c * k, 0, 1)) for c in rgb)


def _tint(rgb, k: float = 0.6) -> tuple[float, float, float]:
    return tuple(float(c + (1 - c) * k) for c in rgb)


def table(s, rgb, rng) -> Model:
    hw, hd, H, t = 0.6 * s * rng.uniform(0.85, 1.15), 0.38 * s, rng.uniform(0.72, 0.78), 0.04
    leg = _shade(rgb)
    parts = [_box(0, 0, H - t / 2, hw, hd, t / 2, rgb)]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(_box(sx * (hw - 0.06), sy * (hd - 0.06), (H - t) / 2, 0.025, 0.025, (H - t) / 2, leg))
    rect = np.array([-hw + 0.03, -hd + 0.03, hw - 0.03, hd - 0.03])
    return Model(parts, [Surface("desk", rect, H, 0.7)])


def chair(s, rgb, rng) -> Model:
    h, seat, back = 0.23 * s, 0.46, 0.45 * s
    leg = _shade(rgb)
    parts = [_box(0, 0, seat - 0.025, h, h, 0.025, rgb)]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(_box(sx * (h - 0.03), sy * (h - 0.03), (seat - 0.05) / 2, 0.02, 0.02, (seat - 0.05) / 2, leg))
    parts.append(_box(0, -h + 0.025, seat + back / 2, h, 0.025, back / 2, rgb))
    return Model(parts)


def sofa(s, rgb, rng) -> Model:
    hw, hd, base, arm = 0.95 * s * rng.uniform(0.9, 1.1), 0.45, 0.42, 0.2
    parts = [
        _box(0, 0, base / 2, hw, hd, base / 2, rgb),
        _box(0, -hd + 0.1, base + 0.225, hw, 0.1, 0.225, _shade(rgb, 0.85)),
        _box(-hw + 0.09, 0.1, base + arm / 2, 0.09, hd - 0.1, arm / 2, _shade(rgb, 0.85)),
        _box(hw - 0.09, 0.1, base + arm / 2, 0.09, hd - 0.1, arm / 2, _shade(rgb, 0.85)),
    ]
    rect = np.array([-hw + 0.19, -hd + 0.21, hw - 0.19, hd - 0.02])
    return Model(parts, [Surface("seat", rect, base, 0.45)])


def bed(s, rgb, rng) -> Model:
    hw, hl, frame, mat = 0.75 * s, 1.02, 0.3, 0.22
    parts = [
        _box(0, 0.04, frame / 2, hw, hl - 0.04, frame / 2, rgb),
        _box(0, 0.05, frame + mat / 2, hw - 0.03, hl - 0.07, mat / 2, _tint(rgb)),
        _box(0, -hl + 0.04, 0.5, hw, 0.04, 0.5, _shade(rgb)),
    ]
    top = frame + mat
    rect = np.array([-hw + 0.06, -hl + 0.1, hw - 0.06, -hl + 0.75])
    return Model(parts, [Surface("seat", rect, top, 0.45)])


def cabinet(s, rgb, rng) -> Model:
    hw, hd, H = 0.4 * s * rng.uniform(0.8, 1.2), 0.23, 0.9 * s
    parts = [_box(0, 0, H / 2, hw, hd, H / 2, rgb)]
    for sx in (-1, 1):
        parts.append(_box(sx * 0.08, hd + 0.01, H * 0.75, 0.03, 0.01, 0.012, _shade(rgb, 0.5)))
    rect = np.array([-hw + 0.03, -hd + 0.03, hw - 0.03, hd - 0.03])
    return Model(parts, [Surface("top", rect, H, 0.6)])


def shelf(s, rgb, rng) -> Model:
    hw, hd, H = 0.4 * s, 0.16, 1.8 * rng.uniform(0.9, 1.05)
    boards = 5 if H > 1.7 else 4
    parts = [_box(sx * (hw - 0.015), 0, H / 2, 0.015, hd, H / 2, rgb) for sx in (-1, 1)]
    parts.append(_box(0, -hd + 0.01, H / 2, hw - 0.03, 0.01, H / 2, _shade(rgb, 0.8)))
    levels = np.linspace(0.08, H - 0.02, boards)
    surfaces = []
    for i, z in enumerate(levels):
        parts.append(_box(0, 0.01, z - 0.01, hw - 0.03, hd - 0.01, 0.01, rgb))
        clearance = (levels[i + 1] - 0.02 - z) if i + 1 < boards else 0.5
        rect = np.array([-hw + 0.035, -hd + 0.025, hw - 0.035, hd - 0.01])
        surfaces.append(Surface("shelf", rect, float(z), float(clearance)))
    return Model(parts, surfaces)


def lamp(s, rgb, rng) -> Model:
    pole = _shade(rgb, 0.5)
    h = 1.35 * s
    return Model([
        _cyl(0, 0, 0, 0.14 * s, 0.03 * s, pole),
        _cyl(0, 0, 0.03 * s, 0.015 * max(s, 0.6), h, pole),
        _cyl(0, 0, 0.03 * s + h - 0.05 * s, 0.17 * s, 0.25 * s, rgb),
    ])


def monitor(s, rgb, rng) -> Model:
    hw, hh = 0.28 * s, 0.17 * s
    return Model([
        _box(0, 0, 0.01, 0.11, 0.08, 0.01, rgb),
        _box(0, -0.02, 0.13, 0.02, 0.015, 0.11, rgb),
        _box(0, 0.01, 0.12 + hh, hw, 0.015, hh, _shade(rgb, 0.6)),
    ])


def box(s, rgb, rng) -> Model:
    hx, hy, hz = 0.25 * s * rng.uniform(0.8, 1.2), 0.2 * s * rng.uniform(0.8, 1.2), 0.2 * s * rng.uniform(0.8, 1.2)
    return Model([_box(0, 0, hz, hx, hy, hz, rgb)])


def plant(s, rgb, rng) -> Model:
    r, h, leaves = 0.14 * s, 0.3 * s, 0.28 * s
    return Model([_cyl(0, 0, 0, r, h, rgb), Part("sphere", (leaves,), np.array([0, 0, h + leaves * 0.8]), LEAF_GREEN)])


def mug(s, rgb, rng) -> Model:
    r, h = 0.04 * s, 0.1 * s
    return Model([_cyl(0, 0, 0, r, h, rgb), _box(r + 0.012, 0, h * 0.55, 0.012, 0.006, h * 0.28, rgb)])


def book(s, rgb, rng) -> Model:
    """A book standing upright (spine to the front), the way books sit on shelves."""
    return Model([_box(0, 0, 0.115 * s, 0.018 * s, 0.08 * s, 0.115 * s, rgb)])


def book_lying(s, rgb, rng) -> Model:
    """A book lying flat, the way books sit on tables and cabinets."""
    return Model([_box(0, 0, 0.018 * s, 0.08 * s, 0.115 * s, 0.018 * s, rgb)])


def build(category: str, scale: float, rgb, rng: np.random.Generator, surface_kind: str = "") -> Model:
    """The local-frame model of one object (books stand on shelves and lie elsewhere)."""
    if category == "book" and surface_kind != "shelf":
        return book_lying(scale, rgb, rng)
    return CATEGORIES[category].builder(scale, rgb, rng)


def trash_can(s, rgb, rng) -> Model:
    r, h = 0.15 * s, 0.38 * s
    return Model([_cyl(0, 0, 0, r, h - 0.02, rgb), _cyl(0, 0, h - 0.02, r + 0.01, 0.02, _shade(rgb))])


def pillow(s, rgb, rng) -> Model:
    return Model([_box(0, 0, 0.06 * s, 0.25 * s, 0.16 * s, 0.06 * s, rgb)])


def stool(s, rgb, rng) -> Model:
    seat = 0.46 * s
    return Model([
        _cyl(0, 0, 0, 0.16 * s, 0.04, _shade(rgb)),
        _cyl(0, 0, 0.04, 0.025, seat - 0.08, _shade(rgb)),
        _cyl(0, 0, seat - 0.04, 0.18 * s, 0.04, rgb),
    ])


@dataclass(frozen=True)
class Category:
    """How a category is built and where it may go.

    ``floor`` = "wall" (back against a wall), "free" (anywhere), "near_table" (chairs) or ""
    (never on the floor); ``on`` = surface kinds it may rest on; ``small_scale`` = scale range
    when it rests on a surface, ``scale`` when it stands on the floor.
    """

    builder: Callable[[float, tuple, np.random.Generator], Model]
    floor: str
    on: tuple[str, ...] = ()
    scale: tuple[float, float] = (0.8, 1.25)
    small_scale: tuple[float, float] = (0.8, 1.25)
    floor_weight: float = 0.0
    small_weight: float = 0.0


CATEGORIES: dict[str, Category] = {
    "table": Category(table, "free", floor_weight=1.0),
    "chair": Category(chair, "near_table", floor_weight=3.0),
    "sofa": Category(sofa, "wall", floor_weight=0.7),
    "bed": Category(bed, "wall", floor_weight=0.5),
    "cabinet": Category(cabinet, "wall", floor_weight=1.0),
    "shelf": Category(shelf, "wall", floor_weight=0.8),
    "lamp": Category(lamp, "free", on=("top", "desk"), small_scale=(0.35, 0.45), floor_weight=0.8, small_weight=0.6),
    "monitor": Category(monitor, "", on=("desk",), small_weight=1.0),
    "box": Category(box, "free", on=("top", "desk", "shelf"), small_scale=(0.35, 0.6),
                    floor_weight=1.2, small_weight=1.0),
    "plant": Category(plant, "free", on=("top", "desk", "shelf"), small_scale=(0.35, 0.55),
                      floor_weight=0.9, small_weight=0.7),
    "mug": Category(mug, "", on=("top", "desk", "shelf"), small_weight=2.0),
    "book": Category(book, "", on=("top", "desk", "shelf"), small_weight=2.5),
    "trash can": Category(trash_can, "free", floor_weight=1.0),
    "pillow": Category(pillow, "", on=("seat",), small_weight=1.5),
    "stool": Category(stool, "free", floor_weight=0.7),
}
MAX_PER_ROOM = {"bed": 1, "sofa": 1, "table": 2, "shelf": 2, "monitor": 2, "cabinet": 2}


def size_label(scale: float, category: str, on_surface: bool) -> str:
    """"small" / "medium" / "large" relative to the category (objects on surfaces of dual-use
    categories -- a box on a table vs a box on the floor -- are always "small")."""
    cat = CATEGORIES[category]
    if cat.floor and cat.on:  # dual-use: surface variants are small, floor variants medium/large
        return "small" if on_surface else ("large" if scale > sum(cat.scale) / 2 else "medium")
    lo, hi = cat.small_scale if (on_surface and not cat.floor) else cat.scale
    third = (hi - lo) / 3
    return "small" if scale < lo + third else ("large" if scale > hi - third else "medium")
