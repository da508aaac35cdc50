"""``liftgs ground SCENE "phrase"``: ground a phrase in a scan and write what was found.

SCENE is a scene directory (``liftgs synth`` / ``liftgs convert`` output) or a bare point cloud
(PLY with xyz + rgb, or ``.npy`` / ``.bin`` holding N x 6 float32 xyz + rgb). The model returns
ranked 3D masks (paper eq. 1: masks M over the points and their correspondence C to the query
tokens); this command writes

* ``grounding.json`` — per mask: rank, score, number of points, axis-aligned box; and per point
  the id (rank) of the best mask holding it (-1 = none), also as ``point_mask_ids.npy``;
* ``highlight.ply`` — the point cloud, grounded objects tinted, the rest slightly dimmed;
* ``view_*.png`` — the highlighted cloud splatted from a few viewpoints around the scene
  (points rendered as small Gaussians by :mod:`liftgs.render`);

and prints the latency of each stage (the paper reports about 1 s per query on a GPU, Sec 1).

With ``--model gensplat`` the phrase is grounded by a GenSplat stage-III model (a ``liftgs
gensplat-language`` run, ``--checkpoint``) on the scene's 3D Gaussian reconstruction
(``--recon DIR``: ``DIR/<scene_id>/gaussians.ply``, ``liftgs recon``): frames are chosen for the
phrase (GAFS with ``--frames RUN``, a ``liftgs gensplat-frames`` run; evenly spaced otherwise),
the reasoner reads them, and the referring decoder's mask over the Gaussians is carried to the
scene's points by nearest Gaussian centre (:func:`ground_gensplat`). The same files are written,
with one mask and the selected frames.

A cloud far from the model's training scenes (point count, extent, density, gravity, colours:
:mod:`liftgs.clouds`) gets one warning line per quantity on stderr, as does a top mask of
fewer than :data:`MIN_MASK_POINTS` points. A cloud of more than ``--max-points`` points is
grounded on its voxel means and every input point takes its voxel's masks.
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from liftgs.config import name_positional, parse_cli
from liftgs.models.liftgs.grounding import (MIN_MASK_POINTS, GroundOutput, Timer, check_mask_options,
                                            ground_cloud, print_warnings)

# highlight colours of ranks 0, 1, 2, ... (RGB in [0, 1])
PALETTE = np.array([[1.0, 0.85, 0.0], [0.0, 0.75, 1.0], [1.0, 0.3, 0.6], [0.4, 1.0, 0.3],
                    [1.0, 0.55, 0.1], [0.7, 0.4, 1.0]], dtype=np.float32)
DIM, TINT = 0.7, 0.85  # highlight_colors: rest of the scene x DIM; a mask's colour -> TINT palette
DEFAULT_CHECKPOINT = "liftgs-tiny-finetuned"  # the LIFT-GS model grounded with by default
GENSPLAT_SCORE = "sigmoid of the mean mask logit over the mask's Gaussians"  # --model gensplat's score


@dataclass
class GroundConfig:
    """Ground a phrase in a scene directory or a bare point cloud."""

    scene: Path
    """scene directory, or a .ply / .npy / .bin point cloud (N x 6 xyz + rgb)"""
    phrase: str
    """what to find, e.g. "the red chair next to the table" """
    checkpoint: Path = Path(DEFAULT_CHECKPOINT)
    """model folder, checkpoint or run directory, or a shipped model's name (default: the
    shipped fine-tuned model; liftgs-tiny-pretrained grounds zero-shot); with --model gensplat a
    `liftgs gensplat-language` run or its model/ folder (required)"""
    model: Literal["liftgs", "gensplat"] = "liftgs"
    """liftgs: LIFT-GS on the points; gensplat: a GenSplat stage-III model on the scene's
    reconstruction and frames (SCENE must be a scene directory; needs --recon)"""
    recon: Path | None = None
    """gensplat: reconstruction root holding <recon>/<scene_id>/gaussians.ply (`liftgs recon`)"""
    frames: Path | None = None
    """gensplat: a `liftgs gensplat-frames` run (GAFS scorer) choosing the frames the reasoner
    reads; without it, evenly spaced frames"""
    cache: Path | None = None
    """gensplat: scene-feature cache folder (default: computed in memory, nothing kept)"""
    out: Path | None = None
    """output folder (default: ground_out/<scene name>)"""
    text_encoder: str | None = None
    """text encoder name, folder or HF-cache repo id; default: the one the model records (its
    pre-training labels' encoder), MiniLM when it records none (gensplat with --frames: the
    frames run's encoder)"""
    mode: Literal["auto", "zero-shot", "phrase", "expression"] = "auto"
    """phrase = pooled vector as one query, as in pre-training; zero-shot = phrase, with the
    masks ranked by the Gaussian feature field's relevance (for pre-trained-only models);
    expression = all tokens as queries, ranked on the --target tokens (after fine-tuning);
    auto picks by run: zero-shot for a pre-training run, else by the fine-tuning task"""
    target: str | None = None
    """in expression mode: the words naming the target (default: the whole phrase)"""
    top_k: int = 3
    """masks to keep"""
    threshold: float = 0.5
    """a point belongs to a mask when sigmoid(mask logit) exceeds this"""
    min_score: float = 0.0
    """drop masks whose score is below this"""
    component_radius: float = 0.1
    """metres: keep each mask's main connected piece (points in touching cells of this size);
    0 keeps masks whole"""
    max_points: int = 500_000
    """clouds with more points are grounded on their voxel means at the model's voxel size (5 cm),
    every point taking its voxel's masks: memory then grows with the room, not the sensor; 0 = always"""
    splats: bool = False
    """also write gaussians.ply: the model's predicted Gaussians (one per point it ran on) as a
    standard 3D Gaussian Splatting PLY, opened by 3DGS viewers, with extra properties mask_id
    (rank of the Gaussian's mask, -1 none) and mask_score (that mask's score, 0 for none);
    LIFT-GS only"""
    views: int = 4
    """PNG renders around the scene (0 = none)"""
    image_size: int = 384
    device: str = "cpu"

    def __post_init__(self) -> None:
        from liftgs.runtime import check_device

        check_device(self.device, allow_auto=False)
        if not self.phrase or not self.phrase.strip():
            raise ValueError("the phrase is empty: say what to find, e.g. \"the red chair\"")
        check_mask_options(self.top_k, self.threshold, self.component_radius)
        if self.max_points < 0:
            raise ValueError(f"--max-points must be >= 0 (0 = always downsample), got {self.max_points}")
        if self.views < 0 or self.image_size < 16:
            raise ValueError("--views must be >= 0 and --image-size >= 16")
        if self.target is not None and self.target not in self.phrase:
            raise ValueError(f"--target {self.target!r} does not occur in the phrase {self.phrase!r}")
        if self.model == "gensplat":
            check_gensplat_options(self.checkpoint, self.recon)
            if self.splats:
                raise ValueError("--splats writes LIFT-GS's predicted Gaussians; with --model gensplat the Gaussians "
                                 "are the reconstruction's (--recon DIR/<scene_id>/gaussians.ply)")


def load_scene_points(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Points [P, 3], colours [P, 3] in [0, 1] and a name, from a scene dir or a point-cloud file."""
    from liftgs.io.errors import DataError

    path = Path(path)
    if path.is_dir():
        from liftgs.io.ply import check_coordinates
        from liftgs.io.scene_dir import POINTS_PLY, read_scene, read_scene_json

        scene = read_scene(path, load_frames=False)
        points, colors, name = scene.points, scene.colors, scene.scene_id
        check_coordinates(points, path / read_scene_json(path).get("points", POINTS_PLY))
    elif path.is_file():
        from liftgs.io.ply import load_point_cloud

        points, colors = load_point_cloud(path)
        name = path.stem
    else:
        raise DataError(f"{path}: no such scene directory or point-cloud file")
    if len(points) == 0:
        raise DataError(f"{path}: the point cloud is empty")
    return np.asarray(points, np.float32), np.asarray(colors, np.float32), name


def highlight_colors(colors: np.ndarray, point_mask_ids: np.ndarray) -> np.ndarray:
    """The scene's own colours, slightly dimmed, with each grounded mask tinted strongly towards
    its rank's colour: the room stays recognisable and the masks stand out."""
    colors = np.asarray(colors, dtype=np.float32)
    out = DIM * colors
    hit = point_mask_ids >= 0
    out[hit] = (1 - TINT) * colors[hit] + TINT * PALETTE[point_mask_ids[hit] % len(PALETTE)]
    return out.astype(np.float32)


def orbit_cameras(points: np.ndarray, count: int, size: int):
    """``count`` cameras on a circle above the scene, each looking at its centre (60° FOV)."""
    from liftgs.geometry import look_at
    from liftgs.types import Camera

    lo, hi = np.percentile(points, 2, axis=0), np.percentile(points, 98, axis=0)
    centre, extent = (lo + hi) / 2, float(np.linalg.norm(hi[:2] - lo[:2]))
    radius, height = 0.75 * extent + 0.5, hi[2] + 0.4 * extent + 0.5
    f = size / (2 * np.tan(np.radians(30)))
    K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    cams = []
    for i in range(count):
        a = 2 * np.pi * i / count + np.pi / 4
        eye = centre + np.array([radius * np.cos(a), radius * np.sin(a), 0.0])
        eye[2] = height
        cams.append(Camera(K=K, viewmat=look_at(eye, centre), width=size, height=size))
    return cams


def render_views(points: np.ndarray, colors: np.ndarray, cameras, voxel: float = 0.05) -> list[np.ndarray]:
    """Splat each point as an isotropic Gaussian (≈ voxel size) into each camera: uint8 images."""
    import torch

    from liftgs.render import render

    N = len(points)
    means = torch.from_numpy(points).float()
    quats = torch.zeros(N, 4)
    quats[:, 0] = 1.0
    scales = torch.full((N, 3), 0.6 * voxel)
    opac = torch.full((N,), 0.9)
    attrs = torch.from_numpy(colors).float()
    images = []
    with torch.no_grad():
        for cam in cameras:
            img, _, _ = render(means, quats, scales, opac, attrs, torch.from_numpy(cam.viewmat).float(),
                               torch.from_numpy(cam.K).float(), cam.width, cam.height,
                               background=torch.ones(3))
            images.append((img.clamp(0, 1).numpy() * 255).round().astype(np.uint8))
    return images


def write_grounding_json(path: Path, doc: dict, point_mask_ids: np.ndarray, chunk: int = 1 << 16) -> None:
    """``doc`` plus ``"point_mask_ids"`` (last key), atomically. The ids go out in chunks on one
    line: ``json.dump`` of a list of millions of ints would hold a Python object per id."""
    from liftgs.files import atomic_write

    head = json.dumps(doc, indent=2)  # ends with "\n}"
    with atomic_write(path) as fh:
        fh.write(head[:-2] + ',\n  "point_mask_ids": [')
        for start in range(0, len(point_mask_ids), chunk):
            fh.write((", " if start else "") + ", ".join(map(str, point_mask_ids[start:start + chunk].tolist())))
        fh.write("]\n}")


def write_outputs(out: Path, config: GroundConfig, points: np.ndarray, colors: np.ndarray,
                  result: GroundOutput, timer: Timer,
                  view: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, extra: dict | None = None) -> None:
    """grounding.json, point_mask_ids.npy and highlight.ply over every point; the PNG views
    splat ``view`` = (points, colours, mask ids) when given (the voxel means a downsampled
    cloud was grounded on), else the whole cloud. ``extra`` adds keys to grounding.json."""
    from PIL import Image

    from liftgs.io.ply import write_point_cloud

    out.mkdir(parents=True, exist_ok=True)
    with timer("write"):
        masks = [{"rank": r, "score": float(s), "num_points": int(m.sum()),
                  "box_min": b[:3].tolist(), "box_max": b[3:].tolist()}
                 for r, (m, s, b) in enumerate(zip(result.masks, result.scores, result.boxes))]
        write_grounding_json(out / "grounding.json", {
            "phrase": config.phrase, "scene": str(config.scene), "checkpoint": str(config.checkpoint),
            "num_points": int(len(points)), "threshold": config.threshold, "masks": masks, **(extra or {}),
        }, result.point_mask_ids)
        np.save(out / "point_mask_ids.npy", result.point_mask_ids)
        painted = highlight_colors(colors, result.point_mask_ids)
        write_point_cloud(out / "highlight.ply", points, painted)
    if config.views:
        with timer("render"):
            if view is not None:
                points, painted = view[0], highlight_colors(view[1], view[2])
            cams = orbit_cameras(points, config.views, config.image_size)
            for i, img in enumerate(render_views(points, painted, cams)):
                Image.fromarray(img).save(out / f"view_{i}.png")


def run_ground(config: GroundConfig, model=None, text_encoder=None) -> GroundOutput:
    """Load (unless given), ground, write; returns the result with per-stage timings.

    Every check that can refuse the input (coordinates, grid size, text width) runs before
    anything is written. A cloud of more than ``config.max_points`` points runs through the
    model as its voxel means (:func:`model_input`); the masks then map back to every input
    point. Memory, then, grows with the room and not with the sensor: about 50 B per input
    point to load the cloud (float32 xyz + rgb and the file's pages), a transient ~45 B per
    point while downsampling, ~35 B per point for the k masks, the ids and the highlighted
    PLY, plus the model's own footprint on the V voxel means (a room at 5 cm: 10^4-10^5). A
    2M-point cloud grew the peak RSS by ~200 B per point in all; run on every point, by
    ~1.4 kB per point.

    Warnings (the model's input far from its training scenes, :func:`training_ranges`; colours
    the loader clipped; a top mask under :data:`MIN_MASK_POINTS` points) are printed to
    stderr, one line each, and returned in ``GroundOutput.warnings``."""
    from liftgs.train.checkpoint import resolve_model_dir

    if config.model == "gensplat":
        return ground_gensplat(config, model, text_encoder)
    timer = Timer()
    with timer("load points"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        points, colors, name = load_scene_points(config.scene)
    model_dir = resolve_model_dir(config.checkpoint)
    if model is None:
        from liftgs.models import load_model

        with timer("load model"):
            model = load_model(model_dir, map_location=config.device).eval()
    if text_encoder is None:
        from liftgs.models.provenance import text_encoder_for

        with timer("load text encoder"):
            text_encoder = text_encoder_for(model_dir, config.text_encoder, device=config.device, model=model)
    notes = [str(w.message).splitlines()[0] for w in caught]
    result, view = ground_cloud(model, text_encoder, points, colors, config, model_dir, timer, notes)
    result.out = config.out or Path("ground_out") / name
    write_outputs(result.out, config, points, colors, result, timer, view)
    if config.splats:
        with timer("splats"):
            seen = view if view is not None else (points, colors, result.point_mask_ids)
            write_predicted_splats(result.out / "gaussians.ply", model, *seen, result.scores)
    return result


def write_predicted_splats(path: Path, model, points: np.ndarray, colors: np.ndarray, mask_ids: np.ndarray,
                           scores: np.ndarray) -> Path:
    """The model's Gaussians for the cloud it ran on (``points``, ``colors``), written as a 3DGS
    PLY (:func:`liftgs.io.splat_ply.splat_from_gaussians`) with ``mask_id`` (per point: rank of
    its mask, -1 none) and ``mask_score`` (that mask's score, 0 for none) after ``rot_3``."""
    from liftgs.io.splat_ply import splat_from_gaussians, write_splat_ply
    from liftgs.models.liftgs.inference import predict_gaussians

    ids = np.asarray(mask_ids, dtype=np.int64)
    table = np.concatenate([np.asarray(scores, dtype=np.float64), [0.0]])  # index -1: no mask
    gaussians = predict_gaussians(model, points, colors)
    extra = {"mask_id": ids.astype(np.float32), "mask_score": table[ids].astype(np.float32)}
    return write_splat_ply(path, splat_from_gaussians(gaussians, extra))


# ---------------------------------------------------------------------------------- GenSplat
def check_gensplat_options(checkpoint: Path | None, recon: Path | None, need_checkpoint: bool = True) -> None:
    """The options ``--model gensplat`` needs (``liftgs ground``, ``liftgs answer``)."""
    if need_checkpoint and (checkpoint is None or str(checkpoint) == DEFAULT_CHECKPOINT):
        raise ValueError("--model gensplat needs --checkpoint RUN (a `liftgs gensplat-language` run or its model/ "
                         "folder)")
    if recon is None:
        raise ValueError("GenSplat needs --recon DIR, the reconstruction root holding DIR/<scene_id>/gaussians.ply "
                         "(`liftgs recon` output)")


def gensplat_scene_id(scene: Path, recon: Path) -> str:
    """The scene id of the scene directory ``scene`` after checking that it is one and that
    ``recon/<scene_id>/gaussians.ply`` exists; one-line :class:`DataError` otherwise."""
    from liftgs.io.errors import DataError
    from liftgs.io.scene_dir import read_scene_json
    from liftgs.recipes.gensplat_scenes import RECON_FILE

    scene = Path(scene)
    if scene.is_file():
        raise DataError("GenSplat needs posed frames and a reconstruction: give a scene directory "
                        "(`liftgs convert` / `liftgs synth` output), not a bare point cloud", scene)
    if not scene.is_dir():
        raise DataError("no such scene directory", scene)
    scene_id = str(read_scene_json(scene)["scene_id"])
    if not Path(recon).is_dir():
        raise DataError("reconstruction root is not a directory (run `liftgs recon` first)", recon)
    file = Path(recon) / scene_id / RECON_FILE
    if not file.is_file():
        raise DataError(f"missing: scene {scene_id} has no reconstruction (run `liftgs recon` on it first)", file)
    return scene_id


def load_frame_scorer(path: Path):
    """A ``liftgs gensplat-frames`` run (or its model/ folder): the scorer (CPU, eval mode) and the
    text encoder its run recorded (None when no run config is found)."""
    from liftgs.models.gensplat.gafs import FrameScorer

    path = Path(path)
    folder = path / "model" if (path / "model").is_dir() else path
    scorer = FrameScorer.from_pretrained(folder).eval()
    recorded = None
    for run_config in (folder / "config.json", folder.parent / "config.json"):
        try:
            doc = json.loads(run_config.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("text_encoder"), str):
            recorded = doc["text_encoder"]
            break
    return scorer, recorded


@dataclass
class GenSplatScene:
    """A loaded GenSplat stage-III model, one scene's features and the frames chosen for a text."""

    model: object  # liftgs.recipes.gensplat_language.GenSplatLanguage
    feats: object  # liftgs.recipes.gensplat_scenes.SceneFeatures
    frames: np.ndarray  # int64 frame indices the reasoner reads
    selection: str  # "gafs" (--frames) or "uniform"
    scene_id: str


def load_gensplat_scene(scene: Path, checkpoint: Path, recon: Path, text: str, frames: Path | None = None,
                        cache: Path | None = None, text_encoder: str | None = None, num_views: int | None = None,
                        device: str = "cpu", timer: Timer | None = None, model=None,
                        encoder=None) -> GenSplatScene:
    """Check the inputs, load the stage-III bundle (and the GAFS scorer of ``frames``), compute
    the scene's features (in memory, or through the cache folder ``cache``) and pick
    ``num_views`` frames (default: the bundle's) for ``text``: GAFS with a scorer, else evenly
    spaced. The GAFS text encoder is ``text_encoder``, else the frames run's recorded one, else
    MiniLM (``encoder`` overrides all three). The scorer runs on the CPU. A loaded bundle
    ``model`` skips loading one from ``checkpoint``."""
    import torch

    from liftgs.recipes.gensplat_frames import select_frames
    from liftgs.recipes.gensplat_language import load_language_model
    from liftgs.recipes.gensplat_scenes import SceneCacheConfig, SceneFeatureCache

    timer = timer or Timer()
    check_gensplat_options(checkpoint, recon, need_checkpoint=model is None)
    scene_id = gensplat_scene_id(scene, recon)
    scorer = recorded = None
    if frames is not None:
        with timer("load frame scorer"):
            scorer, recorded = load_frame_scorer(frames)
    if model is None:
        with timer("load model"):
            model = load_language_model(checkpoint, map_location=device)
    if scorer is not None:
        latent_dim = int(model.stage2.config.latent_dim)
        if scorer.config.latent_dim != latent_dim:
            raise ValueError(f"{frames}: the GAFS scorer reads {scorer.config.latent_dim}-d latents but the model "
                             f"{checkpoint} has {latent_dim}-d ones (train GAFS on the same stage-II model)")
        if encoder is None:
            from liftgs.text import load_text_encoder

            name = text_encoder or recorded or "minilm"
            with timer("load text encoder"):
                encoder = load_text_encoder(name)
        if encoder.dim != scorer.config.text_dim:
            raise ValueError(f"{frames}: the GAFS scorer takes {scorer.config.text_dim}-d text vectors but the text "
                             f"encoder {getattr(encoder, 'name', text_encoder or recorded)!r} gives {encoder.dim}-d ones")
    st = model.settings
    with timer("scene features"):
        features = SceneFeatureCache(model.stage2, Path(recon), None if cache is None else Path(cache),
                                     SceneCacheConfig(image_size=st.image_size, max_per_view=st.max_per_view,
                                                      label_radius=st.label_radius), labels=False)
        feats = features.get(Path(scene), scene_id)
    k = int(num_views or st.num_views)
    with timer("frames"):
        if scorer is None:
            chosen = select_frames(None, feats, torch.zeros(0), k, "uniform")
        else:
            chosen = select_frames(scorer, feats, encoder.encode([text]).pooled[0].float().cpu(), k, "gafs")
    return GenSplatScene(model, feats, np.asarray(chosen, np.int64), "uniform" if scorer is None else "gafs",
                         scene_id)


def ground_gensplat(config: GroundConfig, model=None, text_encoder=None) -> GroundOutput:
    """``liftgs ground --model gensplat``: one mask from a GenSplat stage-III model, written like
    the LIFT-GS path's masks (:func:`write_outputs`) plus the frames the reasoner read.

    The referring decoder's mask over the Gaussians (sigmoid(logit) > ``--threshold``) goes to
    every point of the scene by nearest Gaussian centre
    (:func:`liftgs.eval.gensplat.nearest_gaussian`). Its score is the sigmoid of the mean mask
    logit over the Gaussians in the mask: how sure the decoder is of the Gaussians it picked.
    (The decoder's "exists" logit is not used: stage III trains it on referred targets only.)
    A mask under ``--min-score`` or with no point is dropped. ``model`` (a loaded
    GenSplatLanguage) and ``text_encoder`` (for GAFS) skip loading. ``--top-k``, ``--mode``,
    ``--target`` and ``--component-radius`` are LIFT-GS options and not used."""
    from liftgs.eval.gensplat import nearest_gaussian
    from liftgs.eval.gensplat_language import refer_logits
    from liftgs.geometry import box_from_points

    timer = Timer()
    gs = load_gensplat_scene(config.scene, config.checkpoint, config.recon, config.phrase, config.frames,
                             config.cache, config.text_encoder, device=config.device, timer=timer,
                             model=model, encoder=text_encoder)
    with timer("load points"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        points, colors, name = load_scene_points(config.scene)
    notes = [str(w.message).splitlines()[0] for w in caught]
    with timer("model"):
        logits = refer_logits(gs.model, gs.feats, [config.phrase], [gs.frames])[0].astype(np.float64)
    with timer("masks"):
        hit = 1.0 / (1.0 + np.exp(-logits)) > config.threshold
        index, _ = nearest_gaussian(points, gs.feats.means.numpy())
        mask = hit[index]
        score = float(1.0 / (1.0 + np.exp(-logits[hit].mean()))) if hit.any() else 0.0
        keep = bool(mask.any()) and score >= config.min_score
        masks = mask[None] if keep else np.zeros((0, len(points)), bool)
        scores = np.array([score] if keep else [], np.float64)
        ids = np.where(mask, 0, -1).astype(np.int32) if keep else np.full(len(points), -1, np.int32)
        boxes = np.stack([box_from_points(points[mask])]) if keep else np.zeros((0, 6))
    if len(masks) and int(masks[0].sum()) < MIN_MASK_POINTS:
        notes.append(f"top mask: {int(masks[0].sum())} points (of {len(points):,}), expected >= {MIN_MASK_POINTS}: "
                     f"no object-sized region found for {config.phrase!r}")
    print_warnings(notes)
    result = GroundOutput(masks, scores, ids, boxes, timer.timings, warnings=notes, model_points=len(points),
                          frames=gs.frames, frame_selection=gs.selection)
    result.out = config.out or Path("ground_out") / name
    write_outputs(result.out, config, points, colors, result, timer, extra={
        "model": "gensplat", "recon": str(config.recon), "score_rule": GENSPLAT_SCORE,
        "num_gaussians": int(len(hit)), "mask_gaussians": int(hit.sum()),
        "frame_selection": gs.selection, "frames": gs.frames.tolist(),
        "frames_run": None if config.frames is None else str(config.frames)})
    return result


def main(argv: list[str] | None = None) -> int:
    argv = name_positional(list(sys.argv[1:] if argv is None else argv), "--scene", "--phrase")
    config = parse_cli(GroundConfig, argv, prog="liftgs ground", description=__doc__.split("\n\n")[0])
    result = run_ground(config)  # a bad input raises: `liftgs` prints it on one line
    print(f"{config.phrase!r}: {len(result.scores)} mask(s)")
    for r, (s, m) in enumerate(zip(result.scores, result.masks)):
        print(f"  #{r}  score {s:.3f}  {int(m.sum())} points")
    if result.frames is not None:
        print(f"frames ({result.frame_selection}): " + ", ".join(map(str, result.frames.tolist())))
    print("latency: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in result.timings.items()))
    print(f"wrote {result.out}/grounding.json, highlight.ply" + (", view_*.png" if config.views else ""))
    return 0
