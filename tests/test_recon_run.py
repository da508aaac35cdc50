"""Reconstruction runs on tiny fabricated scans: the loss falls, a resumed run equals the
uninterrupted one, real-capture faults are detected and named, and the command's outputs and
one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from liftgs.io.errors import DataWarning
from liftgs.io.splat_ply import read_splat_ply
from liftgs.recon import reconstruct_scene, schedule_config
from liftgs.testing.scans import degrade_scan, fabricate_scan


@pytest.fixture(scope="module")
def scan():
    return fabricate_scan("scan0", seed=0, size=32, num_frames=12)


def tiny_config(**kw):
    base = dict(steps=60, sh_increase_every=20, densify_from=10, densify_until=50, densify_every=10,
                reset_every=0, densify_grad_threshold=1e-4, holdout_every=4, checkpoint_every=20,
                pose_check_step=0, max_gaussians=20_000)
    base.update(kw)
    return schedule_config("fast", **base)


def test_loss_falls_and_density_changes(scan):
    from liftgs.recon.optimise import _Run

    cfg = tiny_config(steps=50)
    run = _Run(scan, cfg, None, warn=lambda m: None)
    run.prepare()
    before = run.frame_l1(run.active_train)
    n0 = run.params["means"].shape[0]
    changed = False
    for _ in range(cfg.steps):
        run.train_step()
        changed |= run.params["means"].shape[0] != n0
    after = run.frame_l1(run.active_train)
    assert np.mean(list(after.values())) < 0.8 * np.mean(list(before.values()))
    assert changed  # density control ran


def test_result_and_summary(scan):
    cloud, summary = reconstruct_scene(scan, tiny_config(), warn=lambda m: None)
    assert cloud.num_gaussians == summary["num_gaussians"] > 0
    assert cloud.sh_degree == 1 and np.isfinite(cloud.means).all()
    assert summary["heldout_frames"] == ["000000", "000004", "000008"]
    assert "000004" not in summary["train_frames"] and len(summary["train_frames"]) == 9
    assert len(summary["heldout"]) == 3 and summary["heldout_psnr"] > 15
    assert summary["heldout_psnr"] == pytest.approx(np.mean([v["psnr"] for v in summary["heldout"]]))
    assert 0 < summary["heldout_ssim"] <= 1 and summary["warnings"] == []
    assert set(summary["seconds_by_phase"]) >= {"render", "backward", "densify", "loss"}


def test_no_process_wide_state(scan):
    import random

    import torch

    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(7)
    states = (torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate())
    threads = torch.get_num_threads()
    reconstruct_scene(scan, tiny_config(steps=12, densify_from=2, densify_every=5), warn=lambda m: None)
    assert torch.equal(torch.get_rng_state(), states[0])
    assert (np.random.get_state()[1] == states[1]).all() and random.getstate() == states[2]
    assert torch.get_num_threads() == threads


class Interrupt(Exception):
    pass


def test_resume_equals_uninterrupted(scan, tmp_path):
    cfg = tiny_config(reset_every=30, half_resolution_until=15)  # every kind of event on both sides
    full, full_summary = reconstruct_scene(scan, cfg, checkpoint_dir=tmp_path / "a", warn=lambda m: None)

    def stop(step):
        if step == 47:  # after the checkpoint of step 40, between densifications
            raise Interrupt

    with pytest.raises(Interrupt):
        reconstruct_scene(scan, cfg, checkpoint_dir=tmp_path / "b", warn=lambda m: None, on_step=stop)
    state = json.loads((tmp_path / "b" / "state.json").read_text())
    assert state["step"] == 40
    resumed, summary = reconstruct_scene(scan, cfg, checkpoint_dir=tmp_path / "b", resume=True,
                                         warn=lambda m: None)
    assert summary["resumed_from_step"] == 40
    for name in ("means", "sh", "opacity_logits", "log_scales", "quats"):
        assert getattr(resumed, name).tobytes() == getattr(full, name).tobytes(), name
    assert summary["heldout_psnr"] == full_summary["heldout_psnr"]
    # a state written with other settings is refused in one line
    from liftgs.train.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="steps=60.*steps=70"):
        reconstruct_scene(scan, tiny_config(steps=70, reset_every=30, half_resolution_until=15),
                          checkpoint_dir=tmp_path / "b", resume=True, warn=lambda m: None)


def test_real_data_like_scan(scan):
    """Missing depth (no file, all zeros), an exposure jump and one bad pose: each is detected
    and named, and the held-out views still come out well."""
    bad = degrade_scan(scan, no_depth=[3], zero_depth=[5], exposure={9: 1.35, 10: 1.35, 11: 1.35},
                       bad_pose={6: 10.0})
    cfg = tiny_config(steps=80, densify_until=60)
    got: list[str] = []
    cloud, summary = reconstruct_scene(bad, cfg, warn=got.append)
    text = "\n".join(got)
    assert got == summary["warnings"] and len(got) == 3, got
    assert "000003, 000005 have no usable depth" in text and "depth loss skips them" in text
    exposure = next(w for w in got if "exposure" in w)
    assert all(n in exposure for n in ("000009", "000010", "000011")) and "000001" not in exposure
    skipped = next(w for w in got if "skipping" in w)
    assert "000006" in skipped and "bad pose" in skipped
    assert summary["skipped_frames"] == ["000006"] and summary["exposure_compensation"]
    assert summary["frames_without_depth"] == ["000003", "000005"]
    # held-out frames 0, 4, 8 are clean: the faults elsewhere must not spoil them
    _, clean = reconstruct_scene(scan, cfg, warn=lambda m: None)
    _, start = reconstruct_scene(bad, tiny_config(steps=1), warn=lambda m: None)
    assert summary["heldout_psnr"] > start["heldout_psnr"] + 1.5
    assert summary["heldout_psnr"] > clean["heldout_psnr"] - 1.0
    # the same run with the default warning path: DataWarning
    with pytest.warns(DataWarning) as record:
        reconstruct_scene(bad, tiny_config(steps=5, densify_from=1), warn=None)
    assert sorted(str(w.message) for w in record) == sorted(got)


def test_bad_pose_without_depth_is_caught_photometrically(scan):
    """Frames without depth: the bad pose shows as a photometric outlier after warm-up."""
    from liftgs.types import Frame, Scene

    bad = degrade_scan(scan, bad_pose={6: 10.0})
    rgb_only = Scene("rgb", bad.points, bad.colors, [Frame(f.camera, f.rgb, None, None, f.name) for f in bad.frames])
    got: list[str] = []
    _, summary = reconstruct_scene(rgb_only, tiny_config(steps=70, pose_check_step=60), warn=got.append)
    assert summary["skipped_frames"] == ["000006"]
    assert len(got) == 1 and "skipping frames 000006: its photometric loss after 60 steps" in got[0]
    assert summary["frames_without_depth"] == [f.name for f in bad.frames]


# ----------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def scan_root(tmp_path_factory, scan):
    from liftgs.io.scene_dir import write_scene

    root = tmp_path_factory.mktemp("scans")
    write_scene(scan, root)
    other = fabricate_scan("scan1", seed=1, size=32, num_frames=10)
    write_scene(other, root)
    return root


def run_cli(argv, capsys):
    from liftgs.cli import main

    code = main(["recon", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_writes_outputs_and_skips_done(scan_root, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--data", str(scan_root), "--out", str(out), "--schedule", "fast", "--steps", "12",
            "--scenes", "scan1", "--no-progress", "--threads", "1"]
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert "scan1:" in stdout and "held-out PSNR" in stdout
    cloud = read_splat_ply(out / "scan1" / "gaussians.ply")
    summary = json.loads((out / "scan1" / "recon.json").read_text())
    assert summary["num_gaussians"] == cloud.num_gaussians and summary["schedule"] == "fast"
    assert summary["scene"] == str(scan_root / "scan1") and summary["config"]["steps"] == 12
    assert not (out / "scan1" / "checkpoint").exists() and not (out / "scan0").exists()
    code, stdout, _ = run_cli(args, capsys)
    assert code == 0 and "done already" in stdout


@pytest.mark.parametrize("argv, message", [
    (["--data", "{missing}", "--out", "{out}"], "--data: no such folder"),
    (["--data", "{root}", "--out", "{out}", "--scenes", "nope"], "--scenes: no scene 'nope'"),
    (["--data", "{root}", "--out", "{out}", "--sh-degree", "5"], "sh-degree must be 0, 1, 2 or 3"),
    (["--data", "{root}", "--out", "{out}", "--holdout-every", "1"], "holdout-every"),
    (["--data", "{root}", "--out", "{out}", "--init", "{missing}.ply"], "--init starts one scene"),
    (["--data", "{root}", "--out", "{out}", "--scenes", "scan1", "--init", "{missing}.ply"], "missing"),
    (["--data", "{root}", "--out", "{file}"], "--out exists and is not a folder"),
    (["--data", "{root}", "--out", "{out}", "--background", "2", "0", "0"], "background"),
])
def test_cli_one_line_errors(scan_root, tmp_path, capsys, argv, message):
    (tmp_path / "file").write_text("x")
    subs = {"{missing}": str(tmp_path / "missing"), "{out}": str(tmp_path / "out"), "{root}": str(scan_root),
            "{file}": str(tmp_path / "file")}
    argv = [subs.get(a, a) for a in argv]
    argv = [a.replace("{missing}", str(tmp_path / "missing")) for a in argv]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("liftgs recon: "), err
    assert message in lines[0]
    assert not (tmp_path / "out").exists()  # nothing was written
