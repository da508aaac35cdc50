"""3D Gaussian Splatting PLY interoperability, checked against a reader and a writer written here
from the format's description (not the library's): the reference implementation's
``save_ply`` / ``load_ply`` layout -- one binary little-endian ``vertex`` element of float32
properties ``x y z nx ny nz f_dc_0..2 f_rest_* opacity scale_0..2 rot_0..3`` in this order,
opacity as a logit, log scales, a wxyz rotation, colour = 0.5 + C0 * f_dc."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from liftgs.io.ply import read_point_cloud
from liftgs.io.splat_ply import read_splat_ply, splat_from_gaussians, write_splat_ply
from liftgs.types import Gaussians

C0 = 0.28209479177387814  # Y_0^0
STANDARD = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
            "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def plain_read(path) -> tuple[list[str], np.ndarray]:
    """A 3DGS PLY reader from the format description: ASCII header, then N records of float32."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert header[0] == "ply" and header[1] == "format binary_little_endian 1.0"
    count, names = None, []
    for line in header[2:]:
        words = line.split()
        if words[:2] == ["element", "vertex"]:
            count = int(words[2])
        elif words[0] == "property":
            assert words[1] == "float", f"property {words[2]} is {words[1]}, not float"
            names.append(words[2])
    values = np.frombuffer(data[end:], dtype="<f4")
    assert count is not None and values.size == count * len(names)
    return names, values.reshape(count, len(names))


def plain_write(path, columns: dict[str, np.ndarray]) -> None:
    """The matching writer: the reference layout, degree 0, normals zero."""
    n = len(columns["x"])
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    lines += [f"property float {name}" for name in STANDARD] + ["end_header"]
    body = np.stack([columns.get(name, np.zeros(n)) for name in STANDARD], axis=1).astype("<f4")
    path.write_bytes(("\n".join(lines) + "\n").encode("ascii") + body.tobytes())


