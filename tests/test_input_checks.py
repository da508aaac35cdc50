"""Inputs are checked at the door: scene folders confined, cameras usable, training data named
when partly left out, and every command answers a user's mistake with one line and status 2.

Scenes are the fabricated rooms of :mod:`liftgs.testing.rooms` (three frames each), edited
through their ``scene.json``; nothing is downloaded and no test trains more than one step.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from liftgs.cli import main
from liftgs.io.errors import DataError, DataWarning
from liftgs.io.scene_dir import read_cameras, read_frame, read_scene, write_scene
from liftgs.recipes.finetune_data import FinetuneDataset
from liftgs.recipes.pretrain_data import PretrainDataset
from liftgs.testing import RoomTextEncoder, fabricate_scene
from liftgs.types import Expression


@pytest.fixture
def rooms(dataset, tmp_path) -> Path:
    """A private copy of the shared fabricated rooms (``data/`` + ``labels/``), free to break."""
    root = tmp_path / "rooms"
    shutil.copytree(dataset, root)
    return root


def edit_scene_json(scene_dir: Path, change) -> Path:
    path = scene_dir / "scene.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))  # NaN is written as the JSON token NaN, as a buggy exporter would
    return path


def one_line(err: BaseException | str) -> str:
    lines = str(err).splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def stderr_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# -- scene folders are confined ---------------------------------------------------------------


@pytest.mark.parametrize("field,value,problem", [
    ("depth", "../room0/frames/000000_depth.png", "contains '..'"),
    ("depth", "frames/../../room0/frames/000000_depth.png", "contains '..'"),
    ("color", "ABSOLUTE", "is the absolute path"),
    ("instance", "frames\\..\\..\\secret.png", "contains '..'"),
])
def test_frame_paths_must_stay_inside_the_scene(rooms, field, value, problem):
    scene = rooms / "data" / "room1"
    outside = rooms / "data" / "room0" / "frames" / "000000.png"  # a readable file elsewhere
    value = str(outside) if value == "ABSOLUTE" else value
    json_path = edit_scene_json(scene, lambda d: d["frames"][1].__setitem__(field, value))
    for read in (lambda: read_scene(scene, load_frames=False), lambda: read_frame(scene, 1),
                 lambda: read_cameras(scene), lambda: read_scene(scene)):
        with pytest.raises(DataError) as err:
            read()
        msg = one_line(err.value)
        assert msg.startswith(f"{json_path}: frames[1].{field} ") and problem in msg
    assert read_frame(scene, 0).rgb.shape == (48, 48, 3)  # the other frames still read


def test_point_cloud_path_must_stay_inside_the_scene(rooms):
    scene = rooms / "data" / "room1"
    other = rooms / "data" / "room0" / "points.ply"
    json_path = edit_scene_json(scene, lambda d: d.__setitem__("points", str(other)))
    with pytest.raises(DataError) as err:
        read_scene(scene, load_frames=False)
    assert one_line(err.value) == (f"{json_path}: points is the absolute path {str(other)!r}; paths must be "
                                   "relative to the scene folder")
    edit_scene_json(scene, lambda d: d.__setitem__("points", "../room0/points.ply"))
    with pytest.raises(DataError, match=r"scene\.json: points '\.\./room0/points\.ply' contains '\.\.'"):
        read_scene(scene, load_frames=False)


def test_symlinks_may_not_lead_outside_the_scene(rooms):
    scene = rooms / "data" / "room1"
    outside = rooms / "elsewhere"
    outside.mkdir()
    shutil.copy(scene / "frames" / "000002.png", outside / "stolen.png")
    os.symlink(outside / "stolen.png", scene / "frames" / "link.png")
    os.symlink("000002.png", scene / "frames" / "alias.png")  # stays inside: fine
    edit_scene_json(scene, lambda d: d["frames"][2].__setitem__("color", "frames/alias.png"))
    assert read_frame(scene, 2).rgb.shape == (48, 48, 3)
    json_path = edit_scene_json(scene, lambda d: d["frames"][2].__setitem__("color", "frames/link.png"))
    with pytest.raises(DataError) as err:
        read_frame(scene, 2)
    assert one_line(err.value) == (f"{json_path}: frames[2].color 'frames/link.png' leads outside the scene "
                                   "folder through a symlink")
    os.symlink(outside, scene / "shared")  # a linked folder leads out just the same
    edit_scene_json(scene, lambda d: d["frames"][0].__setitem__("depth", "shared/stolen.png"))
    with pytest.raises(DataError, match=r"frames\[0\]\.depth 'shared/stolen\.png' leads outside"):
        read_scene(scene, load_frames=False)


# -- cameras are checked when read ------------------------------------------------------------


@pytest.mark.parametrize("field,matrix,problem", [
    ("viewmat", np.zeros((4, 4)), "last row must be 0 0 0 1, got 0 0 0 0"),
    ("viewmat", np.r_[np.zeros((3, 4)), [[0, 0, 0, 1]]], "is not rigid: its rotation is not orthonormal"),
    ("viewmat", np.diag([2.0, 2.0, 2.0, 1.0]), "is not rigid: its rotation is not orthonormal"),
    ("viewmat", np.diag([-1.0, 1.0, 1.0, 1.0]), "determinant -1 (a reflection)"),
    ("viewmat", np.full((4, 4), np.nan), "holds NaN or infinite values"),
    ("K", np.array([[0.0, 0, 24], [0, 38.4, 24], [0, 0, 1]]), "focal lengths must be positive, got fx=0"),
    ("K", np.array([[38.4, 0, np.inf], [0, 38.4, 24], [0, 0, 1]]), "holds NaN or infinite values"),
])
def test_unusable_cameras_are_refused_at_read_time(rooms, field, matrix, problem):
    scene = rooms / "data" / "room2"
    json_path = edit_scene_json(scene, lambda d: d["frames"][1].__setitem__(field, matrix.tolist()))
    for read in (lambda: read_scene(scene, load_frames=False), lambda: read_cameras(scene),
                 lambda: read_frame(scene, 1)):
        with pytest.raises(DataError) as err:
            read()
        msg = one_line(err.value)
        assert msg.startswith(f"{json_path}: frames[1].{field} ") and problem in msg
    assert read_frame(scene, 0).camera.width == 48  # the other frames still read


def test_a_nan_pose_stops_pretraining_before_the_first_step(rooms, tmp_path, capsys):
    scene = rooms / "data" / "room1"
    json_path = edit_scene_json(scene, lambda d: d["frames"][2]["viewmat"][0].__setitem__(3, float("nan")))
    with pytest.raises(DataError, match=r"frames\[2\]\.viewmat holds NaN"):
        PretrainDataset([rooms / "data" / f"room{i}" for i in range(3)], rooms / "labels", seed=0)
    with pytest.raises(DataError, match=r"frames\[2\]\.viewmat holds NaN"):  # fine-tuning reads no image, still refused
        FinetuneDataset([scene], RoomTextEncoder(), seed=0)
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(rooms / "data"), "--labels", str(rooms / "labels"), "--out", str(out),
                 "--steps", "10", "--image-size", "32", "--no-progress", "--no-tensorboard"]) == 2
    assert stderr_line(capsys) == (f"liftgs pretrain: {json_path}: frames[2].viewmat holds NaN or infinite "
                                   "values (a failed pose?)")
    assert not out.exists()  # refused before the run folder was made


# -- training data: what is left out is named --------------------------------------------------


def test_scenes_without_pseudo_labels_are_named(rooms):
    paths = [rooms / "data" / f"room{i}" for i in range(4)]
    shutil.rmtree(rooms / "labels" / "room1")
    (rooms / "labels" / "room3" / "000001.safetensors").unlink()
    with pytest.warns(DataWarning) as record:
        ds = PretrainDataset(paths, rooms / "labels", seed=0)
    assert [str(w.message) for w in record if w.category is DataWarning] == [
        f"1 of 4 scenes have no pseudo-labels under {rooms / 'labels'} and are left out: room1",
        "1 scenes have pseudo-labels for only some frames (labelled/all; the rest are not used): room3 (2/3)"]
    assert [e.scene_id for e in ds.scenes] == ["room0", "room2", "room3"]
    assert [k for _, k in ds.scenes[2].frames] == ["000000", "000002"]
    for scene_id in ("room0", "room2", "room3"):
        shutil.rmtree(rooms / "labels" / scene_id)
    with pytest.raises(DataError) as err:
        PretrainDataset(paths, rooms / "labels", seed=0)
    assert one_line(err.value) == (f"{rooms / 'labels'}: no scene among 4 (room0, room1, room2, room3) has cached "
                                   f"pseudo-labels under {rooms / 'labels'}; run `liftgs pseudolabel` on the same "
                                   "data first")


def test_scenes_without_instance_labels_are_named(tmp_path):
    for i in range(3):
        scene, _ = fabricate_scene(f"room{i}", seed=i)
        if i != 0:
            scene.instance_ids = None if i == 1 else np.full_like(scene.instance_ids, -1)
        write_scene(scene, tmp_path)
    paths = [tmp_path / f"room{i}" for i in range(3)]
    with pytest.warns(DataWarning) as record:
        ds = FinetuneDataset(paths, RoomTextEncoder(), seed=0)
    assert [str(w.message) for w in record if w.category is DataWarning] == [
        "2 of 3 scenes have no per-point instance ids (3D labels) in points.ply and are left out: room1, room2"]
    assert [s.scene_id for s in ds.scenes] == ["room0"] and len(ds) == 4  # 3 expressions + the category set
    with pytest.raises(DataError) as err:
        FinetuneDataset(paths[1:], RoomTextEncoder(), seed=0)
    assert one_line(err.value) == (f"{tmp_path}: fine-tuning needs per-point instance ids (3D labels) but the "
                                   "points.ply of every scene has none: room1, room2")


def test_expressions_whose_targets_have_no_points_are_named_and_skipped(tmp_path):
    scene, _ = fabricate_scene("room0", seed=0)
    kept = [e.text for e in scene.expressions]
    scene.objects[7] = scene.objects[0]  # annotated, but no point carries id 7
    scene.expressions += [Expression("the chair by the door", [7], spans=[(4, 9)]),
                          Expression("the ghost", [42], spans=[(4, 9)]),
                          Expression("the piano", [], spans=[(4, 9)])]  # no target by design: not a problem
    write_scene(scene, tmp_path)
    with pytest.warns(DataWarning) as record:
        ds = FinetuneDataset([tmp_path / "room0"], RoomTextEncoder(), seed=0, task="refer")
    assert [str(w.message) for w in record if w.category is DataWarning] == [
        "2 expressions are left out because a target has no points: room0 'the chair by the door' (target 7 has "
        "no points), room0 'the ghost' (unknown target id 42)"]
    assert [e[0] for e in ds.scenes[0].expressions] == kept and len(ds) == len(kept)
    assert all(s.target_masks.sum(1).min() > 0 for s in (ds.sample(p) for p in range(6)))


def test_clean_data_gives_no_warning(dataset):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        PretrainDataset([dataset / "data" / f"room{i}" for i in range(4)], dataset / "labels", seed=0)
        FinetuneDataset([dataset / "data" / f"room{i}" for i in range(4)], RoomTextEncoder(), seed=0)


# -- every command: one line, status 2, nothing half-written -----------------------------------


def _mistake(command: str, rooms: Path, tmp: Path) -> tuple[list[str], str, Path | None]:
    """argv with a typical mistake, the start of the one line it must print (after the command
    name), and the output the command must not have written."""
    data, labels = rooms / "data", rooms / "labels"
    if command == "synth":
        return ["synth", "--out", str(tmp / "s"), "--rooms", "0"], "--rooms 0: generate at least one room", tmp / "s"
    if command == "convert":
        return (["convert", "scannet", str(tmp / "scans"), "--out", str(tmp / "c")],
                f"{tmp / 'scans'}: neither a ScanNet scan folder", tmp / "c")
    if command == "inspect":
        return ["inspect", str(tmp / "nope")], f"{tmp / 'nope'}: dataset root is not a directory", None
    if command == "pseudolabel":
        json_path = edit_scene_json(data / "room2", lambda d: d["frames"][0].__setitem__("depth", "../x.png"))
        return (["pseudolabel", "--scenes", str(data), "--out", str(tmp / "l"), "--text-encoder", "hash-32",
                 "--no-progress"], f"{json_path}: frames[0].depth '../x.png' contains '..'", tmp / "l")
    if command == "pretrain":
        return (["pretrain", "--data", str(data), "--labels", str(tmp / "nolabels"), "--out", str(tmp / "p")],
                f"{tmp / 'nolabels'}: no scene among 3", tmp / "p")
    if command == "finetune":
        json_path = edit_scene_json(data / "room1", lambda d: d["frames"][2].__setitem__("viewmat", [[0] * 4] * 4))
        return (["finetune", "--data", str(data), "--out", str(tmp / "f"), "--text-encoder", "hash-32",
                 "--no-progress", "--no-tensorboard"], f"{json_path}: frames[2].viewmat last row", tmp / "f")
    if command == "eval":
        return (["eval", "--checkpoint", str(tmp / "nope"), "--data", str(data), "--text-encoder", "hash-32",
                 "--out", str(tmp / "e")], f"{tmp / 'nope'}: model weights not found", tmp / "e")
    if command == "ground":
        return (["ground", str(tmp / "nope.ply"), "a chair", "--out", str(tmp / "g")],
                f"{tmp / 'nope.ply'}: no such scene directory", tmp / "g")
    if command == "recon":
        return (["recon", "--data", str(tmp / "nope"), "--out", str(tmp / "r")], f"{tmp / 'nope'}: --data: no such folder",
                tmp / "r")
    if command in ("gensplat-semantic", "gensplat-instance"):
        argv = [command, "--data", str(data), "--recon", str(tmp / "norecon"), "--out", str(tmp / "gs")]
        argv += ["--labels", str(labels)] if command == "gensplat-semantic" else []
        return argv, f"{tmp / 'norecon'}: reconstruction root is not a directory", tmp / "gs"
    if command == "gensplat-eval":
        return (["gensplat-eval", "--model", str(tmp / "nope"), "--data", str(data), "--recon", str(tmp / "norecon"),
                 "--out", str(tmp / "ge")], f"{tmp / 'norecon'}: reconstruction root is not a directory", tmp / "ge")
    assert command == "demo"
    return ["demo", "--pretrain-rooms", "2", "--out", str(tmp / "d")], "--pretrain-rooms must be >= 5", tmp / "d"


COMMANDS = ("synth", "convert", "inspect", "pseudolabel", "pretrain", "finetune", "eval", "ground", "demo", "recon",
            "gensplat-semantic", "gensplat-instance", "gensplat-eval")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_mistake_gives_one_line_and_status_2(command, rooms, tmp_path, capsys):
    argv, message, output = _mistake(command, rooms, tmp_path)
    assert main(argv) == 2
    line = stderr_line(capsys)
    assert line.startswith(f"liftgs {command}: {message}"), line
    assert output is None or not output.exists()  # nothing half-written
    with pytest.raises((ValueError, OSError, RuntimeError)) as err:  # --debug: the exception itself
        main(argv[:1] + ["--debug"] + argv[1:])
    assert one_line(err.value) == line.removeprefix(f"liftgs {command}: ")


def test_debug_shows_the_traceback_and_bugs_keep_theirs(tmp_path, monkeypatch, capsys):
    proc = subprocess.run([sys.executable, "-m", "liftgs.cli", "--debug", "inspect", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith("Traceback (most recent call last):")
    assert proc.stderr.strip().splitlines()[-1] == (f"liftgs.io.errors.DataError: {tmp_path / 'nope'}: dataset "
                                                    "root is not a directory")

    def bug(argv):
        raise KeyError("a bug, not a user's mistake")

    import liftgs.io.cli

    monkeypatch.setattr(liftgs.io.cli, "inspect_main", bug)
    with pytest.raises(KeyError):
        main(["inspect", str(tmp_path)])
    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(liftgs.io.cli, "inspect_main", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(["inspect", str(tmp_path)])
    assert capsys.readouterr().err == ""


def test_a_data_warning_is_one_line_of_the_command(rooms, tmp_path, capsys):
    shutil.rmtree(rooms / "labels" / "room1")
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(rooms / "data"), "--labels", str(rooms / "labels"), "--out", str(out),
                 "--steps", "1", "--batch-size", "1", "--image-size", "32", "--num-pixels", "256", "--no-progress",
                 "--no-tensorboard"]) == 0
    assert stderr_line(capsys) == (f"liftgs pretrain: warning: 1 of 3 scenes have no pseudo-labels under "
                                   f"{rooms / 'labels'} and are left out: room1")
    assert json.loads((out / "config.json").read_text())["num_scenes"] == 2
