"""Point-cloud files: PLY (via plyfile) and raw N x 6 float32 arrays (.npy / .bin).

The scene format's ``points.ply`` holds, per vertex, ``x y z`` float32, ``red green blue``
uchar (for viewers such as MeshLab/CloudCompare), ``red_float green_float blue_float``
float32 (the exact colours in [0, 1], so writing and reading round-trip bit for bit) and,
when known, ``instance_id`` int32 (-1 = none). Readers also accept PLYs from other tools:
float or uchar colours, a 3D Gaussian Splatting PLY's ``f_dc_*`` (colour of the SH DC term,
0.5 + SH_C0 * f_dc), no colours (grey), extra properties and faces (ignored).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liftgs.files import atomic_write
from liftgs.io.errors import DataError, data_error
from liftgs.io.sh import dc_to_rgb

__all__ = ["PointCloud", "write_point_cloud", "read_point_cloud", "load_point_cloud", "check_coordinates",
           "MAX_COORDINATE"]

_FLOAT_COLOURS = ("red_float", "green_float", "blue_float")
_BYTE_COLOURS = ("red", "green", "blue")
_SH_DC = ("f_dc_0", "f_dc_1", "f_dc_2")  # 3DGS files: colour = 0.5 + SH_C0 * f_dc
MAX_COORDINATE = 1e5
"""metres: a larger coordinate is no room scan (a unit or georeferencing mistake); refused
before it overflows the voxel grid's integer indices"""


@dataclass
class PointCloud:
    """Points [P, 3] float32, colours [P, 3] float32 in [0, 1], instance ids [P] int32 or None."""

    points: np.ndarray
    colors: np.ndarray
    instance_ids: np.ndarray | None = None


def write_point_cloud(path: str | Path, points: np.ndarray, colors: np.ndarray,
                      instance_ids: np.ndarray | None = None, text: bool = False) -> None:
    """Write a binary little-endian PLY atomically (temporary file, then rename)."""
    from plyfile import PlyData, PlyElement

    path = Path(path)
    points = np.asarray(points, dtype=np.float32)
    colors = np.asarray(colors, dtype=np.float32)
    P = points.shape[0]
    if points.ndim != 2 or points.shape[1] != 3 or colors.shape != (P, 3):
        raise DataError(f"points must be [P, 3] and colors [P, 3], got {list(points.shape)} / "
                        f"{list(colors.shape)}", path)
    if P == 0:
        raise DataError("refusing to write an empty point cloud", path)
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
              ("red_float", "f4"), ("green_float", "f4"), ("blue_float", "f4")]
    if instance_ids is not None:
        fields.append(("instance_id", "i4"))
    vertex = np.empty(P, dtype=fields)
    for i, axis in enumerate("xyz"):
        vertex[axis] = points[:, i]
    bytes_ = np.clip(np.round(colors * 255.0), 0, 255).astype(np.uint8)
    for i in range(3):
        vertex[_BYTE_COLOURS[i]] = bytes_[:, i]
        vertex[_FLOAT_COLOURS[i]] = colors[:, i]
    if instance_ids is not None:
        ids = np.asarray(instance_ids)
        if ids.shape != (P,):
            raise DataError(f"instance_ids must be [{P}], got {list(ids.shape)}", path)
        vertex["instance_id"] = ids.astype(np.int32)
    ply = PlyData([PlyElement.describe(vertex, "vertex")], text=text, byte_order="<")
    with atomic_write(path, "wb") as fh:
        ply.write(fh)


def _vertex_colours(v: np.ndarray, names: tuple[str, ...], path: Path) -> np.ndarray:
    """Colours in [0, 1] from the best available properties (exact floats first)."""
    if all(n in names for n in _FLOAT_COLOURS):
        return np.stack([v[n] for n in _FLOAT_COLOURS], axis=1).astype(np.float32)
    for keys in (_BYTE_COLOURS, ("r", "g", "b")):
        if all(n in names for n in keys):
            cols = np.stack([v[n] for n in keys], axis=1)
            if np.issubdtype(cols.dtype, np.integer) or cols.size and float(cols.max()) > 1.0:
                return (cols.astype(np.float64) / 255.0).astype(np.float32)
            return cols.astype(np.float32)
    if all(n in names for n in _SH_DC):  # a 3D Gaussian Splatting PLY: colour of the SH DC term
        dc = np.stack([v[n] for n in _SH_DC], axis=1).astype(np.float64)
        if not np.isfinite(dc).all():
            raise DataError(f"field f_dc_*: {int((~np.isfinite(dc)).any(1).sum())} vertices hold NaN/inf", path)
        return dc_to_rgb(dc)
    warnings.warn(f"{path}: no vertex colours; using grey", stacklevel=3)
    return np.full((len(v), 3), 0.5, dtype=np.float32)


