"""A point cloud next to the clouds a model was trained on, and voxel downsampling in bounded memory.

The model only ever saw rooms like its training scenes (fused at 5 cm, one point per occupied
voxel, z up, a few metres across, colours in [0, 1]). A cloud far from that — a raw sensor cloud
of millions of points, a y-up export, a building, a colourless scan — still yields masks, and
nothing says they are meaningless. :func:`cloud_stats` measures what matters,
:func:`data_ranges` summarises the training scenes (stored in a pre-training run's
``config.json`` as ``data_stats``) and :func:`distribution_warnings` names every quantity far
outside them. :func:`voxel_downsample` reduces a very large cloud to the means of its voxels
(the encoder averages each voxel's points anyway, paper Sec 3.3.3) and keeps the map back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

STATS_VOXEL = 0.05  # metres: density and flat layers are measured on the paper's 5 cm grid
MAX_GRID_CELLS = 1 << 62  # the voxel keys (x * Y + y) * Z + z must fit an int64
CHUNK = 1 << 20  # points per chunk when computing voxel keys (no [P, 3] int64 array)

# How far from the training range a quantity may go before a warning (factor on either side).
SLACK = {"num_points": 4.0, "horizontal_extent": 2.0, "vertical_extent": 2.0, "density": 4.0}
MIN_UP_SCORE = 0.5  # below this the floor is not clearly at the low end of z (see cloud_stats)
MIN_COLOUR_STD = 0.01  # colours varying less than this (per channel, at most) carry nothing


@dataclass
class CloudStats:
    """What :func:`distribution_warnings` compares with the training scenes."""

    num_points: int
    horizontal_extent: float  # metres: the longer of the x and y sides of the bounding box
    vertical_extent: float  # metres: the z side
    density: float  # mean points per occupied 5 cm voxel
    up_score: float | None  # in [-1, 1]: 1 = the floor-like layer is at the low end of z;
    # None = the cloud has no flat layer at all (see :func:`cloud_stats`)
    z_is_shortest: bool  # the z side is the shortest side of the bounding box
    colour_std: float  # largest per-channel standard deviation of the colours
    colour_min: float
    colour_max: float


@dataclass
class VoxelGrid:
    """The occupied voxels of a cloud and the map from its points to them."""

    cells: np.ndarray  # [V, 3] int64 voxel index floor(point / size), sorted by key
    inverse: np.ndarray  # [P] int64 voxel of every point
    counts: np.ndarray  # [V] int64 points per voxel


def grid_shape(points: np.ndarray, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """(lowest cell [3] int64, cells per axis [3] int64) of the cloud's bounding grid."""
    size = np.float32(voxel_size)
    lo = np.floor(points.min(0) / size).astype(np.int64)
    hi = np.floor(points.max(0) / size).astype(np.int64)
    return lo, hi - lo + 1


def check_grid(points: np.ndarray, voxel_size: float) -> None:
    """Refuse a cloud whose bounding grid at ``voxel_size`` cannot be indexed with int64 keys."""
    _, shape = grid_shape(points, voxel_size)
    cells = int(np.prod([int(s) for s in shape], dtype=object))
    if cells >= MAX_GRID_CELLS:
        extent = points.max(0) - points.min(0)
        raise ValueError(f"the cloud spans {extent[0]:.0f} x {extent[1]:.0f} x {extent[2]:.0f} m: more than "
                         f"2^62 cells of {voxel_size} m; crop it to the scene")


