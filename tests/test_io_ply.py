"""Point-cloud files: PLY round trip, foreign PLYs, .npy / .bin arrays, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from liftgs.io.errors import DataError
from liftgs.io.ply import load_point_cloud, read_point_cloud, write_point_cloud


def cloud(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 3)).astype(np.float32), rng.uniform(0, 1, (n, 3)).astype(np.float32),
            rng.integers(-1, 9, n).astype(np.int32))


@pytest.mark.parametrize("text", [False, True])
def test_ply_round_trip_exact(tmp_path, text):
    pts, cols, ids = cloud()
    write_point_cloud(tmp_path / "a.ply", pts, cols, ids, text=text)
    pc = read_point_cloud(tmp_path / "a.ply")
    np.testing.assert_array_equal(pc.points, pts)
    np.testing.assert_array_equal(pc.colors, cols)
    np.testing.assert_array_equal(pc.instance_ids, ids)
    # viewers see uchar colours
    v = PlyData.read(str(tmp_path / "a.ply"))["vertex"].data
    np.testing.assert_array_equal(v["red"], np.round(cols[:, 0] * 255).astype(np.uint8))
    write_point_cloud(tmp_path / "b.ply", pts, cols)
    assert read_point_cloud(tmp_path / "b.ply").instance_ids is None
    p2, c2 = load_point_cloud(tmp_path / "b.ply")
    np.testing.assert_array_equal(p2, pts)
    np.testing.assert_array_equal(c2, cols)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_foreign_ply_colours(tmp_path):
    v = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    v["red"] = [0, 128, 255]
    PlyData([PlyElement.describe(v, "vertex")]).write(str(tmp_path / "u8.ply"))
    np.testing.assert_allclose(read_point_cloud(tmp_path / "u8.ply").colors[:, 0], [0, 128 / 255, 1])
    g = np.zeros(2, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(g, "vertex")]).write(str(tmp_path / "grey.ply"))
    with pytest.warns(UserWarning, match="no vertex colours"):
        assert (read_point_cloud(tmp_path / "grey.ply").colors == 0.5).all()


def test_npy_and_bin(tmp_path):
    pts, cols, _ = cloud()
    arr01 = np.concatenate([pts, cols], 1)
    arr255 = np.concatenate([pts, cols * 255], 1).astype(np.float32)
    np.save(tmp_path / "a.npy", arr01)
    arr255.astype("<f4").tofile(tmp_path / "a.bin")
    p, c = load_point_cloud(tmp_path / "a.npy")
    np.testing.assert_array_equal(p, pts)
    np.testing.assert_array_equal(c, cols)
    p, c = load_point_cloud(tmp_path / "a.bin")
    np.testing.assert_array_equal(p, pts)
    np.testing.assert_allclose(c, cols, atol=1e-6)


def test_point_cloud_bad_input(tmp_path):
    pts, cols, ids = cloud()
    with pytest.raises(DataError, match="missing"):
        read_point_cloud(tmp_path / "none.ply")
    with pytest.raises(DataError, match="empty"):
        write_point_cloud(tmp_path / "e.ply", pts[:0], cols[:0])
    e = np.zeros(0, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(e, "vertex")]).write(str(tmp_path / "e.ply"))
    with pytest.raises(DataError, match="e.ply.*empty"):
        read_point_cloud(tmp_path / "e.ply")
    write_point_cloud(tmp_path / "t.ply", pts, cols, ids)
    (tmp_path / "t.ply").write_bytes((tmp_path / "t.ply").read_bytes()[:-7])
    with pytest.raises(DataError, match="t.ply.*cannot parse"):
        read_point_cloud(tmp_path / "t.ply")
    (tmp_path / "junk.ply").write_bytes(b"not a ply at all")
    with pytest.raises(DataError, match="junk.ply"):
        read_point_cloud(tmp_path / "junk.ply")
    np.zeros((5, 4), np.float32).tofile(tmp_path / "a.bin")
    with pytest.raises(DataError, match="multiple of 6"):
        load_point_cloud(tmp_path / "a.bin")
    np.save(tmp_path / "n.npy", np.full((2, 6), np.nan, np.float32))
    with pytest.raises(DataError, match="n.npy.*NaN"):
        load_point_cloud(tmp_path / "n.npy")
    np.save(tmp_path / "z.npy", np.zeros((0, 6), np.float32))
    with pytest.raises(DataError, match="empty"):
        load_point_cloud(tmp_path / "z.npy")
    with pytest.raises(DataError, match="unknown point-cloud suffix"):
        (tmp_path / "a.xyz").write_text("1 2 3")
        load_point_cloud(tmp_path / "a.xyz")
