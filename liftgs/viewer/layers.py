"""What the viewer draws, as plain arrays: subsets, camera poses, box edges, label overlays.

Nothing here talks to the browser; :mod:`liftgs.viewer.app` hands these arrays to viser.
"""

from __future__ import annotations

import colorsys

import numpy as np

from liftgs.types import Camera

SEGMENT_ALPHA = 0.55  # weight of a segment's colour over the frame's RGB in the label overlay
# the 12 edges of a box as pairs of corners of liftgs.demo_report.box_corners (corner i takes
# the max of axis a when bit a of i is set): an edge joins corners that differ in one bit
BOX_EDGES = tuple((i, i | 1 << a) for i in range(8) for a in range(3) if not i >> a & 1)


def spread_indices(count: int, keep: int) -> np.ndarray:
    """``min(count, keep)`` indices spread evenly over ``range(count)``, first and last included
    (``keep`` <= 0 keeps all)."""
    if keep <= 0 or count <= keep:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, keep)).astype(np.int64))


def display_subset(count: int, keep: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``keep`` points drawn without replacement from ``count`` (a local
    generator, so the subset is the same every run; ``keep`` <= 0 keeps all)."""
    if keep <= 0 or count <= keep:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=keep, replace=False))


def camera_pose(camera: Camera) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(wxyz [4], position [3], vertical field of view in radians, aspect width / height) of a
    camera, camera -> world in OpenCV axes: the pose viser's frustums and cameras take."""
    from scipy.spatial.transform import Rotation

    c2w = camera.cam_to_world
    x, y, z, w = Rotation.from_matrix(c2w[:3, :3]).as_quat()
    fov = 2.0 * float(np.arctan(camera.height / (2.0 * camera.K[1, 1])))
    return np.array([w, x, y, z]), c2w[:3, 3].copy(), fov, camera.width / camera.height


def box_segments(boxes: np.ndarray) -> np.ndarray:
    """Line segments [12 k, 2, 3] of the edges of k axis-aligned boxes [k, 6] (min, max)."""
    from liftgs.demo_report import box_corners

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 6)
    edges = np.array(BOX_EDGES)
    return np.concatenate([box_corners(b)[edges] for b in boxes]) if len(boxes) else np.zeros((0, 2, 3))


def segment_colors(count: int) -> np.ndarray:
    """``count`` distinct RGB colours [count, 3] uint8 (hues a golden angle apart)."""
    hues = (np.arange(count) * 0.6180339887) % 1.0
    rgb = [colorsys.hsv_to_rgb(h, 0.75 if i % 2 else 0.95, 0.95) for i, h in enumerate(hues)]
    return (np.asarray(rgb, dtype=np.float64).reshape(-1, 3) * 255).round().astype(np.uint8)


def label_overlay(rgb: np.ndarray, segments: np.ndarray, alpha: float = SEGMENT_ALPHA) -> np.ndarray:
    """The frame's RGB [H, W, 3] uint8 with each segment of ``segments`` [H, W] (-1 = none)
    tinted in its :func:`segment_colors` colour and outlined; unlabelled pixels are darkened."""
    segments = np.asarray(segments)
    if segments.shape != rgb.shape[:2]:
        raise ValueError(f"segment map {list(segments.shape)} does not match the frame's image "
                         f"{list(rgb.shape[:2])}")
    colors = segment_colors(int(segments.max(initial=-1)) + 1).astype(np.float32)
    out = rgb.astype(np.float32) * 0.6
    hit = segments >= 0
    out[hit] = (1 - alpha) * rgb[hit] + alpha * colors[segments[hit]]
    edge = np.zeros_like(hit)
    edge[:-1] |= segments[:-1] != segments[1:]
    edge[:, :-1] |= segments[:, :-1] != segments[:, 1:]
    out[edge] = 255.0
    return out.round().clip(0, 255).astype(np.uint8)


def thumbnail(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` [H, W, C] uint8 shrunk (box filter) so that its longer side is at most ``max_side``."""
    from PIL import Image

    H, W = image.shape[:2]
    if max(H, W) <= max_side:
        return image
    scale = max_side / max(H, W)
    size = (max(1, round(W * scale)), max(1, round(H * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))
