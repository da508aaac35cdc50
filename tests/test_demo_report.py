"""``report.md`` of the demo: a failure to render the examples is not hidden."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from liftgs import demo_report
from liftgs.demo import DemoPlan
from liftgs.geometry import box_from_points, project_points
from liftgs.ground import highlight_colors, render_views


MODELS = {"liftgs-tiny-pretrained": "w/pre", "liftgs-tiny-finetuned": "w/ft"}


def _state(out):
    zero_shot = {"model": {"acc@0.25": 0.5, "acc@0.5": 0.25, "n": 8},
                 "random": {"acc@0.25": 0.125, "acc@0.5": 0.0, "n": 8}}
    finetuned = {"ap": 0.3, "ap50": 0.45, "ap25": 0.6, "acc@0.25": 0.625, "acc@0.5": 0.5, "n_expressions": 16,
                 "random_acc@0.25": 0.125, "random_acc@0.5": 0.0625}
    return SimpleNamespace(out=out, plan=DemoPlan(heldout_rooms=1), config=SimpleNamespace(quick=True),
                           results={"zero_shot": zero_shot, "finetuned": finetuned},
                           timings={"held-out rooms (1)": 3.0})


def test_report_with_examples(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_report, "examples", lambda state, data, model, encoder: ["**room4** example", ""])
    text = demo_report.write_report(_state(tmp_path), tmp_path / "data", MODELS, encoder=None).read_text()
    assert "## Examples\n\n**room4** example" in text and "Error" not in text
    assert "| pre-trained (2D supervision only) | 50.0 | 25.0 | 8 |" in text
    assert "Pre-trained / random at Acc@0.25: 4.0x." in text
    assert "| fine-tuned | 62.5 | 50.0 | 30.0 | 45.0 | 60.0 |" in text
    assert "| random object of the room | 12.5 | 6.2 | | | |" in text
    assert "16 expressions; fine-tuned / random at Acc@0.25: 5.0x." in text


def test_example_failure_fails_the_report_and_is_written_at_its_top(tmp_path, monkeypatch):
    def broken(state, data, model, encoder):
        raise KeyError("target 7")

    monkeypatch.setattr(demo_report, "examples", broken)
    with pytest.raises(demo_report.ExampleRenderError, match="rendering the examples failed") as exc:
        demo_report.write_report(_state(tmp_path), tmp_path / "data", MODELS, encoder=None)
    assert isinstance(exc.value.__cause__, KeyError)  # the original error and its traceback are kept
    assert str(tmp_path / "report.md") in str(exc.value)
    lines = (tmp_path / "report.md").read_text().splitlines()
    assert lines[0] == "# liftgs demo report"
    assert lines[2].startswith("> **Error: this report is incomplete.**") and "KeyError: 'target 7'" in lines[2]
    assert "**Examples could not be rendered:** `KeyError: 'target 7'`" in lines
    assert "| pre-trained (2D supervision only) | 50.0 | 25.0 | 8 |" in lines  # the numbers are still there
    assert not list(tmp_path.glob("*.tmp"))


def _cube(centre, size=0.4, step=0.04):
    """Points on the surface of an axis-aligned cube standing on the floor."""
    g = np.arange(0, size + 1e-9, step)
    a, b = np.meshgrid(g, g, indexing="ij")
    a, b = a.ravel(), b.ravel()
    faces = [np.stack([a, b, np.full_like(a, v)], 1) for v in (0, size)]
    faces += [np.stack([np.full_like(a, v), a, b], 1) for v in (0, size)]
    faces += [np.stack([a, np.full_like(a, v), b], 1) for v in (0, size)]
    return np.concatenate(faces) + np.array([centre[0] - size / 2, centre[1] - size / 2, 0.0])


def _example(hit: bool = False, scene_id: str = "room4"):
    """A floor with two equally red cubes: the target (id 1) and the top mask (id 2)."""
    g = np.arange(-1.0, 1.0, 0.04)
    fx, fy = np.meshgrid(g, g, indexing="ij")
    floor = np.stack([fx.ravel(), fy.ravel(), np.zeros(fx.size)], 1)
    target, other = _cube((0.5, 0.5)), _cube((-0.5, -0.5))
    points = np.concatenate([floor, target, other]).astype(np.float32)
    ids = np.repeat([0, 1, 2], [len(floor), len(target), len(other)])
    colors = np.where(ids[:, None] == 0, 0.6, [0.8, 0.1, 0.1]).astype(np.float32)
    expr = SimpleNamespace(text="the red cube by the wall", spans=[(4, 12)], target_ids=[1])
    scene = SimpleNamespace(scene_id=scene_id, points=points, colors=colors, instance_ids=ids,
                            expressions=[expr], objects={1: SimpleNamespace(attributes={"caption": "a red cube"})})
    gt = box_from_points(target)
    return demo_report.Example(scene, 0, ids == 2, 0.5 if hit else 0.0, gt)


def _pixel(cam, point):
    uv, _ = project_points(np.asarray([point], np.float64), cam.K, cam.viewmat)
    return int(round(uv[0, 1])), int(round(uv[0, 0]))  # row, column


def test_mask_is_tinted_and_the_rest_keeps_its_colour():
    x = _example()
    cam, keep = demo_report.focus_camera(x.scene.points, [x.gt_box, box_from_points(x.scene.points[x.mask])], 384)
    painted = highlight_colors(x.scene.colors, np.where(x.mask, 0, -1))
    img = render_views(x.scene.points[keep], painted[keep], [cam])[0].astype(int)
    assert img.shape == (384, 384, 3)
    on_mask, on_target = img[_pixel(cam, (-0.5, -0.5, 0.4))], img[_pixel(cam, (0.5, 0.5, 0.4))]
    # both cubes are the same red: the mask's pixels are tinted towards the highlight colour,
    # the target keeps its own (dimmed) red
    assert on_target[0] > 2 * on_target[1] and on_target[0] > 2 * on_target[2]
    assert on_mask[1] > on_target[1] + 80 and np.abs(on_mask - on_target).sum() > 150


def test_box_outline_is_drawn_on_the_projected_box():
    x = _example()
    cam, _ = demo_report.focus_camera(x.scene.points, [x.gt_box], 384)
    blank = np.full((384, 384, 3), 255, np.uint8)
    drawn = demo_report.draw_box(blank, cam, x.gt_box)
    corners = demo_report.box_corners(x.gt_box)
    assert {tuple(c) for c in corners} == {(a, b, c) for a in (0.3, 0.7) for b in (0.3, 0.7) for c in (0, 0.4)}
    for a, b in demo_report._BOX_EDGES:  # every edge's midpoint is on the outline
        r, c = _pixel(cam, (corners[a] + corners[b]) / 2)
        assert tuple(drawn[r, c]) == demo_report.BOX_RGB
    r, c = _pixel(cam, (-0.5, -0.5, 0.2))  # far from the box: untouched
    assert tuple(drawn[r, c]) == (255, 255, 255)
    assert (drawn == demo_report.BOX_RGB).all(axis=2).sum() > 200


def test_example_picture_is_large_and_annotated():
    tile = demo_report.example_picture(_example(hit=True))
    assert tile.shape[0] > 384 and tile.shape[1] >= 384  # the view plus title and caption bars
    assert (tile == demo_report.BOX_RGB).all(axis=2).any()  # the target's box
    tinted = (tile[..., 0] > 180) & (tile[..., 1] > 150) & (tile[..., 2] < 90)  # yellow top mask
    assert tinted.sum() > 50
    assert (tile[:20] < 60).all(axis=2).any() and (tile[-40:, :, 1] > 90).any()  # dark title, green HIT caption


def test_report_links_a_grid_of_hits_and_misses(tmp_path, monkeypatch):
    import liftgs.ground
    import liftgs.io
    import liftgs.models

    found = [_example(hit=h, scene_id=f"room{i % 2}") for i, h in enumerate([False, True, False, False, True,
                                                                              False, False])]
    scenes = {x.scene.scene_id: x.scene for x in found}
    monkeypatch.setattr(liftgs.models, "load_model", lambda path: SimpleNamespace(eval=lambda: None))
    monkeypatch.setattr(liftgs.io, "list_scenes", lambda data: [tmp_path / "room0", tmp_path / "room1"])
    monkeypatch.setattr(liftgs.io, "read_scene", lambda path, load_frames: scenes[path.name])
    monkeypatch.setattr(demo_report, "ground_val_expressions", lambda *a: found)
    grounded = []
    monkeypatch.setattr(liftgs.ground, "run_ground",
                        lambda cfg, model, text_encoder: grounded.append(cfg) or SimpleNamespace(masks=[1]))
    state = _state(tmp_path)
    state.plan = DemoPlan(heldout_rooms=2)
    picked = demo_report.pick_examples(found)
    assert [x.hit for x in picked] == [True, True, False, False, False]
    assert [found.index(x) for x in picked] == [1, 4, 0, 3, 2]  # first of every room, then the second
    text = demo_report.write_report(state, tmp_path / "data", MODELS, encoder=None).read_text()
    assert "![examples: hits and misses](examples/grid.png)" in text
    assert "2 of 7 hits" in text and "Pre-trained / random at Acc@0.25: 4.0x." in text
    grid = np.asarray(Image.open(tmp_path / "examples" / "grid.png"))
    assert grid.shape[0] > 2 * 384 and grid.shape[1] > 3 * 384  # two rows (hits, misses), three columns
    assert grounded[0].image_size >= 384 and grounded[0].views == 2
