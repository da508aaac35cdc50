"""Pre-training 2D targets line up with what the renderer draws in the same view.

The mask loss compares rendered masks with the sample's targets pixel by pixel (paper Sec. 3.3,
appendix A.1), so a target map mirrored, shifted or resized on another pixel grid than the
camera trains the model against the wrong pixels without any error. Here a room of flat
panels gets labels from a perfect teacher (ray casting at the frame's pixel centres; the
segment of a pixel is the instance of the nearest panel it sees) and goes through
:class:`PretrainDataset` (label store, working-size resize, scaled camera, pixel sampling).
The scene's ground-truth instances, rendered with small isotropic Gaussians at the points
into the sample's view, must then match every target with IoU >= 0.95; a mirrored or
shifted target must fail the same check.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from liftgs.geometry import look_at
from liftgs.io.scene_dir import write_scene
from liftgs.recipes.pretrain_data import PretrainDataset, min_area_at
from liftgs.render import render
from liftgs.teachers.store import PseudoLabelStore
from liftgs.types import Camera, Frame, PseudoLabels, Scene

FRAME_W, FRAME_H, IMAGE_SIZE = 384, 288, 128  # working size 128 x 96: labels are
# resized by 1/3, so each working pixel centre is a frame pixel centre (no resampling offset)
SPACING = 0.025  # metres between points on a panel
OPACITY = 0.2  # keeps the interior transmittance far above the 1e-4 cut-off
# panels: centre, half-axis 1, half-axis 2 (world, z up); sizes and places asymmetric so a
# mirrored image does not map a panel onto another
PANELS = [
    ((0.35, 0.1, 1.0), (0.5, 0.0, 0.0), (0.0, 0.0, 0.4)),
    ((-0.8, 0.7, 0.6), (0.4, -0.1, 0.0), (0.0, 0.0, 0.5)),
    ((1.0, 0.6, 0.4), (0.3, 0.1, 0.0), (0.0, 0.0, 0.35)),
    ((-0.1, -0.9, 0.2), (0.45, 0.0, 0.0), (0.0, 0.35, 0.0)),
]
SEGMENT_OF = {0: 2, 1: 0, 2: 3, 3: 1}  # instance -> segment index (a teacher's own order)
EYES = [((0.6, -3.2, 1.6), (0.1, 0.2, 0.5)), ((-1.9, -2.4, 2.2), (0.0, 0.2, 0.5))]
MIN_IOU = 0.95


def _panel_points(centre, a1, a2) -> np.ndarray:
    """Points at the centres of a grid of SPACING-sized cells covering the panel."""
    c, a1, a2 = (np.asarray(v, float) for v in (centre, a1, a2))
    n1 = max(1, int(round(2 * np.linalg.norm(a1) / SPACING)))
    n2 = max(1, int(round(2 * np.linalg.norm(a2) / SPACING)))
    s = (np.arange(n1) + 0.5) / n1 * 2 - 1
    t = (np.arange(n2) + 0.5) / n2 * 2 - 1
    S, T = np.meshgrid(s, t, indexing="ij")
    return c + S.reshape(-1, 1) * a1 + T.reshape(-1, 1) * a2


def _ray_cast_instances(cam: Camera) -> np.ndarray:
    """Instance id [H, W] of the nearest panel through each pixel centre, -1 = none."""
    ys, xs = np.mgrid[0:cam.height, 0:cam.width]
    pix = np.stack([xs + 0.5, ys + 0.5, np.ones_like(xs, dtype=float)], -1).reshape(-1, 3)
    R, t = cam.viewmat[:3, :3], cam.viewmat[:3, 3]
    dirs = (np.linalg.inv(cam.K) @ pix.T).T @ R  # world directions, camera z = 1
    origin = -R.T @ t
    best = np.full(len(pix), np.inf)
    ids = np.full(len(pix), -1)
    for i, (c, a1, a2) in enumerate(PANELS):
        c, a1, a2 = (np.asarray(v, float) for v in (c, a1, a2))
        n = np.cross(a1, a2)
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = ((c - origin) @ n) / (dirs @ n)
        hit = origin + depth[:, None] * dirs - c
        inside = (np.abs(hit @ a1 / (a1 @ a1)) <= 1) & (np.abs(hit @ a2 / (a2 @ a2)) <= 1)
        closer = inside & (depth > 0) & (depth < best)
        best[closer], ids[closer] = depth[closer], i
    return ids.reshape(cam.height, cam.width)


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    """(PretrainDataset, scene points [P, 3], instance ids [P]) for one fabricated room."""
    root = tmp_path_factory.mktemp("panels")
    pts = [_panel_points(*p) for p in PANELS]
    points = np.concatenate(pts).astype(np.float32)
    inst = np.concatenate([np.full(len(p), i) for i, p in enumerate(pts)]).astype(np.int32)
    K = np.array([[0.95 * FRAME_W, 0, 0.46 * FRAME_W], [0, 0.95 * FRAME_W, 0.53 * FRAME_H], [0, 0, 1]])
    frames, labels = [], []
    emb = np.eye(8, dtype=np.float32)[[i for i, _ in sorted(SEGMENT_OF.items(), key=lambda kv: kv[1])]]
    for v, (eye, target) in enumerate(EYES):
        cam = Camera(K, look_at(eye, target), FRAME_W, FRAME_H)
        ids = _ray_cast_instances(cam)
        segments = np.where(ids >= 0, np.vectorize(SEGMENT_OF.get)(np.maximum(ids, 0)), -1)
        rgb = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
        frames.append(Frame(cam, rgb, name=f"{v:06d}"))
        labels.append(PseudoLabels(segments=segments.astype(np.int32), embeddings=emb))
    scene = Scene("panels", points, np.full_like(points, 0.5), frames, inst)
    write_scene(scene, root / "data")
    store = PseudoLabelStore(root / "labels")
    for fr, lab in zip(frames, labels):
        store.put(scene.scene_id, fr.name, lab)
    ds = PretrainDataset([root / "data" / "panels"], root / "labels", seed=0, image_size=IMAGE_SIZE,
                         num_pixels=4096, random_count=False, min_area_512=1024)
    return ds, points, inst


def rendered_instances(points: np.ndarray, inst: np.ndarray, view) -> torch.Tensor:
    """Instance id [H, W] drawn by the renderer in ``view`` (-1 = no panel).

    Each instance is rendered alone (one-hot attribute, small isotropic Gaussians at its
    points); its optical depth tau = -ln(1 - alpha) is the sum of the Gaussians' symmetric
    footprints, so at the edge of a uniformly dense panel it is half the interior value: the
    panel covers a pixel where tau >= half the largest tau within 3 px. (A fixed alpha
    threshold would dilate every panel by about one pixel: the 0.3 px^2 low-pass keeps each
    footprint at least 0.55 px wide.) Where panels overlap, the nearest rendered depth wins.
    """
    H, W = view.segments.shape
    viewmat, K = view.viewmat.double(), view.K.double()
    means = torch.from_numpy(points).double()
    z = means @ viewmat[:3, :3].T[:, 2] + viewmat[2, 3]  # camera depth of each point
    nearest = torch.full((H, W), float("inf"), dtype=torch.float64)
    label = torch.full((H, W), -1, dtype=torch.long)
    for i in range(int(inst.max()) + 1):
        sel = torch.from_numpy(inst == i)
        n = int(sel.sum())
        image, alpha, _ = render(means[sel], torch.tensor([[1.0, 0, 0, 0]]).double().expand(n, 4),
                                 torch.full((n, 3), 0.6 * SPACING, dtype=torch.float64),
                                 torch.full((n,), OPACITY, dtype=torch.float64), z[sel, None],
                                 viewmat, K, W, H)
        tau = -torch.log1p(-alpha)
        local = torch.nn.functional.max_pool2d(tau[None, None], 7, stride=1, padding=3)[0, 0]
        covered = (tau > 0) & (local >= 0.5) & (tau >= 0.5 * local)
        depth = image[..., 0] / alpha.clamp_min(1e-12)
        wins = covered & (depth < nearest)
        nearest[wins], label[wins] = depth[wins], i
    return label


def chosen_instances(sample) -> list[int]:
    """Instance of each target: its query is the one-hot embedding of that instance."""
    return sample.queries.argmax(1).tolist()


def target_ious(sample, targets: torch.Tensor, points, inst) -> list[float]:
    """IoU at the sampled pixels between each target [K, Np] and its rendered instance."""
    drawn = rendered_instances(points, inst, sample.view).reshape(-1)[sample.pixels]
    out = []
    for k, i in enumerate(chosen_instances(sample)):
        t, r = targets[k] > 0.5, drawn == i
        out.append(float((t & r).sum()) / max(1, int((t | r).sum())))
    return out


def _targets_from(segments: torch.Tensor, sample) -> torch.Tensor:
    """Targets [K, Np] the sample would have had with another segment map [H, W]."""
    seg_at = segments.reshape(-1)[sample.pixels]
    chosen = torch.tensor([SEGMENT_OF[i] for i in chosen_instances(sample)])
    return (seg_at[None, :] == chosen[:, None]).float()


def _samples(ds):
    return [s for pos in range(3) for s in ds.sample_views(pos, 2)]


def test_targets_match_rendered_instances(room):
    ds, points, inst = room
    seen = set()
    for sample in _samples(ds):
        H, W = sample.view.segments.shape
        assert (W, H) == (128, 96)
        assert torch.equal(sample.points, torch.from_numpy(points))
        # every panel above the area filter is a target (panel 2 is mostly hidden in view 0)
        big = np.flatnonzero(sample.view.areas >= min_area_at(W, H, 1024))
        instance_of = {seg: i for i, seg in SEGMENT_OF.items()}
        assert sorted(chosen_instances(sample)) == sorted(instance_of[int(k)] for k in big)
        assert len(big) >= 3
        assert sample.target_masks.sum(1).min() >= 20  # each target covers sampled pixels
        ious = target_ious(sample, sample.target_masks, points, inst)
        assert min(ious) >= MIN_IOU, ious
        seen.add(int(sample.view.viewmat.sum() * 1000))
    assert len(seen) == 2  # both views were checked


def test_mirrored_or_shifted_targets_fail_the_check(room):
    """The check has teeth: the same targets flipped left-right or moved by 3 px fail it."""
    ds, points, inst = room
    for sample in ds.sample_views(0, 2):
        seg = sample.view.segments
        # the true map, rebuilt from the view, passes (the rebuild itself is right)
        assert torch.equal(_targets_from(seg, sample), sample.target_masks)
        mirrored = _targets_from(torch.flip(seg, dims=[1]), sample)
        ious = target_ious(sample, mirrored, points, inst)
        assert max(ious) < 0.7 and min(ious) < 0.1, ious  # a centred panel half-overlaps itself
        for dx, dy in [(3, 0), (-3, 0), (0, 3), (0, -3)]:
            shifted = torch.roll(seg, shifts=(dy, dx), dims=(0, 1))
            ious = target_ious(sample, _targets_from(shifted, sample), points, inst)
            assert max(ious) < 0.9, (dx, dy, ious)
