"""``liftgs synth-qa``: a question-answering set about the synthetic rooms of a dataset root.

    liftgs synth-qa --data data48 --out data48_qa.json [--seed 0] [--per-type 4] [--prior]

Writes one ScanQA-format JSON list holding every split (each entry's ``split`` field), prints
the number of questions per split and type and, with ``--prior``, the answer-prior baseline
(most frequent training answer per question type) scored on the other splits.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from liftgs.config import parse_cli

__all__ = ["SynthQAArgs", "main"]


@dataclass
class SynthQAArgs:
    """Generate questions and answers (counting, color, existence, size, relation) about synthetic rooms."""

    data: Path  # dataset root made by `liftgs synth` (scene folders, splits.json)
    out: Path  # the ScanQA-format JSON file to write
    seed: int = 0  # same seed and rooms -> the same questions
    per_type: int = 4  # at most this many questions of each type per room (existence: half yes, half no)
    prior: bool = False  # also score the answer-prior baseline on the non-train splits (needs Java for METEOR)
    overwrite: bool = False  # replace an existing --out file
    progress: bool = True  # show a progress bar over rooms

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"--seed {self.seed}: use a non-negative seed")
        if self.per_type < 1:
            raise ValueError(f"--per-type must be >= 1, got {self.per_type}")
        if self.out.exists() and (self.out.is_dir() or not self.overwrite):
            raise FileExistsError(f"{self.out} exists; choose another --out"
                                  + ("" if self.out.is_dir() else " or pass --overwrite"))


def main(argv: list[str]) -> int:
    from liftgs.vqa.baseline import answer_prior, prior_predictions
    from liftgs.vqa.data import write_scanqa
    from liftgs.vqa.metrics import java_executable, score_answers
    from liftgs.vqa.synth import QUESTION_TYPES, generate_qa

    args = parse_cli(SynthQAArgs, argv, prog="liftgs synth-qa", description=SynthQAArgs.__doc__)
    if args.prior:
        java_executable()  # before any work: one line naming what to install
    items = generate_qa(args.data, seed=args.seed, per_type=args.per_type, progress=args.progress)
    write_scanqa(args.out, items)
    by_split = Counter(it.split for it in items)
    print(f"wrote {len(items)} questions about {len({it.scene_id for it in items})} rooms to {args.out} ("
          + ", ".join(f"{s} {n}" for s, n in sorted(by_split.items())) + ")")
    types = Counter(it.question_type for it in items)
    print("by type: " + ", ".join(f"{t} {types[t]}" for t in QUESTION_TYPES))
    if args.prior:
        train = [it for it in items if it.split == "train"]
        if not train:
            raise ValueError(f"--prior: {args.data} has no train split to take the answer prior from")
        prior = answer_prior(train)
        print("answer prior (train): " + ", ".join(f"{t}: {a!r}" for t, a in prior.items() if t))
        for split in sorted(s for s in by_split if s != "train"):
            held = [it for it in items if it.split == split]
            scores = score_answers(held, prior_predictions(held, prior))
            print(f"\nanswer-prior baseline on {split}:\n{scores.to_markdown()}")
    return 0
