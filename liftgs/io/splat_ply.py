"""3D Gaussian Splatting PLY files: the layout the reference 3DGS implementation writes.

One ``vertex`` element, binary little endian, every property float32, in this order::

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  f_rest_0 .. f_rest_{3(K-1)-1}
    opacity  scale_0 scale_1 scale_2  rot_0 rot_1 rot_2 rot_3  [extra properties]

* ``nx ny nz`` are written as zeros (the reference writes zeros) and ignored on reading;
* ``f_dc_*`` are the degree-0 spherical-harmonics coefficients per colour channel, ``f_rest_*``
  the higher ones **channel-major**: the [N, K-1, 3] coefficients transposed to [N, 3, K-1]
  and flattened, so ``f_rest_0 .. f_rest_{K-2}`` belong to red (the reference's
  ``transpose(1, 2).flatten(1)``); K = (degree + 1)**2;
* ``opacity`` is the logit, ``scale_*`` the log scales, ``rot_*`` the wxyz quaternion (not
  necessarily normalised);
* further per-vertex properties (``extra``) follow ``rot_3``; other 3DGS viewers ignore them.

Writing is atomic (temporary file, then rename); reading gives back the same arrays bit for
bit. A malformed file is one :class:`~liftgs.io.errors.DataError` naming the file and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from liftgs.files import atomic_write
from liftgs.io.errors import DataError
from liftgs.io.ply import read_vertex_element
from liftgs.io.sh import SH_C0, dc_to_rgb, rgb_to_dc

__all__ = ["SplatCloud", "write_splat_ply", "read_splat_ply", "SH_C0", "splat_fields", "splat_from_gaussians",
           "rgb_to_dc", "dc_to_rgb"]


_NORMALS = ("nx", "ny", "nz")
_DC = ("f_dc_0", "f_dc_1", "f_dc_2")
_SCALES = ("scale_0", "scale_1", "scale_2")
_ROTS = ("rot_0", "rot_1", "rot_2", "rot_3")
_F_REST = re.compile(r"^f_rest_(\d+)$")


def splat_fields(sh_degree: int) -> list[str]:
    """The standard property names of a degree-``sh_degree`` file, in file order."""
    rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", *_NORMALS, *_DC] + [f"f_rest_{i}" for i in range(rest)]
            + ["opacity", *_SCALES, *_ROTS])


def _f32(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float32)
    if arr.shape != shape:
        raise ValueError(f"SplatCloud.{name} must have shape {list(shape)}, got {list(arr.shape)}")
    return arr


@dataclass
class SplatCloud:
    """Gaussians in the standard 3DGS parameterisation (numpy float32).

    ``means`` [N, 3]; ``sh`` [N, K, 3] with K = (degree + 1)**2 and ``sh[:, 0]`` the DC term;
    ``opacity_logits`` [N]; ``log_scales`` [N, 3]; ``quats`` [N, 4] wxyz (any norm);
    ``extra`` further float32 per-Gaussian properties ([N] each), written after ``rot_3``.
    """

    means: np.ndarray
    sh: np.ndarray
    opacity_logits: np.ndarray
    log_scales: np.ndarray
    quats: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        means = np.asarray(self.means, dtype=np.float32)
        if means.ndim != 2 or means.shape[1] != 3:
            raise ValueError(f"SplatCloud.means must be [N, 3], got {list(means.shape)}")
        N = means.shape[0]
        sh = np.asarray(self.sh, dtype=np.float32)
        if sh.ndim != 3 or sh.shape[0] != N or sh.shape[2] != 3:
            raise ValueError(f"SplatCloud.sh must be [N={N}, K, 3], got {list(sh.shape)}")
        degree = int(round(np.sqrt(sh.shape[1]))) - 1
        if degree < 0 or (degree + 1) ** 2 != sh.shape[1]:
            raise ValueError(f"SplatCloud.sh: K = {sh.shape[1]} coefficients is not (degree + 1)**2")
        self.means, self.sh = means, sh
        self.opacity_logits = _f32("opacity_logits", self.opacity_logits, (N,))
        self.log_scales = _f32("log_scales", self.log_scales, (N, 3))
        self.quats = _f32("quats", self.quats, (N, 4))
        standard = set(splat_fields(degree)) | {f"f_rest_{i}" for i in range(3 * 15)}
        extra = {}
        for name, value in dict(self.extra).items():
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"SplatCloud.extra: property name {name!r} must be an identifier")
            if name in standard:
                raise ValueError(f"SplatCloud.extra: {name!r} is a standard 3DGS property")
            extra[name] = _f32(f"extra[{name!r}]", value, (N,))
        self.extra = extra

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return int(round(np.sqrt(self.sh.shape[1]))) - 1

    def colors(self) -> np.ndarray:
        """[N, 3] RGB in [0, 1] of the DC term: clip(0.5 + SH_C0 * sh[:, 0])."""
        return np.clip(0.5 + SH_C0 * self.sh[:, 0], 0.0, 1.0).astype(np.float32)

    def opacities(self) -> np.ndarray:
        """[N] sigmoid of the logits."""
        return (1.0 / (1.0 + np.exp(-self.opacity_logits.astype(np.float64)))).astype(np.float32)

    def scales(self) -> np.ndarray:
        """[N, 3] exp of the log scales (metres)."""
        return np.exp(self.log_scales).astype(np.float32)

    def to_torch(self, device="cpu") -> dict:
        """The parameters as float32 tensors on ``device``: means, sh, opacity_logits,
        log_scales, quats (copies)."""
        import torch

        return {name: torch.tensor(getattr(self, name), dtype=torch.float32, device=device)
                for name in ("means", "sh", "opacity_logits", "log_scales", "quats")}

    @classmethod
    def from_tensors(cls, means, sh, opacity_logits, log_scales, quats,
                     extra: dict | None = None) -> "SplatCloud":
        """Build from tensors or arrays (detached, moved to the CPU, cast to float32)."""
        def arr(x):
            if hasattr(x, "detach"):
                x = x.detach().cpu().float().numpy()
            return np.array(x, dtype=np.float32, copy=True)

        return cls(means=arr(means), sh=arr(sh), opacity_logits=arr(opacity_logits),
                   log_scales=arr(log_scales), quats=arr(quats),
                   extra={k: arr(v) for k, v in (extra or {}).items()})


OPACITY_EPS = 1e-6  # opacities are clipped to [eps, 1 - eps] before the logit


def splat_from_gaussians(gaussians, extra: dict | None = None) -> SplatCloud:
    """A model's predicted :class:`liftgs.types.Gaussians` (activated: scales in metres,
    opacities in (0, 1), RGB colours in [0, 1], wxyz quaternions) in the 3DGS parameterisation:
    log scales, opacity logits, degree-0 SH from the colours (:func:`rgb_to_dc`), the quaternion
    as it is. ``extra``: per-Gaussian float properties written after ``rot_3``."""
    def arr(x) -> np.ndarray:
        return (x.detach().cpu().double().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=np.float64))

    scales = arr(gaussians.scales)
    if scales.size and not (scales > 0).all():
        raise ValueError("splat_from_gaussians: scales must be > 0 (activated, metres)")
    opacity = np.clip(arr(gaussians.opacities).reshape(-1), OPACITY_EPS, 1.0 - OPACITY_EPS)
    return SplatCloud(means=arr(gaussians.means), sh=rgb_to_dc(arr(gaussians.colors))[:, None, :],
                      opacity_logits=np.log(opacity) - np.log1p(-opacity), log_scales=np.log(scales),
                      quats=arr(gaussians.quats), extra=dict(extra or {}))


def write_splat_ply(path: str | Path, cloud: SplatCloud) -> Path:
    """Write ``cloud`` as a binary little-endian 3DGS PLY, atomically; returns the path."""
    from plyfile import PlyData, PlyElement

    path = Path(path)
    if not isinstance(cloud, SplatCloud):
        raise TypeError(f"write_splat_ply: expected a SplatCloud, got {type(cloud).__name__}")
    if cloud.num_gaussians == 0:
        raise DataError("refusing to write an empty Gaussian cloud (0 Gaussians)", path)
    names = splat_fields(cloud.sh_degree) + list(cloud.extra)
    N = cloud.num_gaussians
    for name, arr in [("means", cloud.means), ("sh", cloud.sh), ("opacity_logits", cloud.opacity_logits),
                      ("log_scales", cloud.log_scales), ("quats", cloud.quats), *cloud.extra.items()]:
        bad = ~np.isfinite(arr.reshape(N, -1)).all(1)
        if bad.any():
            raise DataError(f"refusing to write: {name} of {int(bad.sum())} Gaussians is NaN/inf", path)
    rest = cloud.sh[:, 1:, :].transpose(0, 2, 1).reshape(N, -1)  # channel-major
    columns = np.concatenate(
        [cloud.means, np.zeros((N, 3), np.float32), cloud.sh[:, 0, :], rest,
         cloud.opacity_logits[:, None], cloud.log_scales, cloud.quats]
        + [v[:, None] for v in cloud.extra.values()], axis=1).astype(np.float32, copy=False)
    vertex = np.empty(N, dtype=[(n, "<f4") for n in names])
    for i, n in enumerate(names):
        vertex[n] = columns[:, i]
    ply = PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<")
    with atomic_write(path, "wb") as fh:
        ply.write(fh)
    return path


def _column(v: np.ndarray, name: str, path: Path) -> np.ndarray:
    col = v[name]
    if not np.issubdtype(col.dtype, np.number):
        raise DataError(f"field {name!r}: expected a number per vertex, got {col.dtype}", path)
    out = col.astype(np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        raise DataError(f"field {name!r}: {int(bad.sum())} vertices hold NaN/inf", path)
    return out


def read_splat_ply(path: str | Path) -> SplatCloud:
    """Read a 3DGS PLY (ours or another tool's). Raises DataError naming file and field."""
    from plyfile import PlyListProperty

    path = Path(path)
    element = read_vertex_element(path, "Gaussian-splat PLY")
    for prop in element.properties:
        if isinstance(prop, PlyListProperty):
            raise DataError(f"field {prop.name!r}: list properties are not Gaussian parameters", path)
    v = element.data
    names = list(v.dtype.names or ())
    required = ["x", "y", "z", *_DC, "opacity", *_SCALES, *_ROTS]
    for name in required:
        if name not in names:
            raise DataError(f"field {name!r} is missing: not a 3D Gaussian Splatting PLY "
                            f"(properties: {' '.join(names[:12])}{' ...' if len(names) > 12 else ''})",
                            path)
    if len(v) == 0:
        raise DataError("holds 0 Gaussians", path)
    rest_ids = sorted(int(m.group(1)) for n in names if (m := _F_REST.match(n)))
    if rest_ids != list(range(len(rest_ids))):
        missing = sorted(set(range(max(rest_ids) + 1)) - set(rest_ids))
        raise DataError(f"field 'f_rest_{missing[0]}' is missing (f_rest_* must be numbered "
                        f"0..{max(rest_ids)})", path)
    K = len(rest_ids) // 3 + 1
    degree = int(round(np.sqrt(K))) - 1
    if len(rest_ids) % 3 or (degree + 1) ** 2 != K:
        raise DataError(f"field 'f_rest_*': {len(rest_ids)} coefficients do not make a spherical-"
                        "harmonics degree (3 * ((degree + 1)**2 - 1): 0, 9, 24, 45)", path)
    N = len(v)

    def stack(cols) -> np.ndarray:
        return np.stack([_column(v, n, path) for n in cols], axis=1) if cols else np.zeros((N, 0), np.float32)

    means = stack(["x", "y", "z"])
    dc = stack(_DC)
    rest = stack([f"f_rest_{i}" for i in rest_ids]).reshape(N, 3, K - 1).transpose(0, 2, 1)
    sh = np.concatenate([dc[:, None, :], rest], axis=1)
    standard = set(splat_fields(degree))
    extra = {n: _column(v, n, path) for n in names if n not in standard}
    return SplatCloud(means=means, sh=np.ascontiguousarray(sh), opacity_logits=_column(v, "opacity", path),
                      log_scales=stack(_SCALES), quats=stack(_ROTS), extra=extra)
