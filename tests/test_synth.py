"""Synthetic benchmark: fused points agree with the rendered frames, determinism, layout, language, CLI."""

import dataclasses
import itertools

import numpy as np
import pytest

from liftgs.io.scene_dir import list_scenes, read_scene, read_splits
from liftgs.synth import QUICK, STANDARD, SynthConfig, generate_room, room_seed
from liftgs.synth.catalog import CATEGORIES, COLORS
from liftgs.synth.checks import projection_agreement
from liftgs.synth.cli import main as synth_main
from liftgs.synth.dataset import generate_dataset
from liftgs.synth.language import between_coords, footprint_gap, under_fraction
from liftgs.synth.layout import aabb_overlap, layout_room


@pytest.fixture(scope="module")
def quick_rooms():
    return [generate_room(QUICK, room_seed(0, i), scene_id=f"q{i}") for i in range(3)]


@pytest.fixture(scope="module")
def standard_room():
    return generate_room(STANDARD, room_seed(0, 0))


def test_points_agree_with_rendered_depth_and_instances(quick_rooms, standard_room):
    for scene in quick_rooms + [standard_room]:
        a = projection_agreement(scene)
        assert a.visible > 10 * len(scene.frames)
        assert a.depth_ratio >= 0.95, (scene.scene_id, a)
        assert a.instance_ratio >= 0.95, (scene.scene_id, a)


def test_written_rooms_agree_too(tmp_path):
    """The same check on what users read back from disk (depth stored in millimetres)."""
    assert synth_main(["--preset", "quick", "--rooms", "2", "--seed", "3", "--out", str(tmp_path / "d"),
                       "--no-progress"]) == 0
    paths = list_scenes(tmp_path / "d")
    assert len(paths) == 2
    splits = read_splits(tmp_path / "d")
    assert sorted(splits["train"] + splits["val"]) == [p.name for p in paths] and splits["val"]
    for path in paths:
        scene = read_scene(path)
        assert len(scene.frames) == QUICK.num_frames
        a = projection_agreement(scene)
        assert a.depth_ratio >= 0.95 and a.instance_ratio >= 0.95, a


