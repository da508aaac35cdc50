"""``liftgs answer SCENE "question"``: answer a question about a scene with a GenSplat stage-III model.

SCENE is a scene directory with posed frames; its 3D Gaussian reconstruction is
``<recon>/<scene_id>/gaussians.ply`` (``liftgs recon``). Frames are chosen for the question
(GAFS with ``--frames RUN``, a ``liftgs gensplat-frames`` run; evenly spaced otherwise), the
reasoner reads them with the question, and its most probable answers from the model's answer
vocabulary are printed best first, with the frames it looked at; ``--json FILE`` also writes
them.

    liftgs answer data/room0 "what colour is the chair?" --checkpoint runs/gs3 --recon recon \\
        --frames runs/gafs --top 5 --json answer.json
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from liftgs.config import name_positional, parse_cli


@dataclass
class AnswerConfig:
    """Answer a question about a scene with a GenSplat stage-III model."""

    scene: Path
    """scene directory (posed frames; `liftgs convert` / `liftgs synth` output)"""
    question: str
    """the question, e.g. "what colour is the chair?" """
    checkpoint: Path | None = None
    """a `liftgs gensplat-language` run or its model/ folder (required)"""
    recon: Path | None = None
    """reconstruction root holding <recon>/<scene_id>/gaussians.ply (`liftgs recon`; required)"""
    frames: Path | None = None
    """a `liftgs gensplat-frames` run (GAFS scorer) choosing the frames; without it, evenly spaced frames"""
    top: int = 5
    """answers to list, best first"""
    json: Path | None = None
    """also write the question, answers and frames to this JSON file"""
    num_views: int | None = None
    """frames the reasoner reads (default: the model's)"""
    cache: Path | None = None
    """scene-feature cache folder (default: computed in memory, nothing kept)"""
    text_encoder: str | None = None
    """text encoder of the GAFS scorer (default: the frames run's, else MiniLM)"""
    device: str = "cpu"

    def __post_init__(self) -> None:
        from liftgs.runtime import check_device

        check_device(self.device, allow_auto=False)
        if not self.question or not self.question.strip():
            raise ValueError("the question is empty: ask something, e.g. \"what colour is the chair?\"")
        if self.checkpoint is None:
            raise ValueError("--checkpoint RUN is required (a `liftgs gensplat-language` run or its model/ folder)")
        if self.recon is None:
            raise ValueError("--recon DIR is required (the reconstruction root: DIR/<scene_id>/gaussians.ply, "
                             "`liftgs recon` output)")
        if self.top < 1:
            raise ValueError(f"--top must be >= 1, got {self.top}")
        if self.num_views is not None and self.num_views < 1:
            raise ValueError(f"--num-views must be >= 1, got {self.num_views}")


@dataclass
class AnswerOutput:
    question: str
    scene_id: str
    answers: list[str]  # best first
    frames: list[int]  # frame indices the reasoner read
    frame_selection: str  # "gafs" or "uniform"
    timings: dict[str, float]

    def to_dict(self) -> dict:
        return {"question": self.question, "scene_id": self.scene_id, "answers": self.answers,
                "frames": self.frames, "frame_selection": self.frame_selection}


def run_answer(config: AnswerConfig, model=None, text_encoder=None) -> AnswerOutput:
    """Check the inputs, load, answer; writes ``config.json`` when given. ``model`` (a loaded
    GenSplatLanguage) and ``text_encoder`` (for GAFS) skip loading."""
    from liftgs.eval.gensplat_language import answer_questions
    from liftgs.ground import Timer, load_gensplat_scene

    timer = Timer()
    gs = load_gensplat_scene(config.scene, config.checkpoint, config.recon, config.question, config.frames,
                             config.cache, config.text_encoder, config.num_views, config.device, timer,
                             model=model, encoder=text_encoder)
    with timer("model"):
        answers = answer_questions(gs.model, gs.feats, [config.question], [gs.frames], top=config.top)[0]
    result = AnswerOutput(config.question, gs.scene_id, answers, gs.frames.tolist(), gs.selection, timer.timings)
    if config.json is not None:
        from liftgs.files import atomic_write

        with atomic_write(config.json) as fh:
            fh.write(json.dumps({**result.to_dict(), "scene": str(config.scene),
                                 "checkpoint": str(config.checkpoint)}, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    argv = name_positional(list(sys.argv[1:] if argv is None else argv), "--scene", "--question")
    config = parse_cli(AnswerConfig, argv, prog="liftgs answer", description=__doc__.split("\n\n")[0])
    result = run_answer(config)  # a bad input raises: `liftgs` prints it on one line
    print(f"{config.question!r} ({result.scene_id}):")
    for rank, answer in enumerate(result.answers, 1):
        print(f"  {rank}. {answer}")
    print(f"frames ({result.frame_selection}): " + ", ".join(map(str, result.frames)))
    print("latency: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in result.timings.items()))
    if config.json is not None:
        print(f"wrote {config.json}")
    return 0
