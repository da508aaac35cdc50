"""Scene directory format: exact round trip, atomic writes, splits, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from liftgs.geometry import look_at
from liftgs.io.errors import DataError
from liftgs.io.scene_dir import (list_scenes, read_cameras, read_frame, read_scene, read_splits,
                                 write_scene, write_splits)
from liftgs.types import Camera, Expression, Frame, ObjectInfo, Scene


def make_scene(scene_id: str = "room0", num_frames: int = 2, with_ids: bool = True, seed: int = 0) -> Scene:
    rng = np.random.default_rng(seed)
    H, W = 6, 8
    K = np.array([[7.3, 0, 4.1], [0, 7.7, 2.9], [0, 0, 1.0]])
    frames = []
    for i in range(num_frames):
        cam = Camera(K=K, viewmat=look_at([2.0 + 0.1 * i, 0.3, 1.4], [0, 0, 0.5]), width=W, height=H)
        depth = rng.uniform(0.5, 4.0, (H, W)).astype(np.float32)
        depth[0, 0] = 0.0
        inst = rng.integers(-1, 5, (H, W)).astype(np.int32) if with_ids else None
        rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        frames.append(Frame(camera=cam, rgb=rgb, depth=depth, instance_ids=inst, name=f"f{i:03d}"))
    P = 50
    return Scene(
        scene_id=scene_id,
        points=rng.normal(size=(P, 3)).astype(np.float32),
        colors=rng.uniform(0, 1, (P, 3)).astype(np.float32),
        frames=frames,
        instance_ids=rng.integers(-1, 5, P).astype(np.int32) if with_ids else None,
        objects={0: ObjectInfo("chair", {"color": "red", "size": "large", "caption": "a red chair"}),
                 3: ObjectInfo("table", {"color": "blue"})},
        expressions=[Expression("the red chair next to the table", [0], spans=[(8, 13)], anchor_ids=[3],
                                source="synthetic", ann_id="a1", relation="next to",
                                meta={"eval_type": "unique"})],
        meta={"source": "test", "seed": seed, "nested": {"a": [1, 2.5]}},
    )


def mm(depth: np.ndarray) -> np.ndarray:
    return (np.round(depth.astype(np.float64) * 1000) / 1000).astype(np.float32)


def assert_same_scene(a: Scene, b: Scene, exact_depth: bool = False) -> None:
    assert a.scene_id == b.scene_id
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.colors, b.colors)
    if a.instance_ids is None:
        assert b.instance_ids is None
    else:
        np.testing.assert_array_equal(a.instance_ids, b.instance_ids)
    assert a.objects == b.objects
    assert a.expressions == b.expressions
    assert a.meta == b.meta
    assert len(a.frames) == len(b.frames)
    for fa, fb in zip(a.frames, b.frames):
        assert fa.name == fb.name
        np.testing.assert_array_equal(fa.camera.K, fb.camera.K)
        np.testing.assert_array_equal(fa.camera.viewmat, fb.camera.viewmat)
        assert (fa.camera.width, fa.camera.height) == (fb.camera.width, fb.camera.height)
        np.testing.assert_array_equal(fa.rgb, fb.rgb)
        np.testing.assert_array_equal(fa.depth if exact_depth else mm(fa.depth), fb.depth)
        if fa.instance_ids is None:
            assert fb.instance_ids is None
        else:
            np.testing.assert_array_equal(fa.instance_ids, fb.instance_ids)


def test_round_trip_exact(tmp_path):
    scene = make_scene()
    path = write_scene(scene, tmp_path)
    assert path == tmp_path / "room0"
    assert sorted(p.name for p in (path / "frames").iterdir()) == [
        "000000.png", "000000_depth.png", "000000_inst.png", "000001.png", "000001_depth.png", "000001_inst.png"]
    back = read_scene(path)
    assert_same_scene(scene, back)
    # a second write/read cycle is bit-exact (depth already at mm resolution)
    again = read_scene(write_scene(back, tmp_path / "second"))
    assert_same_scene(back, again, exact_depth=True)
    assert back.frames[0].depth.dtype == np.float32 and back.frames[0].depth[0, 0] == 0.0
    assert back.frames[0].instance_ids.dtype == np.int32


def test_round_trip_without_ids_and_frames(tmp_path):
    scene = make_scene(with_ids=False, num_frames=0)
    back = read_scene(write_scene(scene, tmp_path))
    assert_same_scene(scene, back)


def test_lazy_frames_and_cameras(tmp_path):
    scene = make_scene(num_frames=3)
    path = write_scene(scene, tmp_path)
    lazy = read_scene(path, load_frames=False)
    assert lazy.frames == [] and lazy.num_points == scene.num_points
    cams = read_cameras(path)
    assert len(cams) == 3
    np.testing.assert_array_equal(cams[2].viewmat, scene.frames[2].camera.viewmat)
    f = read_frame(path, 1)
    np.testing.assert_array_equal(f.rgb, scene.frames[1].rgb)
    np.testing.assert_array_equal(f.depth, mm(scene.frames[1].depth))
    with pytest.raises(IndexError):
        read_frame(path, 3)


def test_jpeg_frames(tmp_path):
    scene = make_scene(num_frames=1)
    path = write_scene(scene, tmp_path, image_format="jpg")
    assert (path / "frames" / "000000.jpg").is_file()
    back = read_scene(path)
    assert back.frames[0].rgb.shape == scene.frames[0].rgb.shape


def test_overwrite_and_no_half_written_scene(tmp_path):
    write_scene(make_scene(seed=0), tmp_path)
    write_scene(make_scene(seed=1), tmp_path)  # replaces
    assert read_scene(tmp_path / "room0").meta["seed"] == 1
    with pytest.raises(FileExistsError):
        write_scene(make_scene(seed=2), tmp_path, overwrite=False)
    bad = make_scene(scene_id="bad")
    bad.frames[1].instance_ids[0, 0] = 70000  # does not fit a uint16 PNG: fails mid-write
    with pytest.raises(DataError, match="instance ids"):
        write_scene(bad, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["room0"]  # no temp folder, no 'bad'
    bad_meta = make_scene(scene_id="bad")
    bad_meta.meta["x"] = np.float32(1.0)
    with pytest.raises(DataError, match="JSON"):
        write_scene(bad_meta, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["room0"]


def test_splits_and_listing(tmp_path):
    for name in ("b", "a", "c"):
        write_scene(make_scene(scene_id=name, num_frames=0), tmp_path)
    assert [p.name for p in list_scenes(tmp_path)] == ["a", "b", "c"]
    write_splits(tmp_path, {"train": ["c", "a"], "val": ["b"]})
    assert read_splits(tmp_path) == {"train": ["c", "a"], "val": ["b"]}
    assert [p.name for p in list_scenes(tmp_path, "train")] == ["c", "a"]
    with pytest.raises(DataError, match="no split 'test'"):
        list_scenes(tmp_path, "test")
    write_splits(tmp_path, {"train": ["zzz"]})
    with pytest.raises(DataError, match="zzz"):
        list_scenes(tmp_path, "train")


def test_bad_scene_dirs(tmp_path):
    path = write_scene(make_scene(), tmp_path)
    with pytest.raises(DataError, match="scene.json is missing"):
        read_scene(tmp_path / "nope")
    # truncated colour image
    png = path / "frames" / "000001.png"
    png.write_bytes(png.read_bytes()[:40])
    with pytest.raises(DataError, match="000001.png.*cannot decode"):
        read_scene(path)
    # missing depth
    path = write_scene(make_scene(), tmp_path)
    (path / "frames" / "000000_depth.png").unlink()
    with pytest.raises(DataError, match="000000_depth.png.*missing"):
        read_frame(path, 0)
    # truncated point cloud
    path = write_scene(make_scene(), tmp_path)
    ply = path / "points.ply"
    ply.write_bytes(ply.read_bytes()[:-100])
    with pytest.raises(DataError, match="points.ply"):
        read_scene(path, load_frames=False)
    # image size disagrees with scene.json
    path = write_scene(make_scene(), tmp_path)
    doc = json.loads((path / "scene.json").read_text())
    doc["frames"][0]["width"] = 9
    (path / "scene.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="000000.png.*8x6 but scene.json says 9x6"):
        read_frame(path, 0)
    # truncated json
    (path / "scene.json").write_text(json.dumps(doc)[:-10])
    with pytest.raises(DataError, match="scene.json.*cannot parse"):
        read_scene(path)


def test_empty_point_cloud_rejected(tmp_path):
    scene = make_scene(num_frames=0, with_ids=False)
    scene.points, scene.colors = scene.points[:0], scene.colors[:0]
    with pytest.raises(DataError, match="empty"):
        write_scene(scene, tmp_path)
    assert list(tmp_path.iterdir()) == []
