"""``liftgs demo``: LIFT-GS on the built-in synthetic benchmark, end to end.

The quick demo (``--quick``, what ``make demo`` runs) uses the weights shipped with the package
(:mod:`liftgs.weights`):

1. generate held-out rooms no model has seen (RGB-D scans with instance labels and language);
2. zero-shot: ground each object's caption with the pre-trained model (2D supervision only,
   paper Sec 3.4) against a random-object baseline;
3. ground every referring expression and run the open-vocabulary instance-segmentation protocol
   with the fine-tuned model, again against a random object;
4. train briefly (fine-tuning from scratch on a few rooms) to show the loss falling;
5. write ``report.md``: tables, a grid of grounded expressions (hits and misses), the loss curve.

The full demo (without ``--quick``, ``make demo-full``) makes those weights: it generates the
pre-training and fine-tuning rooms, pseudo-labels the first with the synthetic teacher made
imperfect like real 2D models, pre-trains on the 2D pseudo-labels alone, fine-tunes on 3D labels,
evaluates both on the held-out rooms, trains the scratch-vs-pre-trained comparison at several
data fractions (paper Fig 7) and writes the same report with the curves. ``--export-weights
DIR`` copies the two trained models into ``DIR`` (``liftgs/weights`` replaces the shipped ones).

Every stage reuses what an earlier run left in ``--out`` (rooms, labels, finished runs), so an
interrupted demo continues where it stopped.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from liftgs.config import parse_cli, save_json_atomic
from liftgs.weights import FINETUNED, PRETRAINED

__all__ = ["DemoConfig", "DemoPlan", "run_demo", "main"]


@dataclass
class DemoPlan:
    """The numbers of one demo size.

    Room sets are generated from different seeds, so the held-out rooms share no room with the
    training sets. ``train_seed`` seeds the pre-training and fine-tuning runs: seed 4 had the
    best zero-shot accuracy of seeds 0-4 with this recipe (3.9x random vs 3.2-3.9x, README)."""

    heldout_rooms: int
    pretrain_rooms: int = 48
    finetune_rooms: int = 240
    pretrain_steps: int = 900
    finetune_steps: int = 1000
    curve_steps: int = 150  # each run of the scratch-vs-pre-trained comparison
    fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    brief_steps: int = 30  # quick demo: the short training run whose loss is plotted (batch 1)
    brief_rooms: int = 4
    pretrain_seed: int = 0  # room-set seeds
    finetune_seed: int = 1
    heldout_seed: int = 7
    train_seed: int = 4


PLANS = {"quick": DemoPlan(heldout_rooms=12), "full": DemoPlan(heldout_rooms=30)}


@dataclass
class DemoConfig:
    """End-to-end demo on the synthetic benchmark: shipped weights (--quick) or the full run that trains them."""

    out: Path = Path("runs/demo")
    """everything goes here; an existing run is reused stage by stage"""
    quick: bool = False
    """ground held-out rooms with the shipped weights and train briefly (minutes); without it the
    full demo trains the weights itself (the command that made the shipped ones)"""
    export_weights: Path | None = None
    """full demo: copy the pre-trained and fine-tuned models into this folder (liftgs/weights
    replaces the shipped weights)"""
    weights: Path | None = None
    """quick demo: a folder holding liftgs-tiny-pretrained/ and liftgs-tiny-finetuned/ (default:
    the shipped weights)"""
    heldout_rooms: int | None = None
    """override the number of held-out rooms"""
    pretrain_rooms: int | None = None
    finetune_rooms: int | None = None
    pretrain_steps: int | None = None
    finetune_steps: int | None = None
    curve_steps: int | None = None
    """steps of each scratch-vs-pre-trained run (full demo)"""
    brief_steps: int | None = None
    """steps of the quick demo's short training run"""
    fractions: tuple[float, ...] | None = None
    """fine-tuning data fractions of the comparison (paper Fig 7)"""
    noise: float = 0.15
    """strength of the synthetic teacher's imperfections (0 = perfect labels)"""
    room_preset: Literal["standard", "quick"] = "standard"
    """synthetic room preset: standard (the benchmark) or quick (small rooms, for smoke tests)"""
    device: str = "auto"
    threads: int = 1
    """torch / numba threads of the command (library calls to ``run_demo`` keep the caller's);
    one was fastest on the 2-core reference machine"""
    fresh: bool = False
    """delete --out first instead of reusing it"""

    def __post_init__(self) -> None:
        from liftgs.runtime import check_device

        check_device(self.device)
        if self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        for name in ("pretrain_rooms", "finetune_rooms"):
            value = getattr(self, name)
            if value is not None and value < 5:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 5 (train and val splits need rooms), "
                                 f"got {value}")
        if self.heldout_rooms is not None and self.heldout_rooms < 1:
            raise ValueError(f"--heldout-rooms must be >= 1, got {self.heldout_rooms}")
        for name in ("pretrain_steps", "finetune_steps", "curve_steps", "brief_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"--noise must be in [0, 1], got {self.noise}")
        for f in self.fractions or ():
            if not 0.0 < f <= 1.0:
                raise ValueError(f"--fractions must lie in (0, 1], got {f}")
        if self.quick and self.export_weights is not None:
            raise ValueError("--export-weights needs the full demo (it trains the weights); drop --quick")
        if not self.quick and self.weights is not None:
            raise ValueError("--weights is for --quick (the full demo trains its own)")

    def plan(self) -> DemoPlan:
        base = PLANS["quick" if self.quick else "full"]
        given = {k: getattr(self, k) for k in ("heldout_rooms", "pretrain_rooms", "finetune_rooms",
                                                "pretrain_steps", "finetune_steps", "curve_steps",
                                                "brief_steps", "fractions")}
        return replace(base, **{k: (tuple(v) if k == "fractions" else v) for k, v in given.items() if v is not None})


@dataclass
class DemoState:
    config: DemoConfig
    plan: DemoPlan
    timings: dict[str, float] = field(default_factory=dict)
    results: dict = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return Path(self.config.out)


class _Stages:
    """Numbered stage headers with their durations."""

    def __init__(self, state: DemoState, total: int):
        self.state, self.total, self.n = state, total, 0

    def __call__(self, name: str):
        self.n += 1
        print(f"\n== {self.n}/{self.total} {name} ==", flush=True)
        t0 = time.perf_counter()

        def done() -> None:
            self.state.timings[name] = time.perf_counter() - t0
            print(f"   {name}: {self.state.timings[name]:.0f} s", flush=True)

        return done


def _rooms(state: DemoState, folder: Path, count: int, seed: int) -> Path:
    """``count`` rooms of the demo's preset from ``seed`` in ``folder`` (reused when already there)."""
    from liftgs.synth.config import PRESETS
    from liftgs.synth.dataset import generate_dataset

    splits = json.loads((folder / "splits.json").read_text()) if (folder / "splits.json").is_file() else {}
    meta = folder / "synth.json"
    preset = PRESETS[state.config.room_preset]
    same = meta.is_file() and json.loads(meta.read_text()).get("seed") == seed
    same = same and json.loads(meta.read_text()).get("config", {}).get("width") == preset.width
    if sum(len(v) for v in splits.values()) == count and same:
        print(f"   reusing {folder}")
    else:
        generate_dataset(preset, folder, count, seed=seed, overwrite=True)
    return folder


def teacher_noise(strength: float, seed: int):
    """The synthetic teacher's imperfection knobs scaled by one number (0 = perfect)."""
    from liftgs.teachers.synthetic import SyntheticNoise

    s = strength
    return SyntheticNoise(drop_attribute=s, swap_attribute=s / 3, synonym=s, paraphrase=s,
                          merge=s / 3, split=s / 3, edge=s, drop_small=s, seed=seed)


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
        shutil.rmtree(aside, ignore_errors=True)
        run.rename(aside)
        print(f"   {run.name}: trained with other settings; moved to {aside.name} and training again")
        return False
    return True


# ---------------------------------------------------------------------------- training (full)


def stage_labels(state: DemoState, data: Path) -> Path:
    from liftgs.teachers.cli import PseudolabelConfig, run

    labels = state.out / "labels"
    cfg = PseudolabelConfig(scenes=data, out=labels, teacher="synthetic", split="train",
                            noise=teacher_noise(state.config.noise, 0), on_mismatch="redo")
    print(run(cfg).table())
    return labels


def stage_pretrain(state: DemoState, data: Path, labels: Path) -> Path:
    from liftgs.recipes.pretrain import PretrainConfig, run_pretrain

    plan, run = state.plan, state.out / "pretrain"
    if _run_done(run, "pretrain", steps=plan.pretrain_steps, seed=plan.train_seed):
        print(f"   reusing {run}")
    else:
        run_pretrain(PretrainConfig(data=data, labels=labels, out=run, steps=plan.pretrain_steps, batch_size=1,
                                    seed=plan.train_seed, resume=(run / "checkpoints").is_dir(), ckpt_every=100,
                                    device=state.config.device))
    return run / "model"


def _finetune(state: DemoState, run: Path, data: Path, init: Path | None, steps: int, fraction: float,
              encoder, batch_size: int = 2) -> Path:
    from liftgs.recipes.finetune import FinetuneConfig, run_finetune

    if _run_done(run, "finetune", steps=steps, data_fraction=fraction, seed=state.plan.train_seed,
                 init=None if init is None else str(init)):
        print(f"   reusing {run}")
    else:
        print(f"   -> {run.name}", flush=True)
        run_finetune(FinetuneConfig(data=data, out=run, init=init, data_fraction=fraction, steps=steps,
                                    batch_size=batch_size, seed=state.plan.train_seed, log_every=5,
                                    resume=(run / "checkpoints").is_dir(), ckpt_every=100,
                                    device=state.config.device), text_encoder=encoder)
    return run / "model"


def stage_curves(state: DemoState, data: Path, heldout: Path, pretrained: Path, encoder) -> None:
    """Fine-tuning from scratch vs from the pre-trained weights at each data fraction."""
    plan = state.plan
    rows = state.results["finetune"] = []
    for frac in plan.fractions:
        for init_name, init in (("scratch", None), ("pretrained", pretrained)):
            model = _finetune(state, state.out / f"curve_{init_name}_{frac:g}", data, init, plan.curve_steps,
                              frac, encoder)
            metrics = evaluate_model(heldout, model, encoder)
            rows.append({"init": init_name, "fraction": frac, **metrics})
            print(f"   {init_name:10s} {frac:>5g}: AP {metrics['ap']:.3f} AP50 {metrics['ap50']:.3f} "
                  f"AP25 {metrics['ap25']:.3f}  Acc@0.25 {metrics['acc@0.25']:.3f} "
                  f"Acc@0.5 {metrics['acc@0.5']:.3f}", flush=True)


def export_weights(models: dict[str, Path], dest: Path) -> None:
    """Copy each model folder to ``dest/<name>`` with the config.json of the run that trained
    it (``run_config.json``: recipe, settings, data statistics, which ``liftgs ground`` reads),
    written beside and renamed into place."""
    from liftgs.models.provenance import RUN_CONFIG_COPY, run_configs

    dest.mkdir(parents=True, exist_ok=True)
    for name, src in models.items():
        run_config = next(run_configs(src), None)
        if run_config is None:
            raise ValueError(f"{src}: no config.json of the run that trained it (run/model or "
                             "run/checkpoints/step_N/model)")
        tmp = dest / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for f in ("config.json", "model.safetensors"):
            shutil.copy2(src / f, tmp / f)
        save_json_atomic(tmp / RUN_CONFIG_COPY, run_config)
        target = dest / name
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
        print(f"   {name}: {target}")


# ---------------------------------------------------------------------------- evaluation


def _scenes(data: Path):
    from liftgs.io import list_scenes, read_scene

    return [read_scene(p, load_frames=False) for p in list_scenes(data)]


def _grounder(model_dir: Path, encoder, rank_by: str = "tokens"):
    from liftgs.eval.runner import ModelGrounder
    from liftgs.models import load_model

    return ModelGrounder(load_model(model_dir).eval(), encoder, top_k=10, rank_by=rank_by)


def stage_zero_shot(state: DemoState, heldout: Path, model_dir: Path, encoder) -> None:
    from liftgs.eval.zeroshot import zero_shot_caption_accuracy
    from liftgs.models.liftgs.inference import ZERO_SHOT_RANKING

    res = zero_shot_caption_accuracy(_scenes(heldout), _grounder(model_dir, encoder, ZERO_SHOT_RANKING))
    state.results["zero_shot"] = res
    m, r = res["model"], res["random"]
    print(f"   pre-trained: Acc@0.25 {m['acc@0.25']:.3f}  Acc@0.5 {m['acc@0.5']:.3f}   "
          f"random object: Acc@0.25 {r['acc@0.25']:.3f}  Acc@0.5 {r['acc@0.5']:.3f}   (n = {m['n']})")


def evaluate_model(heldout: Path, model_dir: Path, encoder) -> dict:
    """Instance AP (every category name of the held-out rooms as a query) and Acc@IoU of the
    referring expressions, with the random-object baseline of the latter."""
    from liftgs.eval.cli import load_class_set
    from liftgs.eval.runner import evaluate_scenes
    from liftgs.eval.zeroshot import random_expression_accuracy
    from liftgs.io import list_scenes

    scenes = _scenes(heldout)
    classes = load_class_set("data", list_scenes(heldout))
    res = evaluate_scenes(scenes, _grounder(model_dir, encoder), classes, ("instseg", "grounding"),
                          vocabulary="all", num_scenes=len(scenes))
    summary = res.instseg.summary()
    acc = res.accuracy["overall"]
    rand = random_expression_accuracy(scenes)
    return {"ap": summary["ap"], "ap50": summary["ap50"], "ap25": summary["ap25"],
            "acc@0.25": acc["acc@0.25"], "acc@0.5": acc["acc@0.5"], "n_expressions": acc["n"],
            "random_acc@0.25": rand["acc@0.25"], "random_acc@0.5": rand["acc@0.5"]}


def stage_finetuned_eval(state: DemoState, heldout: Path, model_dir: Path, encoder) -> None:
    m = state.results["finetuned"] = evaluate_model(heldout, model_dir, encoder)
    print(f"   fine-tuned: AP {m['ap']:.3f} AP50 {m['ap50']:.3f} AP25 {m['ap25']:.3f}   "
          f"Acc@0.25 {m['acc@0.25']:.3f} Acc@0.5 {m['acc@0.5']:.3f} (n = {m['n_expressions']})   "
          f"random object: Acc@0.25 {m['random_acc@0.25']:.3f}")


def stage_brief_training(state: DemoState, encoder) -> None:
    """A short fine-tuning run from scratch on a few rooms; its loss curve goes in the report."""
    plan = state.plan
    rooms = _rooms(state, state.out / "brief_rooms", plan.brief_rooms, plan.pretrain_seed)
    run = state.out / "brief_training"
    _finetune(state, run, rooms, None, plan.brief_steps, 1.0, encoder, batch_size=1)
    state.results["brief_training"] = {"run": run.name, "steps": plan.brief_steps, "rooms": plan.brief_rooms}


# ---------------------------------------------------------------------------- the demo


def _shipped(config: DemoConfig) -> dict[str, Path]:
    from liftgs.weights import shipped_model_dir

    if config.weights is None:
        return {name: shipped_model_dir(name) for name in (PRETRAINED, FINETUNED)}
    found = {name: Path(config.weights) / name for name in (PRETRAINED, FINETUNED)}
    missing = [str(p) for p in found.values() if not (p / "config.json").is_file()]
    if missing:
        raise ValueError(f"--weights {config.weights}: no model folder {', '.join(missing)}")
    return found


def run_demo(config: DemoConfig) -> Path:
    """Run every stage; returns the path of ``report.md``."""
    from liftgs.demo_report import write_report
    from liftgs.text import load_text_encoder

    models = _shipped(config) if config.quick else None  # checked before any work
    if config.fresh and Path(config.out).exists():
        shutil.rmtree(config.out)
    state = DemoState(config, config.plan())
    plan = state.plan
    stage = _Stages(state, 5 if config.quick else 9)
    t0 = time.perf_counter()
    done = stage(f"held-out rooms ({plan.heldout_rooms}, never trained on)")
    heldout = _rooms(state, state.out / "heldout", plan.heldout_rooms, plan.heldout_seed)
    done()
    encoder = load_text_encoder("minilm")
    if not config.quick:
        done = stage(f"pre-training rooms ({plan.pretrain_rooms}) and fine-tuning rooms ({plan.finetune_rooms})")
        pre_data = _rooms(state, state.out / "pretrain_rooms", plan.pretrain_rooms, plan.pretrain_seed)
        ft_data = _rooms(state, state.out / "finetune_rooms", plan.finetune_rooms, plan.finetune_seed)
        done()
        done = stage("pseudo-labels of the pre-training rooms (synthetic teacher, imperfect)")
        labels = stage_labels(state, pre_data)
        done()
        done = stage(f"pre-training with 2D render supervision ({plan.pretrain_steps} steps)")
        pretrained = stage_pretrain(state, pre_data, labels)
        done()
        done = stage(f"fine-tuning the pre-trained model on 3D labels ({plan.finetune_steps} steps)")
        finetuned = _finetune(state, state.out / "finetune", ft_data, pretrained, plan.finetune_steps, 1.0, encoder)
        done()
        models = {PRETRAINED: pretrained, FINETUNED: finetuned}
    state.results["models"] = {k: str(v) for k, v in models.items()}
    done = stage("zero-shot grounding of held-out object captions (pre-trained model)")
    stage_zero_shot(state, heldout, models[PRETRAINED], encoder)
    done()
    done = stage("referring expressions and instance segmentation (fine-tuned model)")
    stage_finetuned_eval(state, heldout, models[FINETUNED], encoder)
    done()
    if config.quick:
        done = stage(f"a short training run from scratch ({plan.brief_steps} steps, {plan.brief_rooms} rooms)")
        stage_brief_training(state, encoder)
        done()
    else:
        done = stage(f"fine-tuning from scratch vs pre-trained at fractions {list(plan.fractions)} "
                     f"({plan.curve_steps} steps each)")
        stage_curves(state, ft_data, heldout, pretrained, encoder)
        done()
        if config.export_weights is not None:
            export_weights(models, Path(config.export_weights))
    done = stage("report")
    try:
        report = write_report(state, heldout, models, encoder)  # ExampleRenderError: report written, demo fails
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
