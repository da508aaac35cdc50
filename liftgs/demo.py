"""``liftgs demo``: the whole LIFT-GS story on the built-in synthetic benchmark.

1. generate synthetic rooms (or reuse them) — RGB-D scans with instance labels and language;
2. pseudo-label every training frame with the synthetic teacher, made imperfect like real 2D
   models (dropped / swapped attributes, synonyms, merged and split segments, ragged edges);
3. pre-train with 2D render supervision only (paper Sec 3.2) — no 3D labels;
4. zero-shot: ground each held-out object's caption with the pre-trained model (Sec 3.4);
5. fine-tune with 3D labels from scratch and from the pre-trained weights at several data
   fractions (paper Fig 7), evaluate each (instance AP, Acc@0.25/0.5);
6. write ``report.md`` with the tables, the data-scaling plot and rendered examples.

Every stage reuses what an earlier run left in ``--out`` (rooms, labels, finished runs), so an
interrupted demo continues where it stopped. ``--quick`` is the few-minute version.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from liftgs.config import parse_cli, save_json_atomic

__all__ = ["DemoConfig", "DemoPlan", "run_demo", "main"]


@dataclass
class DemoPlan:
    """The numbers of one demo size (the stages are the same for every size)."""

    rooms: int
    pretrain_steps: int
    finetune_steps: int
    eval_scenes: int
    fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    batch_size: int = 1


# Sized for a small CPU with one thread: the quick plan is meant to finish in minutes, the
# full one within an hour.
PLANS = {
    "quick": DemoPlan(rooms=16, pretrain_steps=100, finetune_steps=20, eval_scenes=3),
    "full": DemoPlan(rooms=60, pretrain_steps=600, finetune_steps=100, eval_scenes=10),
}


@dataclass
class DemoConfig:
    """End-to-end demo: synth -> pseudo-labels -> pre-train -> fine-tune x fractions -> report."""

    out: Path = Path("runs/demo")
    """everything goes here; an existing run is reused stage by stage"""
    quick: bool = False
    """the few-minute version (fewer rooms and steps); without it the full-size demo runs"""
    rooms: int | None = None
    """override the number of generated rooms"""
    pretrain_steps: int | None = None
    finetune_steps: int | None = None
    fractions: tuple[float, ...] | None = None
    """fine-tuning data fractions (paper Fig 7)"""
    noise: float = 0.15
    """strength of the synthetic teacher's imperfections (0 = perfect labels)"""
    seed: int = 0
    device: str = "auto"
    threads: int = 1
    """torch / numba threads of the command (library calls to ``run_demo`` keep the caller's);
    one was fastest on the 2-core reference machine"""
    fresh: bool = False
    """delete --out first instead of reusing it"""

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        if self.rooms is not None and self.rooms < 5:
            raise ValueError(f"--rooms must be >= 5 (train and val splits need rooms), got {self.rooms}")
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"--noise must be in [0, 1], got {self.noise}")
        for f in self.fractions or ():
            if not 0.0 < f <= 1.0:
                raise ValueError(f"--fractions must lie in (0, 1], got {f}")

    def plan(self) -> DemoPlan:
        base = PLANS["quick" if self.quick else "full"]
        return DemoPlan(rooms=self.rooms or base.rooms,
                        pretrain_steps=self.pretrain_steps or base.pretrain_steps,
                        finetune_steps=self.finetune_steps or base.finetune_steps,
                        eval_scenes=base.eval_scenes, fractions=tuple(self.fractions or base.fractions),
                        batch_size=base.batch_size)


@dataclass
class DemoState:
    config: DemoConfig
    plan: DemoPlan
    timings: dict[str, float] = field(default_factory=dict)
    results: dict = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return Path(self.config.out)


def _stage(state: DemoState, name: str):
    """Print a stage header; return a callback recording its duration."""
    print(f"\n== {name} ==", flush=True)
    t0 = time.perf_counter()

    def done() -> None:
        state.timings[name] = time.perf_counter() - t0
        print(f"   {name}: {state.timings[name]:.0f} s", flush=True)

    return done