def read_vertex_element(path: Path, what: str):
    """The ``vertex`` element of the PLY at ``path`` (a plyfile ``PlyElement``); a missing,
    unparsable or vertex-less file is a DataError naming it (``what`` names the file's role)."""
    from plyfile import PlyData

    if not path.is_file():
        raise DataError(f"{what} is missing", path)
    try:
        ply = PlyData.read(str(path))
    except Exception as exc:  # plyfile raises PlyParseError, ValueError, EOFError...
        raise data_error(path, "cannot parse PLY (truncated or corrupt?)", exc) from exc
    if "vertex" not in ply:
        raise DataError("PLY has no 'vertex' element", path)
    return ply["vertex"]


def read_point_cloud(path: str | Path, instance_property: str = "instance_id") -> PointCloud:
    """Read the vertices of a PLY (point cloud or mesh). Raises DataError on bad input."""
    path = Path(path)
    v = read_vertex_element(path, "point-cloud file").data
    names = v.dtype.names or ()
    if not all(a in names for a in "xyz"):
        raise DataError(f"PLY vertices lack x/y/z (properties: {list(names)})", path)
    if len(v) == 0:
        raise DataError("point cloud is empty (0 vertices)", path)
    points = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float32)
    if not np.isfinite(points).all():
        raise DataError(f"field x/y/z: {int((~np.isfinite(points)).any(1).sum())} vertices have NaN/inf "
                        "coordinates", path)
    colors = _vertex_colours(v, names, path)
    ids = v[instance_property].astype(np.int32) if instance_property in names else None
    return PointCloud(points=points, colors=colors, instance_ids=ids)


def load_point_cloud(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Points [N, 3] float32 and colours [N, 3] float32 in [0, 1] from .ply, .npy or .bin.

    ``.npy`` / ``.bin`` hold N x 6 float32 (xyz + rgb, ``.bin`` raw little-endian); rgb in
    0-255 is detected (any value > 1) and rescaled. Colours still outside [0, 1] after that
    are clipped with a warning. Used by ``liftgs ground`` on bare clouds, which refuses NaN /
    infinite values and coordinates beyond ±:data:`MAX_COORDINATE` m (:func:`check_coordinates`).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        pc = read_point_cloud(path)
        check_coordinates(pc.points, path)
        if not np.isfinite(pc.colors).all():
            raise DataError(f"field red/green/blue: {int((~np.isfinite(pc.colors)).any(1).sum())} vertices have "
                            "NaN/inf colours", path)
        return pc.points, pc.colors
    if not path.is_file():
        raise DataError("point-cloud file is missing", path)
    try:
        if suffix == ".npy":  # memory-mapped: only the float32 copies below take memory
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        elif suffix == ".bin":
            raw = np.memmap(path, dtype="<f4", mode="r") if path.stat().st_size else np.zeros(0, "<f4")
            if raw.size % 6:
                raise DataError(f".bin size {raw.size} floats is not a multiple of 6 (N x 6 xyzrgb float32)", path)
            arr = raw.reshape(-1, 6)
        else:
            raise DataError(f"unknown point-cloud suffix {suffix!r}; use .ply, .npy or .bin", path)
    except DataError:
        raise
    except Exception as exc:
        raise data_error(path, "cannot read point-cloud array (truncated or corrupt?)", exc) from exc
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise DataError(f"expected an N x 6 array (xyz + rgb), got shape {list(arr.shape)}", path)
    if arr.shape[0] == 0:
        raise DataError("point cloud is empty (0 points)", path)
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"expected a float array (xyz + rgb), got dtype {arr.dtype}", path)
    points, colors = arr[:, :3].astype(np.float32), arr[:, 3:].astype(np.float32)
    del arr
    check_coordinates(points, path)
    if not np.isfinite(colors).all():
        raise DataError(f"columns 3-5 (rgb): {int((~np.isfinite(colors)).any(1).sum())} points have NaN/inf "
                        "colours", path)
    if colors.max() > 1.0:
        colors /= np.float32(255.0)
    lo, hi = float(colors.min()), float(colors.max())
    if lo < 0.0 or hi > 1.0:
        warnings.warn(f"{path}: columns 3-5 (rgb) hold {lo:.3g}..{hi:.3g} after scaling to [0, 1] (0-255 "
                      "detected by any value > 1); clipped", stacklevel=2)
        np.clip(colors, 0.0, 1.0, out=colors)
    return points, colors


def check_coordinates(points: np.ndarray, path: str | Path) -> None:
    """Refuse NaN / infinite coordinates and any beyond ±:data:`MAX_COORDINATE` m (one-line
    :class:`DataError` naming ``path`` and the field)."""
    fields = "x/y/z" if Path(path).suffix.lower() == ".ply" else "columns 0-2 (xyz)"
    finite = np.isfinite(points).all(1)
    if not finite.all():
        raise DataError(f"field {fields}: {int((~finite).sum())} points have NaN/inf coordinates", path)
    big = float(np.abs(points).max()) if points.size else 0.0
    if big > MAX_COORDINATE:
        raise DataError(f"field {fields}: coordinates beyond ±{MAX_COORDINATE:.0e} m (largest |value| "
                        f"{big:.3g}); is the unit metres? shift or rescale the cloud", path)