def test_standard_room_shape(standard_room):
    s = standard_room
    assert len(s.frames) == 20 and s.frames[0].rgb.shape == (128, 128, 3)
    assert 10_000 <= s.num_points <= 40_000
    assert s.frames[0].depth.dtype == np.float32 and s.frames[0].instance_ids.dtype == np.int32
    assert set(np.unique(s.instance_ids)) <= {-1, *s.objects}
    assert (s.instance_ids >= 0).sum() > 0.05 * s.num_points
    np.testing.assert_allclose(s.frames[0].camera.K[:2, 2], [64.0, 64.0])
    boxes = np.array([o.attributes["box"] for o in s.objects.values()])
    for f in s.frames:  # the hand-held camera never sits inside or against furniture
        eye = f.camera.position
        gap = np.maximum(np.maximum(boxes[:, :3] - eye, eye - boxes[:, 3:]), 0.0)
        assert np.linalg.norm(gap, axis=1).min() >= 0.3
        assert 1.2 < eye[2] < 1.8


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    def files(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    generate_dataset(QUICK, tmp_path / "a", rooms=2, seed=5, progress=False)
    generate_dataset(QUICK, tmp_path / "b", rooms=2, seed=5, progress=False)
    generate_dataset(QUICK, tmp_path / "c", rooms=2, seed=6, progress=False)
    a, b, c = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert a == b
    assert a.keys() == c.keys() and a != c
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no temporary folders left


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    import liftgs.synth.dataset as dataset

    real, calls = dataset.generate_room, []

    def flaky(config, seed, scene_id=None):
        calls.append(scene_id)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real(config, seed, scene_id=scene_id)

    monkeypatch.setattr(dataset, "generate_room", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        generate_dataset(QUICK, tmp_path / "out", rooms=3, seed=0, progress=False)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "x.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        generate_dataset(QUICK, tmp_path / "keep", rooms=1, progress=False)
    assert (tmp_path / "keep" / "x.txt").read_text() == "mine"
    generate_dataset(QUICK, tmp_path / "keep", rooms=1, overwrite=True, progress=False)
    assert sorted(p.name for p in (tmp_path / "keep").iterdir()) == ["splits.json", "synth.json", "synth_0000"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]


def _layouts(n=40, config=STANDARD):
    return [layout_room(config, np.random.default_rng(room_seed(1, i))) for i in range(n)]


def test_object_counts_categories_colours():
    rooms = _layouts()
    cats, colors = set(), set()
    for room in rooms:
        assert STANDARD.min_objects <= len(room.objects) <= STANDARD.max_objects
        for o in room.objects:
            assert o.category in CATEGORIES and o.color in COLORS and o.size in ("small", "medium", "large")
            cats.add(o.category)
            colors.add(o.color)
    assert len(cats) >= 12 and len(colors) >= 8
    for room in _layouts(10, QUICK):
        assert QUICK.min_objects <= len(room.objects) <= QUICK.max_objects


def test_objects_rest_on_things_and_do_not_interpenetrate():
    for room in _layouts():
        x0, y0, x1, y1 = room.bounds
        by_id = {o.id: o for o in room.objects}
        for o in room.objects:
            box = o.aabb
            assert x0 <= box[0] and box[3] <= x1 and y0 <= box[1] and box[4] <= y1
            if o.support < 0:
                assert box[2] == pytest.approx(room.origin[2], abs=1e-9)
            else:
                host = by_id[o.support]
                assert host.category in ("table", "cabinet", "shelf", "sofa", "bed")
                assert any(abs(box[2] - s.z) < 1e-9 and s.rect[0] <= box[0] and box[3] <= s.rect[2]
                           and s.rect[1] <= box[1] and box[4] <= s.rect[3] for s in host.surfaces)
                assert CATEGORIES[o.category].on
        for a, b in itertools.combinations(room.objects, 2):
            for p, q in itertools.product(a.parts, b.parts):
                lap = np.minimum(p.aabb[3:], q.aabb[3:]) - np.maximum(p.aabb[:3], q.aabb[:3])
                assert not (lap > 1e-9).all(), (a.category, b.category)


def test_expressions_are_true_and_unambiguous(quick_rooms, standard_room):
    relations = set()
    for scene in quick_rooms + [standard_room] + [generate_room(QUICK, s) for s in (11, 12)]:
        objs = scene.objects
        assert all(o.attributes["caption"].startswith(("a ", "an ")) and o.attributes["color"] in o.attributes["caption"]
                   for o in objs.values())
        box = {i: np.asarray(o.attributes["box"]) for i, o in objs.items()}
        centre = {i: (b[:3] + b[3:]) / 2 for i, b in box.items()}
        volume = {i: float(np.prod(b[3:] - b[:3])) for i, b in box.items()}
        for e in scene.expressions:
            (t,), rel = e.target_ids, e.relation
            relations.add(rel)
            same = [i for i in objs if objs[i].category == objs[t].category]
            assert e.text[slice(*e.spans[0])] == objs[t].category and e.source == "synthetic"
            for a in e.anchor_ids:
                assert objs[a].category in e.text[e.spans[0][1]:]
            if rel in ("closest", "farthest"):
                (a,) = e.anchor_ids
                dist = {i: np.linalg.norm(centre[i] - centre[a]) for i in same}
                assert t == (min if rel == "closest" else max)(dist, key=dist.get) and len(same) > 1
            elif rel in ("largest", "smallest"):
                assert t == (max if rel == "largest" else min)(same, key=volume.get) and len(same) > 1
            elif rel == "on":
                assert objs[t].attributes["support"] == e.anchor_ids[0]
                assert sum(objs[i].attributes["support"] == e.anchor_ids[0] for i in same) == 1
            elif rel == "under":
                assert under_fraction(box[t], box[e.anchor_ids[0]]) >= 0.7
                assert all(under_fraction(box[i], box[e.anchor_ids[0]]) < 0.2 for i in same if i != t)
            elif rel == "next to":
                assert footprint_gap(box[t], box[e.anchor_ids[0]]) <= 0.3
                assert all(footprint_gap(box[i], box[e.anchor_ids[0]]) > 0.8 for i in same if i != t)
            elif rel == "between":
                a, b = e.anchor_ids
                u, perp, _ = between_coords(centre[t], centre[a], centre[b])
                assert 0.2 <= u <= 0.8 and perp <= 0.35
            else:
                raise AssertionError(f"unexpected relation {rel}")
    assert {"on", "next to", "between", "closest", "farthest", "largest", "smallest"} <= relations
    assert any(len(e.anchor_ids) == 2 for s in quick_rooms + [standard_room] for e in s.expressions)


def test_config_validation_says_how_to_fix(capsys):
    with pytest.raises(ValueError, match="10..30"):
        dataclasses.replace(STANDARD, num_frames=5)
    with pytest.raises(ValueError, match="max_objects <= 15"):
        SynthConfig(max_objects=20)
    with pytest.raises(SystemExit):
        synth_main(["--rooms", "0", "--out", "x"])
    assert "at least one room" in capsys.readouterr().err


def test_aabb_overlap_touching_is_not_overlap():
    a = np.array([0, 0, 0, 1, 1, 1.0])
    assert not aabb_overlap(a, np.array([0, 0, 1, 1, 1, 2.0]))  # resting on top
    assert aabb_overlap(a, np.array([0.5, 0.5, 0.5, 2, 2, 2.0]))
    assert aabb_overlap(a, np.array([1.01, 0, 0, 2, 1, 1.0]), margin=0.02)
