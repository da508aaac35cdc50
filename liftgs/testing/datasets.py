"""Tiny on-disk datasets in the exact layouts of real ones, built on the fly.

ScanNet, ScanRefer and ReferIt3D cannot be redistributed, so tests (and anyone checking a
reader) write miniature copies here: a planar wall seen by a few cameras, whose depth is
known in closed form, split into two annotated objects. The geometry makes expected
outputs exact: every fused point lies on the wall, left half = object 0 ("chair"), right
half = object 1 ("table"), the top strip is unannotated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["PlaneRig", "write_scannet_scan", "write_label_map", "write_rgbd_folder", "write_scanrefer", "write_sr3d", "write_nr3d",
           "write_locate3d", "RoomRig", "write_room_capture"]


@dataclass
class PlaneRig:
    """Cameras at height 1.5 m looking along +y at the wall y = ``wall_y`` (raw world frame)."""

    wall_y: float = 2.0
    depth_size: tuple[int, int] = (20, 15)  # (W, H)
    color_size: tuple[int, int] = (40, 30)
    focal: float = 15.0
    camera_x: tuple[float, ...] = (-0.4, -0.1, 0.2, 0.5)
    color: tuple[int, int, int] = (200, 120, 40)
    unlabelled_above: float = 2.3  # wall vertices above this height belong to no object
    axis_alignment: np.ndarray = field(default_factory=lambda: _example_alignment())

    @property
    def K_depth(self) -> np.ndarray:
        W, H = self.depth_size
        return np.array([[self.focal, 0, W / 2], [0, self.focal, H / 2], [0, 0, 1.0]])

    def cam_to_world(self, i: int) -> np.ndarray:
        """Raw camera->world: camera x = world x, camera y = world -z, camera z = world y."""
        T = np.eye(4)
        T[:3, :3] = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
        T[:3, 3] = [self.camera_x[i], 0.0, 1.5]
        return T

    def mesh_vertices(self, spacing: float = 0.05) -> np.ndarray:  # [V, 3] raw world
        xs = np.arange(-2.0, 2.0 + 1e-9, spacing)
        zs = np.arange(0.0, 3.0 + 1e-9, spacing)
        X, Z = np.meshgrid(xs, zs, indexing="ij")
        return np.stack([X.ravel(), np.full(X.size, self.wall_y), Z.ravel()], axis=1)

    def vertex_segments(self, vertices: np.ndarray) -> np.ndarray:  # [V] segment id 0 / 1 / 2
        seg = np.where(vertices[:, 0] < 0, 0, 1)
        seg[vertices[:, 2] > self.unlabelled_above] = 2
        return seg


def _example_alignment() -> np.ndarray:
    a = np.deg2rad(30.0)
    A = np.eye(4)
    A[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    A[:3, 3] = [1.0, -2.0, 0.1]
    return A


def _write_mesh_ply(path: Path, vertices: np.ndarray, color: tuple[int, int, int]) -> None:
    from plyfile import PlyData, PlyElement

    v = np.empty(len(vertices), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"),
                                       ("green", "u1"), ("blue", "u1"), ("alpha", "u1")])
    v["x"], v["y"], v["z"] = vertices[:, 0], vertices[:, 1], vertices[:, 2]
    v["red"], v["green"], v["blue"], v["alpha"] = *color, 255
    faces = np.empty(1, dtype=[("vertex_indices", "i4", (3,))])
    faces["vertex_indices"][0] = [0, 1, 2]
    PlyData([PlyElement.describe(v, "vertex"), PlyElement.describe(faces, "face")]).write(str(path))


def _write_matrix(path: Path, M: np.ndarray) -> None:
    path.write_text("\n".join(" ".join(f"{x:.9g}" for x in row) for row in M) + "\n")


def _depth_mm(rig: PlaneRig) -> np.ndarray:
    W, H = rig.depth_size
    return np.full((H, W), int(round(rig.wall_y * 1000)), dtype=np.uint16)


def write_scannet_scan(root: Path, scene_id: str = "scene0000_00", rig: PlaneRig | None = None,
                       invalid_pose_frames: tuple[int, ...] = (2,)) -> Path:
    """A SensReader-style export plus mesh and annotations under ``root/scene_id``."""
    rig = rig or PlaneRig()
    scan = Path(root) / scene_id
    for sub in ("color", "depth", "pose", "intrinsic"):
        (scan / sub).mkdir(parents=True, exist_ok=True)
    A, (Wc, Hc), (Wd, Hd) = rig.axis_alignment, rig.color_size, rig.depth_size
    (scan / f"{scene_id}.txt").write_text(
        f"axisAlignment = {' '.join(f'{x:.9g}' for x in A.ravel())}\ncolorHeight = {Hc}\ncolorWidth = {Wc}\n"
        f"depthHeight = {Hd}\ndepthWidth = {Wd}\nsceneType = Office\n")
    K_color = rig.K_depth.copy()
    K_color[:2] *= Wc / Wd
    for name, K in (("intrinsic_depth", rig.K_depth), ("intrinsic_color", K_color)):
        K4 = np.eye(4)
        K4[:3, :3] = K
        _write_matrix(scan / "intrinsic" / f"{name}.txt", K4)
    for i in range(len(rig.camera_x)):
        Image.fromarray(np.full((Hc, Wc, 3), rig.color, dtype=np.uint8)).save(scan / "color" / f"{i}.jpg", quality=95)
        Image.fromarray(_depth_mm(rig)).save(scan / "depth" / f"{i}.png")
        pose = np.full((4, 4), -np.inf) if i in invalid_pose_frames else rig.cam_to_world(i)
        _write_matrix(scan / "pose" / f"{i}.txt", pose)
    vertices = rig.mesh_vertices()
    _write_mesh_ply(scan / f"{scene_id}_vh_clean_2.ply", vertices, rig.color)
    segs = rig.vertex_segments(vertices)
    (scan / f"{scene_id}_vh_clean_2.0.010000.segs.json").write_text(
        json.dumps({"params": {}, "sceneId": scene_id, "segIndices": segs.tolist()}))
    groups = [{"id": 0, "objectId": 0, "segments": [0], "label": "chair"},
              {"id": 1, "objectId": 1, "segments": [1], "label": "table"}]
    (scan / f"{scene_id}.aggregation.json").write_text(json.dumps(
        {"sceneId": f"scannet.{scene_id}", "appId": "Aggregator.v2", "segGroups": groups,
         "segmentsFile": f"scannet.{scene_id}_vh_clean_2.0.010000.segs.json"}))
    return scan


def write_label_map(path: Path, categories: dict[str, tuple[int, int, str]]) -> Path:
    """A ``scannetv2-labels.combined.tsv`` with rows raw_category -> (id, nyu40id, nyu40class)."""
    header = ["id", "raw_category", "category", "count", "nyu40id", "eigen13id", "nyuClass", "nyu40class"]
    lines = ["\t".join(header)]
    for name, (lid, nyu, nyu_class) in categories.items():
        lines.append("\t".join([str(lid), name, name, "1", str(nyu), "0", nyu_class, nyu_class]))
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def write_rgbd_folder(root: Path, layout: str = "7scenes", rig: PlaneRig | None = None,
                      depth_scale: float = 1000.0, invalid_value: int | None = 65535) -> Path:
    """A posed RGB-D sequence in the 7-Scenes or the ``color/ depth/ pose/`` layout (colour at
    the depth size); the top-left 2x2 depth pixels hold ``invalid_value`` when given."""
    rig = rig or PlaneRig(color_size=(20, 15))
    root = Path(root)
    (Wc, Hc), (W, H) = rig.color_size, rig.depth_size
    for i in range(len(rig.camera_x)):
        raw = np.full((H, W), int(round(rig.wall_y * depth_scale)), dtype=np.uint16)
        if invalid_value is not None:
            raw[:2, :2] = invalid_value
        rgb = np.full((Hc, Wc, 3), rig.color, dtype=np.uint8)
        if layout == "7scenes":
            root.mkdir(parents=True, exist_ok=True)
            stem = root / f"frame-{i:06d}"
            paths = (Path(f"{stem}.color.png"), Path(f"{stem}.depth.png"), Path(f"{stem}.pose.txt"))
        else:
            for sub in ("color", "depth", "pose"):
                (root / sub).mkdir(parents=True, exist_ok=True)
            paths = (root / "color" / f"{i:06d}.png", root / "depth" / f"{i:06d}.png", root / "pose" / f"{i:06d}.txt")
        Image.fromarray(rgb).save(paths[0])
        Image.fromarray(raw).save(paths[1])
        _write_matrix(paths[2], rig.cam_to_world(i))
    if layout != "7scenes":
        K = rig.K_depth
        (root / "intrinsics.txt").write_text(f"{K[0, 0]} {K[1, 1]} {K[0, 2]} {K[1, 2]}\n")
    return root


def write_scanrefer(path: Path, rows: list[dict]) -> Path:
    Path(path).write_text(json.dumps(rows))
    return Path(path)


def write_locate3d(path: Path, rows: list[dict]) -> Path:
    """A Locate 3D (L3DD) JSON: a list of records as in ``locate3d_data/dataset/*.json``."""
    Path(path).write_text(json.dumps(rows, indent=1))
    return Path(path)


SR3D_COLUMNS = ["scan_id", "target_id", "distractor_ids", "utterance", "stimulus_id", "coarse_reference_type",
                "reference_type", "instance_type", "anchors_types", "anchor_ids", "tokens", "dataset",
                "mentions_target_class", "correct_guess"]
NR3D_COLUMNS = ["assignmentid", "stimulus_id", "utterance", "correct_guess", "speaker_id", "listener_id",
                "scan_id", "instance_type", "target_id", "tokens", "dataset", "mentions_target_class",
                "uses_object_lang", "uses_spatial_lang", "uses_color_lang", "uses_shape_lang"]


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> Path:
    import csv

    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return Path(path)


def write_sr3d(path: Path, rows: list[dict]) -> Path:
    """Sr3d CSV with the real column names (lists written as Python literals, as in sr3d.csv)."""
    return _write_csv(path, SR3D_COLUMNS, rows)


def write_nr3d(path: Path, rows: list[dict]) -> Path:
    return _write_csv(path, NR3D_COLUMNS, rows)


@dataclass
class RoomRig:
    """A closed box room (floor z = 0, ceiling, four walls; level frame z-up) seen by cameras
    1.4 m above the floor looking around and slightly down. The capture is written in a *raw*
    world frame: ``raw = tilt @ level`` (``tilt`` is rigid), as a real capture's world frame is
    arbitrary. Depth is exact (ray cast), colour is one colour per surface (floor grey)."""

    half_size: tuple[float, float] = (2.0, 1.5)  # x, y half extents of the room, metres
    room_height: float = 2.5
    depth_size: tuple[int, int] = (40, 30)  # (W, H)
    focal: float = 20.0
    yaws_deg: tuple[float, ...] = (0.0, 60.0, 120.0, 180.0, 240.0, 300.0)
    pitch_deg: float = -30.0
    tilt: np.ndarray = field(default_factory=lambda: _example_tilt())

    @property
    def K(self) -> np.ndarray:
        W, H = self.depth_size
        return np.array([[self.focal, 0, W / 2], [0, self.focal, H / 2], [0, 0, 1.0]])

    def level_cam_to_world(self, i: int) -> np.ndarray:
        from liftgs.geometry import invert_pose, look_at

        yaw, pitch = np.deg2rad(self.yaws_deg[i]), np.deg2rad(self.pitch_deg)
        eye = np.array([0.3 * np.cos(yaw), 0.3 * np.sin(yaw), 1.4])
        forward = np.array([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)])
        return invert_pose(look_at(eye, eye + forward))

    def cam_to_world(self, i: int) -> np.ndarray:  # raw world
        return self.tilt @ self.level_cam_to_world(i)

    def render(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Depth [H, W] metres and colour [H, W, 3] uint8 of camera ``i``."""
        W, H = self.depth_size
        K, c2w = self.K, self.level_cam_to_world(i)
        v, u = np.mgrid[0:H, 0:W] + 0.5
        dirs = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)  # z = 1
        d = dirs @ c2w[:3, :3].T
        o = c2w[:3, 3]
        ax, ay = self.half_size
        planes = [(2, 0.0), (2, self.room_height), (0, -ax), (0, ax), (1, -ay), (1, ay)]
        t = np.full((H, W), np.inf)
        surface = np.zeros((H, W), dtype=int)
        for k, (axis, value) in enumerate(planes):
            with np.errstate(divide="ignore", invalid="ignore"):
                tk = (value - o[axis]) / d[..., axis]
            better = (tk > 1e-6) & (tk < t)
            t[better], surface[better] = tk[better], k
        palette = np.array([(128, 128, 128), (240, 240, 240), (200, 60, 60), (60, 200, 60), (60, 60, 200),
                            (200, 200, 60)], dtype=np.uint8)
        return t.astype(np.float64), palette[surface]  # depth = t because the ray's camera z is 1


def _example_tilt() -> np.ndarray:
    from liftgs.geometry import rotation_between

    T = np.eye(4)
    T[:3, :3] = rotation_between([0.0, 0.0, 1.0], [0.3, -0.5, 0.8])  # about 37 degrees off vertical
    T[:3, 3] = [0.5, -0.2, 1.0]
    return T


def _save_color(path: Path, rgb: np.ndarray) -> None:
    Image.fromarray(rgb).save(path, **({"quality": 95} if path.suffix == ".jpg" else {}))


def write_room_capture(root: Path, layout: str = "folders", rig: RoomRig | None = None, color_format: str = "png",
                       gravity: str | None = None, intrinsics_file: str | None = "camera-intrinsics.txt",
                       axis_alignment: bool = False) -> Path:
    """The :class:`RoomRig` capture in a public layout under ``root``:

    * ``7scenes``: ``seq-01/``, ``seq-02/`` (frames split between them) with
      ``frame-XXXXXX.color.<fmt>``, ``.depth.png`` (uint16 mm), ``.pose.txt``;
    * ``tum``: ``rgb.txt``, ``depth.txt`` (depth 10 ms after colour), ``groundtruth.txt``
      (``timestamp tx ty tz qx qy qz qw``, 5 ms before colour), ``rgb/`` and ``depth/`` (raw / 5000),
      plus one colour frame with no depth (it must be skipped);
    * ``scannet``: ``color/N.jpg``, ``depth/N.png``, ``pose/N.txt``, ``intrinsic/intrinsic_depth.txt``
      (4x4) and, with ``axis_alignment``, ``<root name>.txt`` whose ``axisAlignment`` undoes the tilt;
    * ``folders``: ``color/NNNNNN.<fmt>``, ``depth/NNNNNN.png``, ``pose/NNNNNN.txt``.

    ``gravity`` "world" writes ``gravity.txt`` (raw world, pointing down); "frames" writes one
    camera-coordinate vector per frame (``frame-XXXXXX.gravity.txt`` / ``gravity/<stem>.txt``).
    ``intrinsics_file`` names the ``fx fy cx cy`` file written at ``root`` (None: none).
    """
    rig = rig or RoomRig()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    n = len(rig.yaws_deg)
    down_raw = rig.tilt[:3, :3] @ np.array([0.0, 0.0, -1.0])
    scale = 5000.0 if layout == "tum" else 1000.0
    tum_lines: tuple[list[str], list[str], list[str]] = ([], [], [])  # rgb.txt, depth.txt, groundtruth.txt
    for i in range(n):
        depth, rgb = rig.render(i)
        c2w = rig.cam_to_world(i)
        color, dpath, pose, gpath = _capture_paths(root, layout, i, n, color_format)
        if layout == "tum":
            t = _TUM_START + 0.1 * i
            tum_lines[0].append(f"{t:.6f} rgb/{t:.6f}.png")
            tum_lines[1].append(f"{t + 0.01:.6f} depth/{t + 0.01:.6f}.png")
            tum_lines[2].append(f"{t - 0.005:.4f} " + " ".join(f"{x:.9f}" for x in _pose_to_tum(c2w)))
        _save_color(color, rgb)
        Image.fromarray(np.round(depth * scale).astype(np.uint16)).save(dpath)
        if pose is not None:
            _write_matrix(pose, c2w)
        if gravity == "frames" and gpath is not None:
            gpath.parent.mkdir(exist_ok=True)
            gpath.write_text(" ".join(f"{x:.9f}" for x in c2w[:3, :3].T @ down_raw) + "\n")
    if layout == "tum":
        _write_tum_lists(root, rig, n, *tum_lines)
    _write_capture_intrinsics(root, layout, rig, intrinsics_file, axis_alignment)
    if gravity == "world":
        (root / "gravity.txt").write_text(" ".join(f"{x:.9f}" for x in down_raw) + "\n")
    return root


_TUM_START = 1305031102.0  # first colour timestamp of a fabricated TUM sequence


def _capture_paths(root: Path, layout: str, i: int, n: int,
                   color_format: str) -> tuple[Path, Path, Path | None, Path | None]:
    """(colour, depth, pose or None, per-frame gravity or None) files of frame ``i`` of ``n``."""
    if layout == "7scenes":
        folder = root / ("seq-01" if i < n // 2 else "seq-02")
        folder.mkdir(exist_ok=True)
        stem = f"frame-{i:06d}"
        return (folder / f"{stem}.color.{color_format}", folder / f"{stem}.depth.png",
                folder / f"{stem}.pose.txt", folder / f"{stem}.gravity.txt")
    if layout == "tum":
        t = _TUM_START + 0.1 * i
        for sub in ("rgb", "depth"):
            (root / sub).mkdir(exist_ok=True)
        return root / "rgb" / f"{t:.6f}.png", root / "depth" / f"{t + 0.01:.6f}.png", None, None
    for sub in ("color", "depth", "pose"):
        (root / sub).mkdir(exist_ok=True)
    stem = str(i) if layout == "scannet" else f"{i:06d}"
    fmt = "jpg" if layout == "scannet" else color_format
    return (root / "color" / f"{stem}.{fmt}", root / "depth" / f"{stem}.png", root / "pose" / f"{stem}.txt",
            root / "gravity" / f"{stem}.txt")


def _write_tum_lists(root: Path, rig: RoomRig, n: int, rgb_lines: list[str], depth_lines: list[str],
                     gt_lines: list[str]) -> None:
    """TUM's rgb.txt / depth.txt / groundtruth.txt, plus one colour frame with no depth or pose
    near it (a reader must skip it)."""
    t_extra = _TUM_START + 0.1 * n
    _save_color(root / "rgb" / f"{t_extra:.6f}.png", rig.render(0)[1])
    rgb_lines = [*rgb_lines, f"{t_extra:.6f} rgb/{t_extra:.6f}.png"]
    head = "# timestamp filename\n"
    (root / "rgb.txt").write_text("# color images\n" + head + "\n".join(rgb_lines) + "\n")
    (root / "depth.txt").write_text("# depth maps\n" + head + "\n".join(depth_lines) + "\n")
    (root / "groundtruth.txt").write_text("# ground truth trajectory\n# timestamp tx ty tz qx qy qz qw\n"
                                          + "\n".join(gt_lines) + "\n")


def _write_capture_intrinsics(root: Path, layout: str, rig: RoomRig, intrinsics_file: str | None,
                              axis_alignment: bool) -> None:
    """ScanNet's 4x4 ``intrinsic/intrinsic_depth.txt`` (and ``axisAlignment`` meta file), else
    the ``fx fy cx cy`` file ``intrinsics_file`` (None: none)."""
    from liftgs.geometry import invert_pose

    K = rig.K
    if layout == "scannet":
        (root / "intrinsic").mkdir(exist_ok=True)
        K4 = np.eye(4)
        K4[:3, :3] = K
        _write_matrix(root / "intrinsic" / "intrinsic_depth.txt", K4)
        if axis_alignment:
            A = invert_pose(rig.tilt)
            (root / f"{root.name}.txt").write_text(f"axisAlignment = {' '.join(f'{x:.9g}' for x in A.ravel())}\n")
    elif intrinsics_file is not None:
        (root / intrinsics_file).write_text(f"{K[0, 0]} {K[1, 1]} {K[0, 2]} {K[1, 2]}\n")


def _pose_to_tum(c2w: np.ndarray) -> list[float]:
    """``tx ty tz qx qy qz qw`` of a camera->world pose."""
    R = c2w[:3, :3]
    w = np.sqrt(max(0.0, 1 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    x = np.copysign(np.sqrt(max(0.0, 1 + R[0, 0] - R[1, 1] - R[2, 2])) / 2, R[2, 1] - R[1, 2])
    y = np.copysign(np.sqrt(max(0.0, 1 - R[0, 0] + R[1, 1] - R[2, 2])) / 2, R[0, 2] - R[2, 0])
    z = np.copysign(np.sqrt(max(0.0, 1 - R[0, 0] - R[1, 1] + R[2, 2])) / 2, R[1, 0] - R[0, 1])
    return [*c2w[:3, 3].tolist(), x, y, z, w]
