"""Room layout: physically plausible placement of furniture and household objects.

Large furniture stands on the floor (beds, sofas, cabinets and shelves with their backs to a
wall; chairs at the sides of tables; boxes and trash cans sometimes under tables); small things
rest on tables, cabinets, shelf boards, sofa seats and beds. Nothing interpenetrates: every
candidate pose is rejected if any of its parts' axis-aligned boxes overlaps a part of another
object (touching is allowed, so a mug can rest on a table top).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from liftgs.synth.catalog import CATEGORIES, COLORS, MAX_PER_ROOM, Model, Part, Surface, build, size_label
from liftgs.synth.config import SynthConfig

FLOOR_TONES = [(0.62, 0.5, 0.38), (0.55, 0.55, 0.55), (0.7, 0.62, 0.5), (0.45, 0.35, 0.28)]
WALL_TONES = [(0.85, 0.83, 0.78), (0.78, 0.82, 0.85), (0.83, 0.8, 0.72), (0.8, 0.8, 0.8)]
_PLACE_ORDER = ["bed", "sofa", "shelf", "table", "cabinet", "stool", "box", "trash can", "plant", "lamp", "chair"]


@dataclass
class PlacedObject:
    """An object in world coordinates."""

    id: int
    category: str
    color: str
    scale: float
    size: str
    parts: list[Part]
    surfaces: list[Surface]
    yaw_deg: int  # multiple of 90; the object's front is local +y rotated by this angle
    support: int  # id of the object it rests on, -1 = the floor
    placement: str  # "wall" | "free" | "table side" | "under" | "on"

    @property
    def aabb(self) -> np.ndarray:  # [6] (min xyz, max xyz) over all parts
        boxes = np.stack([p.aabb for p in self.parts])
        return np.concatenate([boxes[:, :3].min(0), boxes[:, 3:].max(0)])

    @property
    def center(self) -> np.ndarray:  # [3]
        b = self.aabb
        return (b[:3] + b[3:]) / 2

    @property
    def volume(self) -> float:
        b = self.aabb
        return float(np.prod(b[3:] - b[:3]))


#: The room's floor corner sits at (1 mm, 1 mm, 1 mm): floor and walls then never lie exactly on a
#: boundary of the fusion voxel grid (which would split each of them into two point layers).
ORIGIN = np.array([0.001, 0.001, 0.001])


@dataclass
class Room:
    size: tuple[float, float]  # (W, D): the floor spans origin + [0, W] x [0, D]
    wall_height: float
    floor_rgb: tuple[float, float, float]
    wall_rgb: tuple[float, float, float]
    objects: list[PlacedObject]
    origin: np.ndarray = field(default_factory=lambda: ORIGIN.copy())  # [3] floor corner; floor top z

    @property
    def bounds(self) -> np.ndarray:  # [4] xmin, ymin, xmax, ymax of the floor
        return np.array([self.origin[0], self.origin[1], self.origin[0] + self.size[0], self.origin[1] + self.size[1]])


def _shift(objects: list[PlacedObject], offset: np.ndarray) -> None:
    for o in objects:
        for p in o.parts:
            p.center = p.center + offset
        for s in o.surfaces:
            s.rect = s.rect + np.tile(offset[:2], 2)
            s.z = float(s.z + offset[2])


def aabb_overlap(a: np.ndarray, b: np.ndarray, margin: float = 0.0) -> bool:
    """True when boxes overlap by more than touching, or come closer than ``margin`` horizontally."""
    lap = np.minimum(a[3:], b[3:]) - np.maximum(a[:3], b[:3])
    return bool(lap[0] > 1e-9 - margin and lap[1] > 1e-9 - margin and lap[2] > 1e-9)


def _rotate_xy(x: float, y: float, k: int) -> tuple[float, float]:
    return [(x, y), (-y, x), (-x, -y), (y, -x)][k % 4]


def _transform(model: Model, k: int, pos: np.ndarray) -> tuple[list[Part], list[Surface]]:
    """Rotate the model by k * 90 degrees about z and move it to ``pos`` [3]."""
    parts = []
    for p in model.parts:
        cx, cy = _rotate_xy(p.center[0], p.center[1], k)
        dims = p.dims if (p.shape != "box" or k % 2 == 0) else (p.dims[1], p.dims[0], p.dims[2])
        parts.append(Part(p.shape, tuple(float(d) for d in dims), np.array([cx, cy, p.center[2]]) + pos, p.rgb))
    surfaces = []
    for s in model.surfaces:
        corners = np.array([_rotate_xy(x, y, k) for x in s.rect[[0, 2]] for y in s.rect[[1, 3]]])
        rect = np.concatenate([corners.min(0), corners.max(0)]) + np.tile(pos[:2], 2)
        surfaces.append(Surface(s.kind, rect, float(s.z + pos[2]), s.clearance))
    return parts, surfaces


def _local_aabb(model: Model, k: int) -> np.ndarray:
    parts, _ = _transform(model, k, np.zeros(3))
    boxes = np.stack([p.aabb for p in parts])
    return np.concatenate([boxes[:, :3].min(0), boxes[:, 3:].max(0)])


def _collides(parts: list[Part], objects: list[PlacedObject], margin: float) -> bool:
    return any(aabb_overlap(p.aabb, q.aabb, margin) for o in objects for q in o.parts for p in parts)


def _floor_pose(rng, name: str, model: Model, room: tuple[float, float], objects: list[PlacedObject]):
    """One candidate (k, position, placement) on the floor, or None."""
    W, D = room
    tables = [o for o in objects if o.category == "table"]
    mode = CATEGORIES[name].floor
    if name == "chair" and tables and rng.random() < 0.8:
        t = tables[rng.integers(len(tables))].aabb
        side = int(rng.integers(4))  # 0: south of the table, facing +y; then counter-clockwise
        k = [0, 1, 2, 3][side]
        lo = _local_aabb(model, k)
        ext = (lo[3:5] - lo[:2]) / 2
        if side in (0, 2):
            x = rng.uniform(min(t[0] + ext[0], (t[0] + t[3]) / 2), max(t[3] - ext[0], (t[0] + t[3]) / 2))
            y = t[1] - 0.16 if side == 0 else t[4] + 0.16
        else:
            y = rng.uniform(min(t[1] + ext[1], (t[1] + t[4]) / 2), max(t[4] - ext[1], (t[1] + t[4]) / 2))
            x = t[3] + 0.16 if side == 1 else t[0] - 0.16
        return k, np.array([x, y, 0.0]), "table side"
    if name in ("box", "trash can") and tables and rng.random() < 0.4:
        t = tables[rng.integers(len(tables))].aabb
        k = int(rng.integers(4))
        lo = _local_aabb(model, k)
        x = rng.uniform(t[0] + 0.1 - lo[0], t[3] - 0.1 - lo[3]) if t[3] - t[0] - 0.2 > lo[3] - lo[0] else None
        y = rng.uniform(t[1] + 0.1 - lo[1], t[4] - 0.1 - lo[4]) if t[4] - t[1] - 0.2 > lo[4] - lo[1] else None
        if x is None or y is None:
            return None
        return k, np.array([x, y, 0.0]), "under"
    if mode == "wall":
        side = int(rng.integers(4))  # wall y=0, x=W, y=D, x=0; the front faces into the room
        k = side
        lo = _local_aabb(model, k)
        gap = 0.02
        if side in (0, 2):
            x = rng.uniform(gap - lo[0], W - gap - lo[3])
            y = gap - lo[1] if side == 0 else D - gap - lo[4]
        else:
            y = rng.uniform(gap - lo[1], D - gap - lo[4])
            x = W - gap - lo[3] if side == 1 else gap - lo[0]
        return k, np.array([x, y, 0.0]), "wall"
    k = int(rng.integers(4))
    lo = _local_aabb(model, k)
    x = rng.uniform(0.05 - lo[0], W - 0.05 - lo[3])
    y = rng.uniform(0.05 - lo[1], D - 0.05 - lo[4])
    return k, np.array([x, y, 0.0]), "free"


def _inside(parts: list[Part], room: tuple[float, float]) -> bool:
    boxes = np.stack([p.aabb for p in parts])
    return bool(boxes[:, 0].min() >= 0.01 and boxes[:, 1].min() >= 0.01
                and boxes[:, 3].max() <= room[0] - 0.01 and boxes[:, 4].max() <= room[1] - 0.01)


def place_on_floor(rng, name: str, oid: int, room, objects: list[PlacedObject], tries: int = 40):
    """A collision-free floor placement of a new ``name`` object, or None after ``tries`` attempts."""
    cat = CATEGORIES[name]
    scale = float(rng.uniform(*cat.scale))
    color = str(rng.choice(list(COLORS)))
    model = build(name, scale, COLORS[color], rng)
    for _ in range(tries):
        pose = _floor_pose(rng, name, model, room, objects)
        if pose is None:
            continue
        k, pos, placement = pose
        parts, surfaces = _transform(model, k, pos)
        if _inside(parts, room) and not _collides(parts, objects, margin=0.03):
            size = size_label(scale, name, on_surface=False)
            return PlacedObject(oid, name, color, scale, size, parts, surfaces, 90 * k, -1, placement)
    return None


def place_on_surface(rng, name: str, oid: int, objects: list[PlacedObject], tries: int = 30):
    """A collision-free placement of a small ``name`` object on a suitable surface, or None."""
    cat = CATEGORIES[name]
    options = [(o, s) for o in objects for s in o.surfaces if s.kind in cat.on]
    if not options:
        return None
    scale = float(rng.uniform(*cat.small_scale))
    color = str(rng.choice(list(COLORS)))
    for _ in range(tries):
        host, surf = options[rng.integers(len(options))]
        model = build(name, scale, COLORS[color], rng, surf.kind)
        k = (host.yaw_deg // 90 + 2 * int(rng.integers(2))) if name == "book" else int(rng.integers(4))
        lo = _local_aabb(model, k)
        r = surf.rect
        if lo[5] - lo[2] > surf.clearance or r[2] - r[0] < lo[3] - lo[0] or r[3] - r[1] < lo[4] - lo[1]:
            continue
        pos = np.array([rng.uniform(r[0] - lo[0], r[2] - lo[3]), rng.uniform(r[1] - lo[1], r[3] - lo[4]), surf.z])
        parts, surfaces = _transform(model, k, pos)
        if not _collides(parts, objects, margin=0.01):
            size = size_label(scale, name, on_surface=True)
            return PlacedObject(oid, name, color, scale, size, parts, surfaces, 90 * (k % 4), host.id, "on")
    return None


def _weighted(rng, weights: dict[str, float]) -> str | None:
    names = [n for n, w in weights.items() if w > 0]
    if not names:
        return None
    w = np.array([weights[n] for n in names])
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def _allowed(name: str, objects: list[PlacedObject]) -> bool:
    return sum(o.category == name for o in objects) < MAX_PER_ROOM.get(name, 99)


def layout_room(config: SynthConfig, rng: np.random.Generator) -> Room:
    """Sample a room with ``config.min_objects..max_objects`` objects (retries until it fits)."""
    for _ in range(20):
        W, D = (float(v) for v in rng.uniform(config.room_min, config.room_max, 2))
        n = int(rng.integers(config.min_objects, config.max_objects + 1))
        objects = _populate(rng, (W, D), n)
        if len(objects) >= config.min_objects:
            _shift(objects, ORIGIN)
            floor_rgb = FLOOR_TONES[rng.integers(len(FLOOR_TONES))]
            wall_rgb = WALL_TONES[rng.integers(len(WALL_TONES))]
            return Room((W, D), config.wall_height, floor_rgb, wall_rgb, objects)
    raise RuntimeError("could not lay out a room with enough objects; widen room_min/room_max")


def _populate(rng, room: tuple[float, float], n: int) -> list[PlacedObject]:
    n_floor = max(3, int(round(n * rng.uniform(0.55, 0.75))))
    plan = [str(rng.choice(["table", "cabinet", "shelf"], p=[0.55, 0.25, 0.2]))]
    while len(plan) < n_floor:
        name = _weighted(rng, {c: v.floor_weight for c, v in CATEGORIES.items()})
        if plan.count(name) < MAX_PER_ROOM.get(name, 99):
            plan.append(name)
    plan.sort(key=_PLACE_ORDER.index)
    objects: list[PlacedObject] = []
    for name in plan:
        obj = place_on_floor(rng, name, len(objects), room, objects)
        if obj is not None:
            objects.append(obj)
    for _ in range(4 * n):
        if len(objects) >= n:
            break
        kinds = {s.kind for o in objects for s in o.surfaces}
        weights = {c: v.small_weight for c, v in CATEGORIES.items()
                   if set(v.on) & kinds and _allowed(c, objects)}
        name = _weighted(rng, weights) if rng.random() < 0.85 else None
        if name is None:  # no surface left for small things: add floor furniture instead
            name = _weighted(rng, {c: v.floor_weight for c, v in CATEGORIES.items() if _allowed(c, objects)})
            obj = place_on_floor(rng, name, len(objects), room, objects)
        else:
            obj = place_on_surface(rng, name, len(objects), objects)
        if obj is not None:
            objects.append(obj)
    return objects
