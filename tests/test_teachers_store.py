"""Pseudo-label cache: exact round trip, corruption detected, resumable and verifiable runs, CLI."""

from __future__ import annotations

import numpy as np
import pytest

from liftgs.io.errors import DataError
from liftgs.teachers import (PseudoLabelStore, SyntheticNoise, SyntheticTeacher, filter_small_segments,
                             scaled_min_area)
from liftgs.teachers.pipeline import jobs_from_scenes, pseudolabel
from liftgs.teachers.store import encode_labels, read_labels
from liftgs.text import HashingTextEncoder
from liftgs.types import Camera, Frame, ObjectInfo, PseudoLabels, Scene


def _labels(seed=0, S=5, H=12, W=16, F=8, captions=True):
    rng = np.random.default_rng(seed)
    seg = rng.integers(-1, S, (H, W)).astype(np.int32)
    emb = rng.standard_normal((S, F)).astype(np.float32)
    caps = [f"object {k} é" for k in range(S)] if captions else None
    return PseudoLabels(segments=seg, embeddings=emb, captions=caps, provenance={"teacher": "t", "settings": {"a": [1, 2]}})


def test_round_trip_is_exact(tmp_path):
    store = PseudoLabelStore(tmp_path)
    for i, lab in enumerate([_labels(0), _labels(1, captions=False), _labels(2, S=0)]):
        store.put("scene_a", f"{i:06d}", lab)
        got = store.get("scene_a", f"{i:06d}")
        assert got.segments.dtype == np.int32 and got.embeddings.dtype == np.float32
        np.testing.assert_array_equal(got.segments, lab.segments)
        np.testing.assert_array_equal(got.embeddings, lab.embeddings.astype(np.float16).astype(np.float32))
        assert got.captions == lab.captions and got.provenance == lab.provenance
    assert store.frames("scene_a") == ["000000", "000001", "000002"]
    assert store.scenes() == ["scene_a"] and store.frames("nope") == []
    assert not [p for p in (tmp_path / "scene_a").iterdir() if p.name.startswith(".")]  # no temp files left


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty"])
def test_corrupt_files_are_detected(tmp_path, damage):
    store = PseudoLabelStore(tmp_path)
    path = store.put("s", "f", _labels())
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-3] ^= 0x40  # inside the tensor bytes: only the checksum can tell
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"not a safetensors file at all" * 4)
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=str(path)):
        store.get("s", "f")
    assert store.check("s", "f") == "corrupt"


def test_missing_and_bad_names(tmp_path):
    store = PseudoLabelStore(tmp_path)
    with pytest.raises(DataError, match="run `liftgs pseudolabel` first"):
        store.get("s", "000000")
    with pytest.raises(ValueError, match="cannot be a cache file name"):
        store.path("s", "../x")
    with pytest.raises(ValueError, match="float16"):
        encode_labels(PseudoLabels(np.zeros((2, 2), np.int32), np.full((1, 3), 1e6, np.float32)))


def test_filter_small_segments_and_scaling():
    assert scaled_min_area(512, 512) == 1024 and scaled_min_area(128, 128) == 64
    assert scaled_min_area(480, 640) == 1200
    seg = np.array([[0, 0, 1], [2, 2, 2], [-1, 2, 1]], np.int32)
    lab = PseudoLabels(seg, np.arange(9, dtype=np.float32).reshape(3, 3), ["a", "b", "c"])
    out = filter_small_segments(lab, 3)
    np.testing.assert_array_equal(out.segments, [[-1, -1, -1], [0, 0, 0], [-1, 0, -1]])
    np.testing.assert_array_equal(out.embeddings, [[6, 7, 8]])
    assert out.captions == ["c"]
    assert filter_small_segments(lab, 0) is lab


# ---------------------------------------------------------------- pipeline
H = W = 32


def _scenes(n_scenes=2, n_frames=3):
    scenes = []
    for s in range(n_scenes):
        rng = np.random.default_rng(s)
        objects = {i: ObjectInfo(["chair", "table", "lamp"][i % 3], {"color": ["red", "blue"][i % 2]}) for i in range(6)}
        frames = []
        for f in range(n_frames):
            inst = np.full((H, W), -1, np.int32)
            for i in range(6):
                y, x = rng.integers(0, 24, 2)
                inst[y:y + 8, x:x + 8] = i
            cam = Camera(np.array([[30.0, 0, 16], [0, 30.0, 16], [0, 0, 1]]), np.eye(4), W, H)
            frames.append(Frame(cam, np.zeros((H, W, 3), np.uint8), instance_ids=inst, name=f"{f:06d}"))
        scenes.append(Scene(f"room{s}", np.zeros((1, 3)), np.zeros((1, 3)), frames, objects=objects))
    return scenes


