"""Typed containers shared by every stage (see docs/ARCHITECTURE.md).

Conventions, stated once for the whole library (they follow gsplat so that users can switch
renderers):

* metres, right-handed, z up in scene space (ScanNet's axis-aligned frame);
* ``viewmat`` is the 4x4 **world -> camera** transform; the camera looks down +z, x right,
  y down (OpenCV); readers of camera->world pose files invert them on load;
* ``K`` is the 3x3 pinhole matrix; pixel centres are at ``(x + 0.5, y + 0.5)``;
* quaternions are ``wxyz``; Gaussian scales are already activated (metres).

Data-side containers (``Camera``, ``Frame``, ``Scene``, ``PseudoLabels``) hold numpy arrays;
model-side containers (``Gaussians``, ``Grounding``) hold torch tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor


@dataclass
class Camera:
    """A pinhole camera. ``K`` [3, 3] float64, ``viewmat`` [4, 4] float64 world->camera."""

    K: np.ndarray  # [3, 3]
    viewmat: np.ndarray  # [4, 4] world -> camera
    width: int
    height: int

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, dtype=np.float64)
        self.viewmat = np.asarray(self.viewmat, dtype=np.float64)
        if self.K.shape != (3, 3):
            raise ValueError(f"Camera.K must be 3x3, got {self.K.shape}")
        if self.viewmat.shape != (4, 4):
            raise ValueError(f"Camera.viewmat must be 4x4, got {self.viewmat.shape}")
        if not (np.isfinite(self.K).all() and np.isfinite(self.viewmat).all()):
            raise ValueError("Camera K / viewmat contain NaN or infinite values")
        self.width, self.height = int(self.width), int(self.height)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"Camera size must be positive, got {self.width}x{self.height}")

    @property
    def cam_to_world(self) -> np.ndarray:  # [4, 4]
        return np.linalg.inv(self.viewmat)

    @property
    def position(self) -> np.ndarray:  # [3]
        return self.cam_to_world[:3, 3]

    def scaled(self, width: int, height: int) -> "Camera":
        """The same camera at another image size (``K`` scaled per axis)."""
        sx, sy = width / self.width, height / self.height
        K = self.K.copy()
        K[0] *= sx
        K[1] *= sy
        K[2] = [0.0, 0.0, 1.0]
        return Camera(K=K, viewmat=self.viewmat.copy(), width=width, height=height)


@dataclass
class Frame:
    """One posed RGB-D observation.

    ``rgb`` [H, W, 3] uint8; ``depth`` [H, W] float32 metres (0 = invalid) or None;
    ``instance_ids`` [H, W] int32 (-1 = none; synthetic ground truth only) or None.
    """

    camera: Camera
    rgb: np.ndarray  # [H, W, 3] uint8
    depth: np.ndarray | None = None  # [H, W] float32, metres, 0 = invalid
    instance_ids: np.ndarray | None = None  # [H, W] int32, -1 = none
    name: str = ""

    def __post_init__(self) -> None:
        H, W = self.camera.height, self.camera.width
        if self.rgb.shape != (H, W, 3) or self.rgb.dtype != np.uint8:
            raise ValueError(
                f"Frame {self.name!r}: rgb must be uint8 [{H}, {W}, 3] to match its camera, "
                f"got {self.rgb.dtype} {list(self.rgb.shape)}"
            )
        for key in ("depth", "instance_ids"):
            arr = getattr(self, key)
            if arr is not None and arr.shape != (H, W):
                raise ValueError(
                    f"Frame {self.name!r}: {key} must be [{H}, {W}] to match its camera, "
                    f"got {list(arr.shape)}"
                )


@dataclass
class ObjectInfo:
    """An annotated object: ``category`` (e.g. "chair") plus free attributes (colour, size...)."""

    category: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Expression:
    """A referring expression attached to a scene.

    ``spans`` are character spans ``(start, end)`` in ``text`` naming the targets (the tokens
    the targets' masks must match, paper Fig. 2); ``anchor_ids`` are other objects it names.
    """

    text: str
    target_ids: list[int]
    spans: list[tuple[int, int]] = field(default_factory=list)
    anchor_ids: list[int] = field(default_factory=list)
    source: str = ""  # "synthetic", "scanrefer", "sr3d", "nr3d", "caption", ...
    ann_id: str = ""
    relation: str = ""  # e.g. "next to", "closest"; empty when unknown
    meta: dict[str, Any] = field(default_factory=dict)  # source-specific, JSON-ready (e.g. ScanRefer "unique"/"multiple")

    def __post_init__(self) -> None:
        self.target_ids = [int(t) for t in self.target_ids]
        self.anchor_ids = [int(t) for t in self.anchor_ids]
        self.spans = [(int(a), int(b)) for a, b in self.spans]
        for a, b in self.spans:
            if not (0 <= a < b <= len(self.text)):
                raise ValueError(f"span ({a}, {b}) out of range for expression {self.text!r}")


@dataclass
class Scene:
    """A scanned (or generated) room.

    ``points`` [P, 3] float32 and ``colors`` [P, 3] float32 in [0, 1] form the sensor point
    cloud; ``instance_ids`` [P] int32 (-1 = none) is ground truth when known.
    """

    scene_id: str
    points: np.ndarray  # [P, 3] float32
    colors: np.ndarray  # [P, 3] float32 in [0, 1]
    frames: list[Frame] = field(default_factory=list)
    instance_ids: np.ndarray | None = None  # [P] int32
    objects: dict[int, ObjectInfo] = field(default_factory=dict)
    expressions: list[Expression] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=np.float32)
        self.colors = np.asarray(self.colors, dtype=np.float32)
        P = self.points.shape[0]
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise ValueError(f"scene {self.scene_id}: points must be [P, 3], got {list(self.points.shape)}")
        if self.colors.shape != (P, 3):
            raise ValueError(f"scene {self.scene_id}: colors must be [{P}, 3], got {list(self.colors.shape)}")
        if self.instance_ids is not None:
            self.instance_ids = np.asarray(self.instance_ids, dtype=np.int32)
            if self.instance_ids.shape != (P,):
                raise ValueError(
                    f"scene {self.scene_id}: instance_ids must be [{P}], got {list(self.instance_ids.shape)}"
                )

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])


@dataclass
class PseudoLabels:
    """2D pseudo-labels of one frame (paper appendix A.1: *Semantics* / *Index2Semantics*).

    ``segments`` [H, W] int32 holds a frame-local segment index per pixel (-1 = none);
    ``embeddings`` [S, F] float32 holds one embedding per segment; ``captions`` [S] optional.
    """

    segments: np.ndarray  # [H, W] int32
    embeddings: np.ndarray  # [S, F] float32
    captions: list[str] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.segments.ndim != 2:
            raise ValueError(f"segments must be [H, W], got {list(self.segments.shape)}")
        if self.embeddings.ndim != 2:
            raise ValueError(f"embeddings must be [S, F], got {list(self.embeddings.shape)}")
        S = self.embeddings.shape[0]
        if self.segments.size and int(self.segments.max(initial=-1)) >= S:
            raise ValueError(f"segments index {int(self.segments.max())} but only {S} embeddings")
        if self.captions is not None and len(self.captions) != S:
            raise ValueError(f"{len(self.captions)} captions for {S} segments")

    @property
    def num_segments(self) -> int:
        return int(self.embeddings.shape[0])


@dataclass
class Gaussians:
    """3D Gaussians predicted for one scene (one per input point, paper Sec 3.3.2).

    A model may return a subclass that stores ``features`` in another form (e.g. low rank,
    ``liftgs.modules.gaussian_head.LowRankGaussians``); :meth:`feature_vectors` always gives
    the [N, F] matrix."""

    means: Tensor  # [N, 3]
    quats: Tensor  # [N, 4] wxyz, not necessarily normalised
    scales: Tensor  # [N, 3] activated, metres
    opacities: Tensor  # [N] in (0, 1)
    colors: Tensor  # [N, 3] in [0, 1]
    features: Tensor | None = None  # [N, F]

    def __len__(self) -> int:
        return int(self.means.shape[0])

    def feature_vectors(self) -> Tensor | None:
        """[N, F] per-Gaussian features, or None when the Gaussians carry none."""
        return self.features

    def to(self, device: torch.device | str) -> "Gaussians":
        return type(self)(**{f.name: (v.to(device) if v is not None else None)
                             for f in fields(self) for v in [getattr(self, f.name)]})


@dataclass
class Grounding:
    """Decoder outputs for one scene and one query set (paper eq. 1).

    ``mask_logits`` [m, N] over Gaussians / points; ``token_logits`` [m, T + 1] over the query
    tokens, last column = "no match". ``aux`` holds the same pair for each earlier decoder
    layer (deep supervision). Read masks with :meth:`logits_at`: a model may return a
    subclass that computes them on demand (e.g. only for the points a view sees,
    ``liftgs.models.liftgs.factors.FactoredGrounding``).
    """

    mask_logits: Tensor  # [m, N]
    token_logits: Tensor  # [m, T + 1]
    aux: list["Grounding"] = field(default_factory=list)

    def logits_at(self, index: Tensor | None = None) -> Tensor:
        """Mask logits [m, N] of every point, or [m, len(index)] of points ``index``."""
        return self.mask_logits if index is None else self.mask_logits.index_select(1, index)