def stage_data(state: DemoState) -> Path:
    from liftgs.synth.config import PRESETS
    from liftgs.synth.dataset import generate_dataset

    data = state.out / "data"
    done = _stage(state, f"1/6 synthetic rooms ({state.plan.rooms})")
    splits = json.loads((data / "splits.json").read_text()) if (data / "splits.json").is_file() else {}
    if sum(len(v) for v in splits.values()) == state.plan.rooms:
        print(f"   reusing {data}")
    else:
        generate_dataset(PRESETS["standard"], data, state.plan.rooms, seed=state.config.seed, overwrite=True)
    done()
    return data


def teacher_noise(strength: float, seed: int):
    """The synthetic teacher's imperfection knobs scaled by one number (0 = perfect)."""
    from liftgs.teachers.synthetic import SyntheticNoise

    s = strength
    return SyntheticNoise(drop_attribute=s, swap_attribute=s / 3, synonym=s, paraphrase=s,
                          merge=s / 3, split=s / 3, edge=s, drop_small=s, seed=seed)


def stage_labels(state: DemoState, data: Path) -> Path:
    from liftgs.teachers.cli import PseudolabelConfig, run

    labels = state.out / "labels"
    done = _stage(state, "2/6 pseudo-labels (synthetic teacher, imperfect)")
    cfg = PseudolabelConfig(scenes=data, out=labels, teacher="synthetic", split="train",
                            noise=teacher_noise(state.config.noise, state.config.seed), on_mismatch="redo")
    summary = run(cfg)
    print(summary.table())
    done()
    return labels


def _run_done(run: Path, recipe: str | None = None, **expected) -> bool:
    """True when ``run`` holds final weights trained with ``expected`` settings. A run left
    by a demo of another size (different steps, fraction, seed...) is moved aside so that
    it is trained again, not silently reused."""
    if not (run / "model" / "config.json").is_file():
        return False
    if recipe is None:
        return True
    try:
        saved = json.loads((run / "config.json").read_text()).get(recipe, {})
    except (OSError, ValueError):
        saved = None
    stale = saved is None or any(saved.get(k) != v for k, v in expected.items())
    if stale:
        aside = run.with_name(run.name + ".stale")
        import shutil

        shutil.rmtree(aside, ignore_errors=True)
        run.rename(aside)
        print(f"   {run.name}: trained with other settings; moved to {aside.name} and training again")
        return False
    return True


def stage_pretrain(state: DemoState, data: Path, labels: Path) -> Path:
    from liftgs.recipes.pretrain import PretrainConfig, run_pretrain

    run = state.out / "pretrain"
    done = _stage(state, f"3/6 pre-training with 2D render supervision ({state.plan.pretrain_steps} steps)")
    if _run_done(run, "pretrain", steps=state.plan.pretrain_steps, seed=state.config.seed):
        print(f"   reusing {run}")
    else:
        run_pretrain(PretrainConfig(data=data, labels=labels, out=run, steps=state.plan.pretrain_steps,
                                    batch_size=state.plan.batch_size, seed=state.config.seed,
                                    resume=(run / "checkpoints").is_dir(), ckpt_every=100,
                                    device=state.config.device))
    done()
    return run / "model"


def _grounder(model_dir: Path, encoder, rank_by: str = "tokens"):
    from liftgs.eval.runner import ModelGrounder
    from liftgs.models.liftgs import LiftGS

    return ModelGrounder(LiftGS.from_pretrained(model_dir).eval(), encoder, top_k=10,
                         rank_by=rank_by)


def _val_scenes(state: DemoState, data: Path):
    from liftgs.io import list_scenes, read_scene

    paths = list_scenes(data, "val")[: state.plan.eval_scenes]
    return [read_scene(p, load_frames=False) for p in paths]


def stage_zero_shot(state: DemoState, data: Path, model_dir: Path, encoder) -> None:
    from liftgs.eval.zeroshot import zero_shot_caption_accuracy

    done = _stage(state, "4/6 zero-shot grounding of held-out object captions")
    scenes = _val_scenes(state, data)
    state.results["eval_scenes"] = [s.scene_id for s in scenes]
    from liftgs.models.liftgs.inference import ZERO_SHOT_RANKING

    res = zero_shot_caption_accuracy(scenes, _grounder(model_dir, encoder, ZERO_SHOT_RANKING))
    state.results["zero_shot"] = res
    m, r = res["model"], res["random"]
    print(f"   pre-trained: Acc@0.25 {m['acc@0.25']:.3f}  Acc@0.5 {m['acc@0.5']:.3f}   "
          f"random object: Acc@0.25 {r['acc@0.25']:.3f}  Acc@0.5 {r['acc@0.5']:.3f}   (n = {m['n']})")
    done()


