"""``report.md`` of ``liftgs demo``: tables, the data-scaling plot (paper Fig 7) and examples."""

from __future__ import annotations

import math
from pathlib import Path

class ExampleRenderError(RuntimeError):
    """The examples of ``report.md`` could not be rendered. The report was still written, with
    the error at its top, so the tables of a long run are not lost; the demo then fails."""


METRICS = (("ap", "AP"), ("ap50", "AP50"), ("ap25", "AP25"), ("acc@0.25", "Acc@0.25"), ("acc@0.5", "Acc@0.5"))


def _pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def finetune_table(rows: list[dict]) -> str:
    head = "| fraction | init | " + " | ".join(label for _, label in METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 2)]
    for r in sorted(rows, key=lambda r: (r["fraction"], r["init"] != "scratch")):
        lines.append(f"| {r['fraction']:g} | {r['init']} | " + " | ".join(_pct(r[k]) for k, _ in METRICS) + " |")
    return "\n".join(lines)


def comparison_lines(rows: list[dict]) -> list[str]:
    """Per fraction and metric: does pre-training match or beat scratch?"""
    out = []
    by = {(r["init"], r["fraction"]): r for r in rows}
    for frac in sorted({r["fraction"] for r in rows}):
        s, p = by.get(("scratch", frac)), by.get(("pretrained", frac))
        if s is None or p is None:
            continue
        deltas = ", ".join(f"{label} {100 * (p[k] - s[k]):+.1f}" for k, label in METRICS
                           if not (math.isnan(p[k]) or math.isnan(s[k])))
        out.append(f"- fraction {frac:g}: pre-trained − scratch: {deltas}")
    return out


def scaling_plot(rows: list[dict], path: Path) -> Path:
    """Accuracy and AP vs fine-tuning fraction, scratch vs pre-trained (like the paper's Fig 7)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (key, label) in zip(axes, (("acc@0.25", "Acc@0.25"), ("acc@0.5", "Acc@0.5"), ("ap25", "AP25"))):
        for init, style in (("scratch", "o--"), ("pretrained", "s-")):
            pts = sorted((r["fraction"], r[key]) for r in rows if r["init"] == init)
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, [100 * y for y in ys], style, label="LIFT-GS pre-trained" if init == "pretrained"
                        else "scratch")
        ax.set_xlabel("fine-tuning data fraction")
        ax.set_ylabel(f"{label} (%)")
        ax.set_xscale("log")
        ax.set_xticks(sorted({r["fraction"] for r in rows}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Fine-tuning data scaling on the synthetic benchmark (val split)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def examples(state, data: Path, encoder, count: int = 2) -> list[str]:
    """Ground one referring expression in each of a few held-out rooms; markdown lines."""
    from liftgs.ground import GroundConfig, run_ground
    from liftgs.io import list_scenes, read_scene
    from liftgs.models.liftgs import LiftGS

    best = state.out / f"finetune_pretrained_{max(state.plan.fractions):g}" / "model"
    model = LiftGS.from_pretrained(best).eval()
    lines = []
    for path in list_scenes(data, "val")[:count]:
        scene = read_scene(path, load_frames=False)
        if not scene.expressions:
            continue
        e = scene.expressions[0]
        target = e.text[e.spans[0][0]: e.spans[0][1]] if e.spans else None
        out = state.out / "examples" / scene.scene_id
        cfg = GroundConfig(scene=path, phrase=e.text, checkpoint=best, out=out, target=target, top_k=1,
                           views=2, image_size=256)
        res = run_ground(cfg, model=model, text_encoder=encoder)
        hit = "n/a"
        if len(res.masks):
            from liftgs.geometry import box_from_points, box_iou

            gt = box_from_points(scene.points[scene.instance_ids == e.target_ids[0]])
            hit = f"{box_iou(res.boxes[0], gt):.2f}"
        rel = out.relative_to(state.out)
        lines += [f"**{scene.scene_id}** — “{e.text}” (target: {scene.objects[e.target_ids[0]].attributes.get('caption', '')}; "
                  f"box IoU of the top mask: {hit})", "",
                  f"![view 0]({rel}/view_0.png) ![view 1]({rel}/view_1.png)", ""]
    return lines


def write_report(state, data: Path, encoder) -> Path:
    """Write ``<out>/report.md``. If the examples cannot be rendered the report is written with
    the error at its top and :class:`ExampleRenderError` is raised: a report that silently
    lacks its examples would hide a broken ``liftgs ground`` path."""
    res, plan = state.results, state.plan
    rows = res.get("finetune", [])
    plot = scaling_plot(rows, state.out / "scaling.png") if rows else None
    zs = res.get("zero_shot")
    md = ["# liftgs demo report", "",
          f"Synthetic benchmark: {plan.rooms} rooms (train/val split), pre-training {plan.pretrain_steps} steps "
          f"on 2D pseudo-labels only, fine-tuning {plan.finetune_steps} steps per run on 3D labels, "
          f"evaluation on {len(res.get('eval_scenes', []))} held-out rooms. Numbers are percentages.", ""]
    if zs:
        m, r = zs["model"], zs["random"]
        ratio = m["acc@0.25"] / r["acc@0.25"] if r["acc@0.25"] else float("nan")
        md += ["## Zero-shot grounding before fine-tuning", "",
               "Each held-out object queried by its caption (\"a red chair\"); the top mask's box must overlap "
               "the object's box.", "",
               "| model | Acc@0.25 | Acc@0.5 | queries |", "|---|---|---|---|",
               f"| pre-trained (2D supervision only) | {_pct(m['acc@0.25'])} | {_pct(m['acc@0.5'])} | {m['n']} |",
               f"| random object of the room | {_pct(r['acc@0.25'])} | {_pct(r['acc@0.5'])} | {r['n']} |", "",
               f"Pre-trained / random at Acc@0.25: {ratio:.1f}x.", ""]
    if rows:
        md += ["## Fine-tuning: scratch vs pre-trained", "",
               "Instance segmentation: open-vocabulary protocol (every category name is a query), ScanNet AP. "
               "Referential grounding: Acc@IoU of the top mask's box.", "", finetune_table(rows), "",
               *comparison_lines(rows), ""]
    if plot:
        md += [f"![data scaling]({plot.name})", ""]
    failure = None
    try:
        ex = examples(state, data, encoder)
    except Exception as err:  # noqa: BLE001 - written into the report, then raised below
        failure = err
        ex = [f"**Examples could not be rendered:** `{type(err).__name__}: {err}`", ""]
        md[1:1] = ["", f"> **Error: this report is incomplete.** Rendering the examples failed with "
                       f"`{type(err).__name__}: {err}` (see the Examples section)."]
    md += ["## Examples", "", *ex]
    md += ["## Timings", "", "| stage | seconds |", "|---|---|",
           *[f"| {k} | {v:.0f} |" for k, v in state.timings.items()], ""]
    path = state.out / "report.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(md))
    tmp.replace(path)
    if failure is not None:
        raise ExampleRenderError(f"{path}: rendering the examples failed ({type(failure).__name__}: "
                                 f"{failure}); the tables were written, the examples are missing") from failure
    return path
