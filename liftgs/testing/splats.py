"""Stand-in reconstructions for tests and smoke runs: one 3D Gaussian per point of a scene's
cloud, written where ``liftgs recon`` writes its output (``<out>/<scene_id>/gaussians.ply``).

Each Gaussian sits on its point, is isotropic with the point's mean distance to its 3 nearest
neighbours as scale (clipped to [1 mm, 10 cm]), has opacity 0.9 and the point's colour as its
degree-0 SH term. Renders of such a cloud cover the scene's surfaces without holes, which is all
the GenSplat recipes need from a reconstruction to be exercised; it is no substitute for
``liftgs recon``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["point_splats", "write_point_recon"]


def point_splats(points: np.ndarray, colors: np.ndarray, opacity: float = 0.9):
    """A :class:`~liftgs.io.splat_ply.SplatCloud` with one Gaussian per point (see the module)."""
    from scipy.spatial import cKDTree

    from liftgs.io.splat_ply import SH_C0, SplatCloud

    points = np.asarray(points, dtype=np.float32)
    N = points.shape[0]
    k = min(4, N)
    dist, _ = cKDTree(points).query(points, k=k)
    dist = np.asarray(dist).reshape(N, k)
    scale = np.clip(dist[:, 1:].mean(1) if k > 1 else np.full(N, 0.02), 1e-3, 0.1).astype(np.float32)
    return SplatCloud(means=points, sh=((np.asarray(colors, np.float32) - 0.5) / SH_C0)[:, None, :],
                      opacity_logits=np.full(N, np.log(opacity / (1 - opacity)), np.float32),
                      log_scales=np.repeat(np.log(scale)[:, None], 3, axis=1),
                      quats=np.tile(np.float32([1, 0, 0, 0]), (N, 1)))


def write_point_recon(data: str | Path, out: str | Path, split: str | None = None) -> Path:
    """Write ``out/<scene_id>/gaussians.ply`` for every scene under ``data`` (or those of
    ``split``); returns ``out``."""
    from liftgs.io.scene_dir import list_scenes, read_scene
    from liftgs.io.splat_ply import write_splat_ply

    out = Path(out)
    for path in list_scenes(data, split):
        scene = read_scene(path, load_frames=False)
        write_splat_ply(out / scene.scene_id / "gaussians.ply", point_splats(scene.points, scene.colors))
    return out