def voxel_grid(points: np.ndarray, voxel_size: float) -> VoxelGrid:
    """Occupied voxels of ``points`` [P, 3] float32 (cells ``floor(point / size)`` in float32,
    as :func:`liftgs.modules.voxelize.voxelize` computes them).

    Memory: the int64 key of every point (8 B) is computed in chunks; ``np.unique`` then holds
    about four more int64 arrays of P entries (sorted keys, order, inverse, counts): about 40 B
    per input point at the peak, nothing of size [P, 3] int64."""
    P = points.shape[0]
    check_grid(points, voxel_size)
    lo, (X, Y, Z) = grid_shape(points, voxel_size)
    size = np.float32(voxel_size)
    keys = np.empty(P, np.int64)
    for s in range(0, P, CHUNK):
        c = np.floor(points[s:s + CHUNK] / size).astype(np.int64) - lo
        keys[s:s + CHUNK] = (c[:, 0] * Y + c[:, 1]) * Z + c[:, 2]
    ukeys, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    del keys
    cells = np.stack([ukeys // (Y * Z), (ukeys // Z) % Y, ukeys % Z], axis=1) + lo
    return VoxelGrid(cells=cells, inverse=inverse.reshape(-1), counts=counts)


def voxel_downsample(points: np.ndarray, colors: np.ndarray, voxel_size: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One point per occupied voxel: (mean xyz [V, 3] float32, mean colour [V, 3] float32,
    voxel of every input point [P] int64).

    The encoder averages the points of each voxel (:func:`liftgs.modules.voxelize.voxelize`),
    so it sees nearly the same input; the mean of a voxel's points lies in that voxel. Memory:
    :func:`voxel_grid` (~40 B per point at the peak) plus one float64 column of P weights at a
    time for the sums (8 B per point); the outputs are [V]-sized."""
    grid = voxel_grid(points, voxel_size)
    V = grid.counts.shape[0]
    out = []
    for values in (points, colors):
        mean = np.empty((V, 3), np.float32)
        for i in range(3):
            mean[:, i] = np.bincount(grid.inverse, weights=values[:, i], minlength=V) / grid.counts
        out.append(mean)
    return out[0], out[1], grid.inverse


def _layers(cells: np.ndarray, axis: int) -> np.ndarray:
    """Occupied voxels per 5 cm layer along ``axis``, lowest layer first."""
    c = cells[:, axis]
    return np.bincount(c - c.min())


def cloud_stats(points: np.ndarray, colors: np.ndarray) -> CloudStats:
    """Statistics of a cloud on the 5 cm grid.

    ``up_score`` reads gravity off the flat layers: a z-up room has a large layer at the bottom
    of z (the floor) and little at the top (scans rarely see the ceiling), while its walls fill
    both ends of x and y. Per axis, the asymmetry is (largest of the two lowest layers) minus
    (largest of the two highest); ``up_score`` is the z asymmetry over the largest absolute
    asymmetry of the three axes: 1 for a z-up room, near 0 for a y-up export, -1 upside down.
    It is None when no layer holds 4x the mean of its axis (no floor or wall at all)."""
    grid = voxel_grid(points, STATS_VOXEL)
    extent = points.max(0) - points.min(0)
    layers = [_layers(grid.cells, a) for a in range(3)]
    asym = np.array([float(lay[:2].max()) - float(lay[-2:].max()) for lay in layers])
    flat = any(lay.max() >= 4 * lay.mean() for lay in layers if len(lay) > 2)
    top = np.abs(asym).max()
    up = float(asym[2] / top) if flat and top > 0 else None
    return CloudStats(
        num_points=int(points.shape[0]), horizontal_extent=float(max(extent[0], extent[1])),
        vertical_extent=float(extent[2]), density=float(points.shape[0] / grid.counts.shape[0]),
        up_score=up, z_is_shortest=bool(extent[2] <= extent[:2].min()),
        colour_std=float(colors.std(0).max()), colour_min=float(colors.min()), colour_max=float(colors.max()))


def data_ranges(clouds: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict:
    """[min, max] over training clouds (points, colours) of each statistic :func:`distribution_warnings`
    checks; stored as ``data_stats`` in a pre-training run's ``config.json``."""
    stats = [cloud_stats(np.asarray(p, np.float32), np.asarray(c, np.float32)) for p, c in clouds]
    out: dict = {"num_scenes": len(stats)}
    for name in ("num_points", "horizontal_extent", "vertical_extent", "density", "up_score", "colour_std"):
        values = [getattr(s, name) for s in stats if getattr(s, name) is not None]
        out[name] = [round(float(min(values)), 4), round(float(max(values)), 4)] if values else None
    return out


# The synthetic benchmark (``liftgs synth``, 40 rooms of the quick and standard presets): used
# when a model's run does not record ``data_stats``.
SYNTHETIC_RANGES = {"num_scenes": 40, "num_points": [13664, 27292], "horizontal_extent": [3.5, 4.7],
                    "vertical_extent": [2.07, 2.5], "density": [1.0, 1.0], "up_score": [1.0, 1.0],
                    "colour_std": [0.107, 0.19]}


def _num(v: float, count: bool) -> str:
    return f"{v:,.0f}" if count else f"{v:.2f}"


def distribution_warnings(stats: CloudStats, ranges: dict, source: str) -> list[str]:
    """One line per quantity far from the training ``ranges`` (:func:`data_ranges`; the
    expected range is the training range widened by :data:`SLACK`); ``source`` names where
    the ranges come from."""
    out = []
    units = {"num_points": ("point count", ""), "horizontal_extent": ("horizontal extent (longer of x, y)", " m"),
             "vertical_extent": ("vertical extent (z)", " m"),
             "density": ("density (points per occupied 5 cm voxel)", "")}
    for name, (label, unit) in units.items():
        if not ranges.get(name):
            continue
        lo, hi = ranges[name]
        f = SLACK[name]
        value = getattr(stats, name)
        if not lo / f <= value <= hi * f:
            n = name == "num_points"
            out.append(f"{label} {_num(value, n)}{unit} is outside the expected {_num(lo / f, n)}-"
                       f"{_num(hi * f, n)}{unit} ({source}: {_num(lo, n)}-{_num(hi, n)})")
    up = stats.up_score
    if up is not None and (up < -MIN_UP_SCORE or (up < MIN_UP_SCORE and not stats.z_is_shortest)):
        train = f"; {source}: {ranges['up_score'][0]:.2f}-{ranges['up_score'][1]:.2f}" if ranges.get("up_score") else ""
        out.append(f"gravity: z-up score {up:.2f}, expected {MIN_UP_SCORE} to 1 (the floor, a large flat layer "
                   f"with little opposite it, at the low end of z{train}): is the cloud z-up?")
    if stats.colour_std < MIN_COLOUR_STD:
        out.append(f"colour: every point has nearly the same colour (largest channel std {stats.colour_std:.4f}, "
                   f"expected >= {MIN_COLOUR_STD}): does the cloud carry its rgb?")
    if stats.colour_min < 0.0 or stats.colour_max > 1.0:
        out.append(f"colour range {stats.colour_min:.3g}..{stats.colour_max:.3g} is outside the expected [0, 1]")
    return out