def evaluate_model(state: DemoState, data: Path, model_dir: Path, encoder) -> dict:
    from liftgs.eval.cli import load_class_set
    from liftgs.eval.runner import evaluate_scenes
    from liftgs.io import list_scenes

    scenes = _val_scenes(state, data)
    classes = load_class_set("data", list_scenes(data, "val")[: state.plan.eval_scenes])
    res = evaluate_scenes(scenes, _grounder(model_dir, encoder), classes, ("instseg", "grounding"),
                          vocabulary="all", num_scenes=len(scenes))
    summary = res.instseg.summary()
    acc = res.accuracy["overall"]
    return {"ap": summary["ap"], "ap50": summary["ap50"], "ap25": summary["ap25"],
            "acc@0.25": acc["acc@0.25"], "acc@0.5": acc["acc@0.5"], "n_expressions": acc["n"]}


def stage_finetune(state: DemoState, data: Path, pretrained: Path, encoder) -> None:
    from liftgs.recipes.finetune import FinetuneConfig, run_finetune

    plan = state.plan
    done = _stage(state, f"5/6 fine-tuning with 3D labels: scratch vs pre-trained x fractions "
                         f"{list(plan.fractions)} ({plan.finetune_steps} steps each)")
    rows = state.results.setdefault("finetune", [])
    for frac in plan.fractions:
        for init_name, init in (("scratch", None), ("pretrained", pretrained)):
            run = state.out / f"finetune_{init_name}_{frac:g}"
            if not _run_done(run, "finetune", steps=plan.finetune_steps, data_fraction=frac,
                             seed=state.config.seed):
                print(f"   -> {run.name}", flush=True)
                run_finetune(FinetuneConfig(data=data, out=run, init=init, data_fraction=frac,
                                            steps=plan.finetune_steps, batch_size=plan.batch_size,
                                            seed=state.config.seed, resume=(run / "checkpoints").is_dir(),
                                            ckpt_every=100, device=state.config.device), text_encoder=encoder)
            metrics = evaluate_model(state, data, run / "model", encoder)
            rows.append({"init": init_name, "fraction": frac, **metrics})
            print(f"   {init_name:10s} {frac:>5g}: AP {metrics['ap']:.3f} AP50 {metrics['ap50']:.3f} "
                  f"AP25 {metrics['ap25']:.3f}  Acc@0.25 {metrics['acc@0.25']:.3f} "
                  f"Acc@0.5 {metrics['acc@0.5']:.3f}", flush=True)
    done()


def run_demo(config: DemoConfig) -> Path:
    """Run every stage; returns the path of ``report.md``."""
    import shutil

    from liftgs.demo_report import write_report
    from liftgs.text import load_text_encoder

    if config.fresh and Path(config.out).exists():
        shutil.rmtree(config.out)
    state = DemoState(config, config.plan())
    t0 = time.perf_counter()
    data = stage_data(state)
    labels = stage_labels(state, data)
    pretrained = stage_pretrain(state, data, labels)
    encoder = load_text_encoder("minilm")
    stage_zero_shot(state, data, pretrained, encoder)
    stage_finetune(state, data, pretrained, encoder)
    done = _stage(state, "6/6 report")
    try:
        report = write_report(state, data, encoder)  # ExampleRenderError: report written, demo fails
    finally:  # the numbers are kept either way
        done()
        state.timings["total"] = time.perf_counter() - t0
        save_json_atomic(state.out / "results.json", {"plan": state.plan.__dict__, "results": state.results,
                                                      "timings": state.timings})
    print(f"\nreport: {report}  (total {state.timings['total'] / 60:.1f} min)")
    return report


def main(argv: list[str] | None = None) -> int:
    from liftgs.runtime import configure_runtime

    argv = list(sys.argv[1:] if argv is None else argv)
    config = parse_cli(DemoConfig, argv, prog="liftgs demo", description=__doc__.split("\n\n")[0])
    configure_runtime(threads=config.threads)  # the command owns the process
    run_demo(config)
    return 0