def _gaussians(n: int = 50, seed: int = 0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    return Gaussians(means=torch.randn(n, 3, generator=g), quats=torch.randn(n, 4, generator=g),
                     scales=torch.rand(n, 3, generator=g) * 0.05 + 1e-3,
                     opacities=torch.rand(n, generator=g) * 0.98 + 0.01,
                     colors=torch.rand(n, 3, generator=g))


def test_exported_gaussians_open_in_a_plain_3dgs_reader(tmp_path):
    g = _gaussians()
    ids = np.arange(50) % 4 - 1.0
    path = write_splat_ply(tmp_path / "g.ply", splat_from_gaussians(g, {"mask_id": ids, "mask_score": ids * 0.1}))
    names, rows = plain_read(path)
    assert names == STANDARD + ["mask_id", "mask_score"]  # names and order; every property float32
    col = {n: rows[:, i].astype(np.float64) for i, n in enumerate(names)}
    rgb = 0.5 + C0 * np.stack([col["f_dc_0"], col["f_dc_1"], col["f_dc_2"]], 1)
    np.testing.assert_allclose(rgb, g.colors.numpy(), atol=1e-6)
    np.testing.assert_allclose(1 / (1 + np.exp(-col["opacity"])), g.opacities.numpy(), atol=1e-6)
    scales = np.exp(np.stack([col[f"scale_{i}"] for i in range(3)], 1))
    np.testing.assert_allclose(scales, g.scales.numpy(), rtol=1e-5)
    np.testing.assert_allclose(np.stack([col[f"rot_{i}"] for i in range(4)], 1), g.quats.numpy(), atol=1e-7)
    np.testing.assert_allclose(np.stack([col["x"], col["y"], col["z"]], 1), g.means.numpy(), atol=1e-7)
    assert not np.any(np.stack([col["nx"], col["ny"], col["nz"]]))
    np.testing.assert_array_equal(col["mask_id"], ids)


def test_a_plain_3dgs_file_loads_in_ours(tmp_path):
    rng = np.random.default_rng(1)
    n = 40
    rgb = rng.uniform(0.05, 0.95, (n, 3))
    columns = {"x": rng.normal(size=n), "y": rng.normal(size=n), "z": rng.normal(size=n),
               "opacity": rng.normal(size=n), "rot_0": np.ones(n), "rot_1": rng.normal(size=n)}
    columns.update({f"f_dc_{i}": (rgb[:, i] - 0.5) / C0 for i in range(3)})
    columns.update({f"scale_{i}": np.log(rng.uniform(0.01, 0.1, n)) for i in range(3)})
    plain_write(tmp_path / "plain.ply", columns)
    cloud = read_splat_ply(tmp_path / "plain.ply")
    assert cloud.sh_degree == 0 and cloud.num_gaussians == n and not cloud.extra
    np.testing.assert_allclose(cloud.colors(), rgb, atol=1e-6)
    np.testing.assert_allclose(cloud.opacities(), 1 / (1 + np.exp(-columns["opacity"])), atol=1e-6)
    np.testing.assert_allclose(cloud.quats[:, 1], columns["rot_1"], atol=1e-6)
    # as a point cloud (liftgs ground, liftgs convert): positions and the SH DC colours
    pc = read_point_cloud(tmp_path / "plain.ply")
    np.testing.assert_allclose(pc.points[:, 0], columns["x"], atol=1e-6)
    np.testing.assert_allclose(pc.colors, rgb, atol=1e-6)


def test_opacities_at_the_ends_and_bad_scales():
    g = _gaussians(4)
    g.opacities[:2] = torch.tensor([0.0, 1.0])
    cloud = splat_from_gaussians(g)
    assert np.isfinite(cloud.opacity_logits).all() and cloud.opacity_logits[0] < -13 < 13 < cloud.opacity_logits[1]
    g.scales[0, 0] = 0.0
    with pytest.raises(ValueError, match="scales must be > 0"):
        splat_from_gaussians(g)


def test_ground_writes_the_predicted_gaussians(tmp_path):
    from liftgs.ground import GroundConfig, run_ground
    from liftgs.io.ply import write_point_cloud
    from liftgs.models.liftgs import ModelConfig, build_liftgs
    from liftgs.models.liftgs.inference import predict_gaussians
    from liftgs.text import load_text_encoder

    torch.manual_seed(0)
    model_dir = build_liftgs(ModelConfig.tiny(text_dim=384)).save_pretrained(tmp_path / "model")
    rng = np.random.default_rng(0)
    pts = rng.uniform([0, 0, 0], [3, 3, 1.5], size=(2000, 3)).astype(np.float32)
    cols = rng.uniform(0, 1, size=(2000, 3)).astype(np.float32)
    write_point_cloud(tmp_path / "cloud.ply", pts, cols)
    cfg = GroundConfig(scene=tmp_path / "cloud.ply", phrase="the red chair", checkpoint=model_dir,
                       out=tmp_path / "out", views=0, threshold=0.3, splats=True)
    res = run_ground(cfg, text_encoder=load_text_encoder("hash-384"))
    names, rows = plain_read(tmp_path / "out" / "gaussians.ply")
    assert names == STANDARD + ["mask_id", "mask_score"] and rows.shape[0] == len(pts)
    col = {n: rows[:, i] for i, n in enumerate(names)}
    np.testing.assert_array_equal(col["mask_id"], res.point_mask_ids)
    scores = np.concatenate([res.scores, [0.0]])[res.point_mask_ids]
    np.testing.assert_allclose(col["mask_score"], scores, rtol=1e-6)
    from liftgs.models import load_model

    g = predict_gaussians(load_model(model_dir).eval(), pts, cols)
    rgb = 0.5 + C0 * np.stack([col["f_dc_0"], col["f_dc_1"], col["f_dc_2"]], 1)
    np.testing.assert_allclose(rgb, g.colors.numpy(), atol=1e-5)
    assert json.loads((tmp_path / "out" / "grounding.json").read_text())["num_points"] == len(pts)
    with pytest.raises(ValueError, match="--splats writes LIFT-GS"):
        GroundConfig(scene=tmp_path, phrase="a chair", model="gensplat", checkpoint=tmp_path, recon=tmp_path,
                     splats=True)
