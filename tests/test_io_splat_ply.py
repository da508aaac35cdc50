"""3DGS PLY files: bit-exact round trip, the reference layout, foreign files, malformed files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from liftgs.io.errors import DataError
from liftgs.io.splat_ply import SH_C0, SplatCloud, read_splat_ply, splat_fields, write_splat_ply


def make_cloud(n=37, degree=1, seed=0, extra=False) -> SplatCloud:
    rng = np.random.default_rng(seed)
    K = (degree + 1) ** 2
    ex = {"segment": rng.normal(size=n).astype(np.float32),
          "feat_0": rng.normal(size=n).astype(np.float32)} if extra else {}
    # awkward float32 values on purpose: subnormals, negative zero, extremes
    means = rng.normal(size=(n, 3)).astype(np.float32)
    means[0] = [np.float32(1e-40), -0.0, np.finfo(np.float32).max]
    return SplatCloud(means=means, sh=rng.normal(size=(n, K, 3)).astype(np.float32),
                      opacity_logits=rng.normal(size=n).astype(np.float32),
                      log_scales=rng.normal(size=(n, 3)).astype(np.float32) - 4,
                      quats=rng.normal(size=(n, 4)).astype(np.float32), extra=ex)


def assert_same(a: SplatCloud, b: SplatCloud) -> None:
    for name in ("means", "sh", "opacity_logits", "log_scales", "quats"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype == np.float32 and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), name  # bit for bit (also -0.0 and subnormals)
    assert list(a.extra) == list(b.extra)
    for k in a.extra:
        assert a.extra[k].tobytes() == b.extra[k].tobytes()


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("extra", [False, True])
def test_round_trip_bit_exact(tmp_path, degree, extra):
    cloud = make_cloud(degree=degree, extra=extra)
    out = write_splat_ply(tmp_path / "g.ply", cloud)
    assert out == tmp_path / "g.ply"
    back = read_splat_ply(out)
    assert back.sh_degree == degree and back.num_gaussians == cloud.num_gaussians
    assert_same(cloud, back)
    assert [p.name for p in tmp_path.iterdir()] == ["g.ply"]  # no temporary file left


def reference_names(degree: int) -> list[str]:
    """Property names as the reference 3DGS writes them (construct_list_of_attributes),
    spelled out independently of the module under test."""
    rest = 3 * ((degree + 1) ** 2 - 1)
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += ["f_rest_%d" % i for i in range(rest)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_field_names_order_and_dtypes_match_reference(tmp_path, degree):
    cloud = make_cloud(degree=degree, extra=True)
    write_splat_ply(tmp_path / "g.ply", cloud)
    assert splat_fields(degree) == reference_names(degree)
    raw = (tmp_path / "g.ply").read_bytes()
    header = raw[: raw.index(b"end_header\n") + len(b"end_header\n")].decode("ascii").splitlines()
    assert header[0] == "ply" and header[1] == "format binary_little_endian 1.0"
    assert header[2] == f"element vertex {cloud.num_gaussians}"
    props = [line.split() for line in header if line.startswith("property")]
    assert [p[2] for p in props] == reference_names(degree) + ["segment", "feat_0"]
    assert {p[1] for p in props} == {"float"}  # float32 everywhere
    v = PlyData.read(str(tmp_path / "g.ply"))["vertex"].data
    assert (v["nx"] == 0).all() and (v["ny"] == 0).all() and (v["nz"] == 0).all()
    assert v["opacity"].tobytes() == cloud.opacity_logits.tobytes()


def test_f_rest_is_channel_major(tmp_path):
    n, K = 5, 4
    sh = np.zeros((n, K, 3), np.float32)
    for k in range(K):
        for c in range(3):
            sh[:, k, c] = 10 * c + k  # coefficient k of channel c
    cloud = SplatCloud(means=np.zeros((n, 3)), sh=sh, opacity_logits=np.zeros(n),
                       log_scales=np.zeros((n, 3)), quats=np.tile([1, 0, 0, 0], (n, 1)))
    write_splat_ply(tmp_path / "g.ply", cloud)
    v = PlyData.read(str(tmp_path / "g.ply"))["vertex"].data
    # red's 3 higher coefficients first, then green's, then blue's
    assert [float(v[f"f_rest_{i}"][0]) for i in range(9)] == [1, 2, 3, 11, 12, 13, 21, 22, 23]
    assert [float(v[f"f_dc_{c}"][0]) for c in range(3)] == [0, 10, 20]
    # the reference's own layout: features_rest [N, K-1, 3] -> transpose(1, 2) -> flatten(1)
    t = torch.from_numpy(sh[:, 1:, :]).transpose(1, 2).flatten(start_dim=1).numpy()
    np.testing.assert_array_equal(np.stack([v[f"f_rest_{i}"] for i in range(9)], 1), t)


def test_reads_a_file_written_like_the_reference(tmp_path):
    """A file assembled the way the reference's save_ply does (numpy concatenation of
    tensors, plyfile with native byte order) reads back as the same parameters."""
    rng = np.random.default_rng(3)
    n, K = 11, 4
    xyz = rng.normal(size=(n, 3)).astype(np.float32)
    f_dc = torch.from_numpy(rng.normal(size=(n, 1, 3)).astype(np.float32))
    f_rest = torch.from_numpy(rng.normal(size=(n, K - 1, 3)).astype(np.float32))
    opac = rng.normal(size=(n, 1)).astype(np.float32)
    scale = rng.normal(size=(n, 3)).astype(np.float32)
    rot = rng.normal(size=(n, 4)).astype(np.float32)
    attrs = np.concatenate([xyz, np.zeros_like(xyz), f_dc.transpose(1, 2).flatten(1).numpy(),
                            f_rest.transpose(1, 2).flatten(1).numpy(), opac, scale, rot], axis=1)
    elements = np.empty(n, dtype=[(a, "f4") for a in reference_names(1)])
    elements[:] = list(map(tuple, attrs))
    PlyData([PlyElement.describe(elements, "vertex")]).write(str(tmp_path / "ref.ply"))
    cloud = read_splat_ply(tmp_path / "ref.ply")
    np.testing.assert_array_equal(cloud.means, xyz)
    np.testing.assert_array_equal(cloud.sh, torch.cat([f_dc, f_rest], 1).numpy())
    np.testing.assert_array_equal(cloud.opacity_logits, opac[:, 0])
    np.testing.assert_array_equal(cloud.log_scales, scale)
    np.testing.assert_array_equal(cloud.quats, rot)
    assert cloud.extra == {}


def test_helpers():
    cloud = make_cloud(n=6, degree=1)
    np.testing.assert_allclose(cloud.colors(), np.clip(0.5 + SH_C0 * cloud.sh[:, 0], 0, 1))
    np.testing.assert_allclose(cloud.opacities(), 1 / (1 + np.exp(-cloud.opacity_logits)), rtol=1e-6)
    np.testing.assert_allclose(cloud.scales(), np.exp(cloud.log_scales), rtol=1e-6)
    t = cloud.to_torch()
    assert set(t) == {"means", "sh", "opacity_logits", "log_scales", "quats"}
    assert t["sh"].shape == (6, 4, 3) and t["sh"].dtype == torch.float32
    again = SplatCloud.from_tensors(**t)
    assert_same(cloud, again)
    with pytest.raises(ValueError, match="sh"):
        SplatCloud(means=np.zeros((2, 3)), sh=np.zeros((2, 3, 3)), opacity_logits=np.zeros(2),
                   log_scales=np.zeros((2, 3)), quats=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="standard"):
        SplatCloud(means=np.zeros((2, 3)), sh=np.zeros((2, 1, 3)), opacity_logits=np.zeros(2),
                   log_scales=np.zeros((2, 3)), quats=np.zeros((2, 4)), extra={"opacity": np.zeros(2)})


def write_vertices(path, names, n=3, dtype="f4"):
    v = np.zeros(n, dtype=[(a, dtype) for a in names])
    PlyData([PlyElement.describe(v, "vertex")]).write(str(path))
    return path


def test_malformed_files(tmp_path):
    with pytest.raises(DataError, match="none.ply.*missing"):
        read_splat_ply(tmp_path / "none.ply")
    (tmp_path / "junk.ply").write_bytes(b"not a ply")
    with pytest.raises(DataError, match="junk.ply.*cannot parse"):
        read_splat_ply(tmp_path / "junk.ply")
    write_splat_ply(tmp_path / "cut.ply", make_cloud())
    (tmp_path / "cut.ply").write_bytes((tmp_path / "cut.ply").read_bytes()[:-9])
    with pytest.raises(DataError, match="cut.ply.*cannot parse"):
        read_splat_ply(tmp_path / "cut.ply")
    # a plain point cloud is not a splat file: the first missing field is named
    write_vertices(tmp_path / "pts.ply", ["x", "y", "z", "red"])
    with pytest.raises(DataError, match="pts.ply: field 'f_dc_0' is missing"):
        read_splat_ply(tmp_path / "pts.ply")
    names = reference_names(1)
    write_vertices(tmp_path / "noop.ply", [n for n in names if n != "opacity"])
    with pytest.raises(DataError, match="noop.ply: field 'opacity' is missing"):
        read_splat_ply(tmp_path / "noop.ply")
    write_vertices(tmp_path / "gap.ply", [n for n in names if n != "f_rest_4"])
    with pytest.raises(DataError, match="gap.ply: field 'f_rest_4' is missing"):
        read_splat_ply(tmp_path / "gap.ply")
    write_vertices(tmp_path / "odd.ply", [n for n in names if n not in ("f_rest_7", "f_rest_8")])
    with pytest.raises(DataError, match="odd.ply: field 'f_rest_\\*'"):
        read_splat_ply(tmp_path / "odd.ply")
    write_vertices(tmp_path / "empty.ply", names, n=0)
    with pytest.raises(DataError, match="empty.ply.*0 Gaussians"):
        read_splat_ply(tmp_path / "empty.ply")
    v = np.zeros(2, dtype=[(a, "f4") for a in names])
    v["scale_1"][1] = np.nan
    PlyData([PlyElement.describe(v, "vertex")]).write(str(tmp_path / "nan.ply"))
    with pytest.raises(DataError, match="nan.ply: field 'scale_1': 1 vertices hold NaN"):
        read_splat_ply(tmp_path / "nan.ply")
    face = PlyElement.describe(np.zeros(1, dtype=[("vertex_indices", "O")]), "face")
    PlyData([face]).write(str(tmp_path / "faces.ply"))
    with pytest.raises(DataError, match="faces.ply.*no 'vertex'"):
        read_splat_ply(tmp_path / "faces.ply")
    for path in tmp_path.glob("*.ply"):  # every message is one line
        try:
            read_splat_ply(path)
        except DataError as err:
            assert "\n" not in str(err)


def test_foreign_dtypes_and_write_errors(tmp_path):
    # float64 properties from another tool are read as float32; normals are optional
    names = [n for n in reference_names(0) if n not in ("nx", "ny", "nz")]
    write_vertices(tmp_path / "f8.ply", names, n=4, dtype="f8")
    cloud = read_splat_ply(tmp_path / "f8.ply")
    assert cloud.means.dtype == np.float32 and cloud.sh.shape == (4, 1, 3) and cloud.extra == {}
    bad = make_cloud(n=4, degree=0)
    bad.quats[2, 1] = np.inf
    with pytest.raises(DataError, match="quats of 1 Gaussians is NaN/inf"):
        write_splat_ply(tmp_path / "bad.ply", bad)
    empty = SplatCloud(means=np.zeros((0, 3)), sh=np.zeros((0, 1, 3)), opacity_logits=np.zeros(0),
                       log_scales=np.zeros((0, 3)), quats=np.zeros((0, 4)))
    with pytest.raises(DataError, match="empty"):
        write_splat_ply(tmp_path / "e.ply", empty)
    assert not (tmp_path / "bad.ply").exists() and not (tmp_path / "e.ply").exists()