def _teacher(**noise):
    return SyntheticTeacher(HashingTextEncoder(dim=8), SyntheticNoise(**noise))


class _Crashing:
    """Behaves like ``inner`` (same name and settings) but dies after ``after`` frames."""

    def __init__(self, inner, after):
        self.inner, self.after, self.name = inner, after, inner.name

    def settings(self):
        return self.inner.settings()

    def __call__(self, frame, scene=None):
        if self.after == 0:
            raise KeyboardInterrupt("simulated interruption")
        self.after -= 1
        return self.inner(frame, scene)


def _run(store, teacher, **kw):
    return pseudolabel(jobs_from_scenes(_scenes()), teacher, store, progress=False, **kw)


def _assert_same(store_a, store_b):
    for scene in store_a.scenes():
        assert store_a.frames(scene) == store_b.frames(scene)
        for key in store_a.frames(scene):
            a, b = store_a.get(scene, key), store_b.get(scene, key)
            np.testing.assert_array_equal(a.segments, b.segments)
            np.testing.assert_array_equal(a.embeddings, b.embeddings)
            assert a.captions == b.captions and a.provenance == b.provenance


def test_interrupted_run_resumes(tmp_path):
    ref = PseudoLabelStore(tmp_path / "ref")
    full = _run(ref, _teacher(merge=0.3, split=0.5), area_at_base=1024, batch_frames=2)
    assert full.labelled == 6 and full.skipped == 0 and full.segments_per_frame > 0
    store = PseudoLabelStore(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        _run(store, _Crashing(_teacher(merge=0.3, split=0.5), after=4), batch_frames=1)
    assert sum(len(store.frames(s)) for s in store.scenes()) == 4
    resumed = _run(store, _teacher(merge=0.3, split=0.5))
    assert (resumed.frames, resumed.skipped, resumed.labelled) == (6, 4, 2)
    _assert_same(ref, store)
    again = _run(store, _teacher(merge=0.3, split=0.5))
    assert (again.skipped, again.labelled) == (6, 0)
    assert "segments / frame" in again.table()


def test_corrupt_cache_file_is_redone(tmp_path):
    store = PseudoLabelStore(tmp_path)
    _run(store, _teacher())
    path = store.path("room1", "000002")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    (tmp_path / "room0" / "000001.safetensors").write_bytes(b"")
    summary = _run(store, _teacher())
    assert (summary.skipped, summary.labelled, summary.redone_corrupt) == (4, 2, 2)
    assert store.check("room1", "000002") == "ok" and store.check("room0", "000001") == "ok"


def test_other_settings_error_or_redo(tmp_path):
    store = PseudoLabelStore(tmp_path)
    _run(store, _teacher())
    with pytest.raises(DataError, match=r"settings\.noise\.synonym.*--on-mismatch redo"):
        _run(store, _teacher(synonym=0.5))
    with pytest.raises(DataError, match="min_area"):
        _run(store, _teacher(), area_at_base=2048)
    summary = _run(store, _teacher(synonym=0.5), on_mismatch="redo")
    assert summary.redone_mismatch == 6
    assert store.get("room0", "000000").provenance["settings"]["noise"]["synonym"] == 0.5


def test_area_filter_drops_small_segments(tmp_path):
    store = PseudoLabelStore(tmp_path)
    _run(store, _teacher(), area_at_base=64 * 256)  # 64 px at 32x32: only full 8x8 boxes survive
    for scene in store.scenes():
        for key in store.frames(scene):
            lab = store.get(scene, key)
            areas = np.bincount(lab.segments[lab.segments >= 0], minlength=lab.num_segments)
            assert (areas >= 64).all()


def test_cli_end_to_end(tmp_path, capsys):
    from liftgs.cli import main
    from liftgs.io.scene_dir import write_scene

    for scene in _scenes(n_scenes=1, n_frames=2):
        scene.points = np.zeros((4, 3), np.float32)
        scene.colors = np.zeros((4, 3), np.float32)
        write_scene(scene, tmp_path / "data")
    argv = ["pseudolabel", "--scenes", str(tmp_path / "data"), "--out", str(tmp_path / "labels"),
            "--text-encoder", "hash-8", "--noise.paraphrase", "0.5", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "labelled now               2" in out and "segments / frame" in out
    assert main(argv) == 0
    assert "already cached (verified)  2" in capsys.readouterr().out
    lab = PseudoLabelStore(tmp_path / "labels").get("room0", "000001")
    assert lab.embeddings.shape[1] == 8 and lab.provenance["teacher"] == "synthetic"
    assert main(argv[:-3] + ["--no-progress"]) == 2  # other settings: clear error, no silent mix
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("liftgs pseudolabel: ") and "--on-mismatch redo" in err[0]
    first = read_labels(tmp_path / "labels" / "room0" / "000000.safetensors")
    assert first.num_segments > 0 and len(first.captions) == first.num_segments  # one caption per segment
    assert all(isinstance(c, str) and c.strip() for c in first.captions)


def test_run_restores_torch_threads(tmp_path):
    import torch

    from liftgs.io.scene_dir import write_scene
    from liftgs.teachers.cli import PseudolabelConfig, run

    scene = _scenes(n_scenes=1, n_frames=1)[0]
    write_scene(scene, tmp_path / "data")
    before = torch.get_num_threads()
    summary = run(PseudolabelConfig(scenes=tmp_path / "data", out=tmp_path / "labels", text_encoder="hash-8",
                                    threads=1, progress=False))
    assert summary.labelled == 1 and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="--captioner"):
        PseudolabelConfig(scenes=tmp_path, out=tmp_path, teacher="caption")


def test_shards_label_disjoint_scenes_whose_union_is_the_whole_run(tmp_path, monkeypatch, cli_error):
    """--shard i/N labels scenes k with k mod N == i; N shards over one --out give the files of
    an unsharded run, label for label; torchrun's RANK / WORLD_SIZE pick the shard."""
    from liftgs.cli import main as cli_main
    from liftgs.teachers.cli import PseudolabelConfig, launcher_shard
    from liftgs.testing import write_rooms

    data = write_rooms(tmp_path / "rooms", count=5) / "data"
    base = ["pseudolabel", "--scenes", str(data), "--text-encoder", "hash-16", "--no-progress"]
    assert cli_main([*base, "--out", str(tmp_path / "all")]) == 0
    for i in range(3):
        assert cli_main([*base, "--out", str(tmp_path / "sharded"), "--shard", f"{i}/3"]) == 0
        if i == 0:
            assert sorted(p.name for p in (tmp_path / "sharded").iterdir()) == ["room0", "room3"]
    assert cli_main([*base, "--out", str(tmp_path / "sharded"), "--shard", "1/3"]) == 0  # resumes: all cached
    files = sorted(p.relative_to(tmp_path / "all") for p in (tmp_path / "all").rglob("*.safetensors"))
    assert len(files) == 15
    assert files == sorted(p.relative_to(tmp_path / "sharded") for p in (tmp_path / "sharded").rglob("*.safetensors"))
    whole, sharded = PseudoLabelStore(tmp_path / "all"), PseudoLabelStore(tmp_path / "sharded")
    for f in files:
        a, b = whole.get(f.parent.name, f.stem), sharded.get(f.parent.name, f.stem)
        assert np.array_equal(a.segments, b.segments) and np.array_equal(a.embeddings, b.embeddings)
        assert a.captions == b.captions and a.provenance == b.provenance

    cfg = PseudolabelConfig(scenes=data, out=tmp_path / "x")
    assert launcher_shard(cfg, {}).shard is None
    assert launcher_shard(cfg, {"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"}).shard == "2/4"
    explicit = PseudolabelConfig(scenes=data, out=tmp_path / "x", shard="1/2")
    assert launcher_shard(explicit, {"WORLD_SIZE": "4", "RANK": "2"}).shard == "1/2"
    for bad in ("3/3", "1", "a/b", "-1/2"):
        assert "--shard must be i/N" in cli_error([*base, "--out", str(tmp_path / "y"), "--shard", bad])
    assert not (tmp_path / "y").exists()
