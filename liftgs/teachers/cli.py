"""``liftgs pseudolabel``: compute and cache 2D pseudo-labels for every frame of a set of scenes.

Examples::

    liftgs pseudolabel --scenes data/synth --teacher synthetic --out data/synth_labels
    liftgs pseudolabel --scenes data/synth --teacher synthetic --noise.merge 0.05 --noise.synonym 0.3 --out ...
    liftgs pseudolabel --scenes data/scannet --teacher samclip --sam-model facebook/sam-vit-huge \\
        --clip-model openai/clip-vit-large-patch14 --out data/scannet_labels
    liftgs pseudolabel ... --shard 1/4            # the second of four shards (any machine)
    torchrun --nproc-per-node 8 -m liftgs.cli pseudolabel ... --device cuda   # 8 GPUs, 8 shards
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from liftgs.teachers.sam import AutoMaskConfig
from liftgs.teachers.synthetic import SyntheticNoise


@dataclass
class PseudolabelConfig:
    """Settings of a pseudo-labelling run (all recorded as provenance in every cache file)."""

    scenes: Path  # dataset root (folders with scene.json) or a single scene folder
    out: Path  # cache root: <out>/<scene_id>/<frame>.safetensors
    teacher: Literal["synthetic", "samclip", "caption"] = "synthetic"
    split: str | None = None  # only the scenes of this split (splits.json); default all
    text_encoder: str = "minilm"  # "minilm", "clip", a folder, or a repo id in the HF cache
    sam_model: str = "facebook/sam-vit-huge"  # folder or HF-cache repo id (samclip / caption)
    clip_model: str = "openai/clip-vit-large-patch14"  # folder or HF-cache repo id (samclip)
    captioner: str = ""  # folder of an image-text-to-text model (caption teacher)
    noise: SyntheticNoise = field(default_factory=SyntheticNoise)  # synthetic teacher imperfections
    sam: AutoMaskConfig = field(default_factory=AutoMaskConfig)  # automatic mask generation
    min_area: int = 1024  # segments below this many pixels at min_area_resolution^2 are dropped
    min_area_resolution: int = 512  # (paper appendix A.1: 1024 px at 512 x 512, scaled by pixel count)
    on_mismatch: Literal["error", "redo"] = "error"  # cached frames made with other settings
    batch_frames: int = 8  # frames labelled together (one text-encoder call)
    device: str = "cpu"
    shard: str | None = None
    """label only this share of the scenes, "i/N" (scene k of the sorted list belongs to shard
    k mod N): run N processes, on as many GPUs or machines, over one --out. Under torchrun the
    command takes RANK/WORLD_SIZE as its shard (and cuda:LOCAL_RANK for --device cuda). Frames
    already cached and verified are skipped, so rerunning a shard resumes it"""
    threads: int = 1
    """torch / numba threads of the command (library calls to ``run`` keep the caller's); 1 is
    fastest for the synthetic teacher's small text batches, 0 = torch's default"""
    progress: bool = True

    def __post_init__(self) -> None:
        from liftgs.runtime import check_device

        check_device(self.device, allow_auto=False)
        if self.min_area < 0:
            raise ValueError(f"--min-area must be >= 0 (0 keeps every segment), got {self.min_area}")
        if self.min_area_resolution <= 0:
            raise ValueError(f"--min-area-resolution must be > 0, got {self.min_area_resolution}")
        if self.threads < 0:
            raise ValueError(f"--threads must be >= 0 (0 = torch's default), got {self.threads}")
        if self.batch_frames < 1:
            raise ValueError(f"--batch-frames must be >= 1, got {self.batch_frames}")
        if self.shard is not None:
            parse_shard(self.shard)
        if self.teacher == "caption" and not self.captioner:
            raise ValueError("--teacher caption needs --captioner PATH (a local image-text-to-text model folder)")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` -> (i, N) with 0 <= i < N; a one-line ``ValueError`` otherwise."""
    parts = str(text).split("/")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        index, count = int(parts[0]), int(parts[1])
        if 0 <= index < count:
            return index, count
    raise ValueError(f"--shard must be i/N with 0 <= i < N (e.g. 0/4), got {text!r}")


def build_teacher(cfg: PseudolabelConfig):
    """The teacher a config asks for, loaded from local files only."""
    from liftgs.text import load_text_encoder

    if cfg.teacher == "synthetic":
        from liftgs.teachers.synthetic import SyntheticTeacher

        return SyntheticTeacher(load_text_encoder(cfg.text_encoder, device=cfg.device), cfg.noise)
    if cfg.teacher == "samclip":
        from liftgs.teachers.samclip import build_samclip_teacher

        return build_samclip_teacher(cfg.sam_model, cfg.clip_model, cfg.sam, device=cfg.device)
    from liftgs.teachers.caption import CaptionTeacher, HFCaptioner
    from liftgs.teachers.sam import SamAutoMaskGenerator
    from liftgs.text import resolve_model

    sam_dir, sam_name = resolve_model(cfg.sam_model, "SAM model")
    segmenter = SamAutoMaskGenerator.from_dir(sam_dir, cfg.sam, device=cfg.device, name=sam_name)
    return CaptionTeacher(segmenter, HFCaptioner.from_dir(cfg.captioner, device=cfg.device),
                          load_text_encoder(cfg.text_encoder, device=cfg.device))


def run(cfg: PseudolabelConfig):
    """Label ``cfg.scenes`` into ``cfg.out``; returns the :class:`RunSummary` (library entry point).

    Runs on the caller's thread settings (``cfg.threads`` is applied by :func:`main` only).
    """
    from liftgs.teachers.pipeline import jobs_from_root, pseudolabel
    from liftgs.teachers.store import PseudoLabelStore

    jobs = jobs_from_root(cfg.scenes, split=cfg.split)
    if cfg.shard is not None:
        index, count = parse_shard(cfg.shard)
        jobs = jobs[index::count]
    teacher = build_teacher(cfg)
    return pseudolabel(jobs, teacher, PseudoLabelStore(cfg.out), area_at_base=cfg.min_area,
                       base_resolution=cfg.min_area_resolution, on_mismatch=cfg.on_mismatch,
                       batch_frames=cfg.batch_frames, progress=cfg.progress)


def launcher_shard(cfg: PseudolabelConfig, environ) -> PseudolabelConfig:
    """Under torchrun (``WORLD_SIZE`` > 1) without ``--shard``: shard RANK/WORLD_SIZE, and
    ``--device cuda`` becomes this process's GPU, cuda:LOCAL_RANK. No process group is needed:
    the shards share nothing but the output folder."""
    from dataclasses import replace

    world = int(environ.get("WORLD_SIZE", "1"))
    if world <= 1 or cfg.shard is not None:
        return cfg
    rank, local = int(environ.get("RANK", "0")), int(environ.get("LOCAL_RANK", "0"))
    device = f"cuda:{local}" if cfg.device == "cuda" else cfg.device
    return replace(cfg, shard=f"{rank}/{world}", device=device)


def main(argv: list[str]) -> int:
    from liftgs.config import parse_cli
    from liftgs.runtime import configure_runtime

    cfg = parse_cli(PseudolabelConfig, argv, prog="liftgs pseudolabel", description=__doc__.split("\n\n")[0])
    cfg = launcher_shard(cfg, os.environ)
    configure_runtime(threads=cfg.threads or None)  # the command owns the process
    summary = run(cfg)  # a bad input raises: `liftgs` prints it on one line
    shard = f", shard {cfg.shard}" if cfg.shard else ""
    print(f"pseudo-labels in {cfg.out} (teacher {cfg.teacher}{shard})")
    print(summary.table())
    return 0
