"""``report.md`` of ``liftgs demo``: tables, the data-scaling plot (paper Fig 7) and examples."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


IMAGE_SIZE = 384  # px of each example picture (the rendered view; title and caption bars come on top)
HIT_IOU = 0.25  # an example is a hit when its top mask's box overlaps the target's box this much
BOX_RGB = (255, 0, 255)  # outline of the ground-truth box: a colour no highlighted mask takes
_BOX_EDGES = ((0, 1), (1, 3), (3, 2), (2, 0), (4, 5), (5, 7), (7, 6), (6, 4), (0, 4), (1, 5), (2, 6), (3, 7))


def box_corners(box: np.ndarray) -> np.ndarray:
    """The 8 corners [8, 3] of an axis-aligned box (min, max); corner i takes the max of axis
    a when bit a of i is set, so the edges are :data:`_BOX_EDGES`."""
    box = np.asarray(box, dtype=np.float64)
    return np.array([[box[3 * ((i >> a) & 1) + a] for a in range(3)] for i in range(8)])


def draw_box(image: np.ndarray, camera, box: np.ndarray, color=BOX_RGB, width: int = 3) -> np.ndarray:
    """``image`` [H, W, 3] uint8 with the projected edges of the 3D ``box`` drawn on it. An edge
    with an end behind the camera is left out (the orbit views look at the whole room, so the
    boxes of its objects are in front)."""
    from PIL import Image, ImageDraw

    from liftgs.geometry import project_points

    uv, z = project_points(box_corners(box), camera.K, camera.viewmat)
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    for a, b in _BOX_EDGES:
        if z[a] > 1e-6 and z[b] > 1e-6:
            draw.line([tuple(uv[a]), tuple(uv[b])], fill=color, width=width)
    return np.asarray(pil)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]


def annotate(image: np.ndarray, title: str, caption: str, caption_rgb=(0, 0, 0)) -> np.ndarray:
    """The view with the phrase as a title bar above it and the outcome as a caption below."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font, chars, line = ImageFont.load_default(size=15), image.shape[1] // 8, 19
    except (TypeError, ImportError):  # no FreeType: the small bitmap font
        font, chars, line = ImageFont.load_default(), image.shape[1] // 6, 13
    top, bottom = _wrap(title, chars)[:2], _wrap(caption, chars)[:2]
    h_top, h_bot = 8 + line * len(top), 8 + line * len(bottom)
    canvas = Image.new("RGB", (image.shape[1], image.shape[0] + h_top + h_bot), (255, 255, 255))
    canvas.paste(Image.fromarray(image), (0, h_top))
    draw = ImageDraw.Draw(canvas)
    for i, t in enumerate(top):
        draw.text((6, 4 + i * line), t, fill=(0, 0, 0), font=font)
    for i, t in enumerate(bottom):
        draw.text((6, image.shape[0] + h_top + 4 + i * line), t, fill=caption_rgb, font=font)
    return np.asarray(canvas)


def grid(rows: list[list[np.ndarray]], pad: int = 8) -> np.ndarray:
    """Tiles, one list per row, on a white background (a short row leaves its end blank)."""
    rows = [row for row in rows if row]
    images = [im for row in rows for im in row]
    columns = max(len(row) for row in rows)
    w = max(im.shape[1] for im in images)
    heights = [max(im.shape[0] for im in row) for row in rows]
    out = np.full((sum(heights) + pad * (len(rows) + 1), columns * w + pad * (columns + 1), 3), 255, np.uint8)
    y = pad
    for row, h in zip(rows, heights):
        for j, im in enumerate(row):
            x = pad + j * (w + pad)
            out[y: y + im.shape[0], x: x + im.shape[1]] = im
        y += h + pad
    return out


@dataclass(eq=False)
class Example:
    """One grounded referring expression of a held-out room and its outcome."""

    scene: object  # liftgs.types.Scene
    index: int  # of the expression in the scene
    mask: np.ndarray  # [N] bool, the top mask (all False: no mask)
    iou: float  # of the top mask's box with the target's box (0 without a mask)
    gt_box: np.ndarray  # [6]

    @property
    def hit(self) -> bool:
        return self.iou >= HIT_IOU

    @property
    def expression(self):
        return self.scene.expressions[self.index]


def ground_val_expressions(model, encoder, scenes, config) -> list[Example]:
    """Every referring expression of ``scenes``, grounded the way ``liftgs ground`` does it
    (``config``'s threshold, component radius and minimum score; the target mention ranks the
    masks), one forward pass per room."""
    import torch

    from liftgs.geometry import box_from_points, box_iou
    from liftgs.models.liftgs.inference import ground_expressions

    out = []
    for scene in scenes:
        exprs = [e for e in scene.expressions if e.target_ids]
        if not exprs:
            continue
        with torch.no_grad():
            results = ground_expressions(model, encoder, scene.points, scene.colors, [e.text for e in exprs],
                                         [e.spans[0] if e.spans else None for e in exprs], top_k=1,
                                         threshold=config.threshold,
                                         component_radius=config.component_radius or None)
        for e, r in zip(exprs, results):
            masks = r.masks.cpu().numpy().astype(bool)
            scores = r.scores.cpu().numpy()
            keep = (scores >= config.min_score) & masks.any(axis=1)
            mask = masks[keep][0] if keep.any() else np.zeros(len(scene.points), bool)
            gt = box_from_points(scene.points[scene.instance_ids == e.target_ids[0]])
            iou = box_iou(box_from_points(scene.points[mask]), gt) if mask.any() else 0.0
            out.append(Example(scene, scene.expressions.index(e), mask, float(iou), gt))
    return out


def pick_examples(found: list[Example], per_kind: int = 3) -> list[Example]:
    """Up to ``per_kind`` hits then up to ``per_kind`` misses: deterministic, the failures shown
    next to the successes. Each kind takes the first of every room, then the second, ... so
    the pictures spread over the rooms."""
    def spread(xs: list[Example]) -> list[Example]:
        seen: dict[str, int] = {}
        keyed = []
        for order, x in enumerate(xs):
            rank = seen[x.scene.scene_id] = seen.get(x.scene.scene_id, -1) + 1
            keyed.append((rank, order, x))
        return [x for _, _, x in sorted(keyed, key=lambda t: t[:2])][:per_kind]

    return spread([x for x in found if x.hit]) + spread([x for x in found if not x.hit])


def focus_camera(points: np.ndarray, boxes: list[np.ndarray], size: int, fov_deg: float = 60.0):
    """A camera looking down (~50°) at the region spanning ``boxes`` from the room's diagonal
    (the side :func:`liftgs.ground.orbit_cameras` takes first), close enough that the region
    fills about half the picture; returns (camera, keep [N] bool). ``keep`` drops every point
    nearer to the camera than the region (walls, furniture in front): a cut-away view, so the
    target and the mask are never hidden behind a wall."""
    from liftgs.geometry import look_at, project_points
    from liftgs.types import Camera

    lo = np.min([b[:3] for b in boxes], axis=0)
    hi = np.max([b[3:] for b in boxes], axis=0)
    centre, radius = (lo + hi) / 2, max(0.5, float(np.linalg.norm(hi - lo)) / 2)
    half = np.radians(fov_deg / 2)
    dist = max(2.0, radius / np.tan(half) * 2)
    a, elev = np.pi / 4, np.radians(50)
    eye = centre + dist * np.array([np.cos(a) * np.cos(elev), np.sin(a) * np.cos(elev), np.sin(elev)])
    f = size / (2 * np.tan(half))
    cam = Camera(K=np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]]), viewmat=look_at(eye, centre),
                 width=size, height=size)
    _, z = project_points(points, cam.K, cam.viewmat)
    return cam, z >= dist - radius - 0.3


def example_picture(x: Example, size: int = IMAGE_SIZE) -> np.ndarray:
    """The region of the target and the top mask, cut away in front: the room in its own
    colours (slightly dimmed), the top mask tinted, the target's box outlined, the phrase above
    and the outcome below."""
    from liftgs.geometry import box_from_points
    from liftgs.ground import highlight_colors, render_views

    boxes = [x.gt_box] + ([box_from_points(x.scene.points[x.mask])] if x.mask.any() else [])
    cam, keep = focus_camera(x.scene.points, boxes, size)
    painted = highlight_colors(x.scene.colors, np.where(x.mask, 0, -1))
    img = render_views(x.scene.points[keep], painted[keep], [cam])[0]
    img = draw_box(img, cam, x.gt_box)
    e = x.expression
    target = x.scene.objects[e.target_ids[0]].attributes.get("caption", "")
    outcome = "HIT" if x.hit else "MISS"
    caption = (f"{outcome}: box IoU {x.iou:.2f} (hit >= {HIT_IOU:g})"
               + ("" if x.mask.any() else ", no mask") + f" | {x.scene.scene_id}, target: {target}")
    return annotate(img, f"\"{e.text}\"", caption, (0, 120, 0) if x.hit else (200, 0, 0))


def examples(state, heldout: Path, model_dir: Path, encoder) -> list[str]:
    """Ground every referring expression of the held-out rooms with the fine-tuned model;
    render up to 3 hits and 3 misses into ``examples/grid.png`` (markdown lines). The first
    example's room also goes through ``liftgs ground`` end to end, whose ``view_*.png`` are
    linked, so a broken ``ground`` path shows here."""
    from PIL import Image

    from liftgs.ground import GroundConfig, run_ground
    from liftgs.io import list_scenes, read_scene
    from liftgs.models import load_model

    model = load_model(model_dir).eval()
    paths = list_scenes(heldout)
    scenes = [read_scene(p, load_frames=False) for p in paths]
    folder = state.out / "examples"
    folder.mkdir(parents=True, exist_ok=True)
    found = ground_val_expressions(model, encoder, scenes, GroundConfig(scene=paths[0], phrase="-"))
    chosen = pick_examples(found)
    if not chosen:
        return ["No referring expression in the held-out rooms.", ""]
    hits = sum(x.hit for x in found)
    rows = [[example_picture(x) for x in chosen if x.hit], [example_picture(x) for x in chosen if not x.hit]]
    Image.fromarray(grid(rows)).save(folder / "grid.png")
    lines = [f"The fine-tuned model on every referring expression of the {len(scenes)} held-out rooms: "
             f"{hits} of {len(found)} hits (top mask's box IoU >= {HIT_IOU:g} with the target's box). "
             f"First row: up to 3 hits, second row: up to 3 misses, spread over the rooms; the top mask "
             f"tinted yellow, the target's box outlined in magenta, the rest of the room in its own colours, "
             f"slightly dimmed.", "", "![examples: hits and misses](examples/grid.png)", ""]
    x = chosen[0]
    e = x.expression
    out = folder / x.scene.scene_id
    res = run_ground(GroundConfig(scene=paths[[s.scene_id for s in scenes].index(x.scene.scene_id)], phrase=e.text,
                                  checkpoint=model_dir, out=out,
                                  target=e.text[e.spans[0][0]: e.spans[0][1]] if e.spans else None, top_k=1,
                                  views=2, image_size=IMAGE_SIZE), model=model, text_encoder=encoder)
    rel = out.relative_to(state.out)
    lines += [f"`liftgs ground` on **{x.scene.scene_id}** — “{e.text}” ({len(res.masks)} mask(s)):", "",
              f"![view 0]({rel}/view_0.png) ![view 1]({rel}/view_1.png)", ""]
    return lines


def _log_losses(run: Path) -> list[tuple[int, float]]:
    """(step, loss) of every logged step of a run's ``log.jsonl``."""
    import json

    out = []
    path = run / "log.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if "loss" in row and "step" in row:
                out.append((int(row["step"]), float(row["loss"])))
    return out


def loss_plot(curves: dict[str, list[tuple[int, float]]], path: Path) -> Path | None:
    """Training loss against the step, one panel per run."""
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 3.6), squeeze=False)
    for ax, (name, pts) in zip(axes[0], curves.items()):
        xs, ys = zip(*pts)
        ax.plot(xs, ys, "-", lw=1.5)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _training_curves(state) -> dict[str, list[tuple[int, float]]]:
    if state.config.quick:
        brief = state.results.get("brief_training")
        return {f"fine-tuning from scratch, {brief['rooms']} rooms": _log_losses(state.out / brief["run"])} if brief else {}
    return {"pre-training (2D pseudo-labels only)": _log_losses(state.out / "pretrain"),
            "fine-tuning the pre-trained model (3D labels)": _log_losses(state.out / "finetune")}


def write_report(state, heldout: Path, models: dict[str, Path], encoder) -> Path:
    """Write ``<out>/report.md``. If the examples cannot be rendered the report is written with
    the error at its top and :class:`ExampleRenderError` is raised: a report that silently
    lacks its examples would hide a broken ``liftgs ground`` path."""
    res, plan = state.results, state.plan
    rows = res.get("finetune", [])
    plot = scaling_plot(rows, state.out / "scaling.png") if rows else None
    losses = loss_plot(_training_curves(state), state.out / "loss.png")
    zs, ft = res.get("zero_shot"), res.get("finetuned")
    from liftgs.weights import FINETUNED, PRETRAINED

    pretrained, finetuned = Path(models[PRETRAINED]), Path(models[FINETUNED])
    if state.config.quick:
        intro = (f"The weights shipped with liftgs (`tiny` preset; pre-trained on 2D pseudo-labels only, then "
                 f"fine-tuned on 3D labels, both by `make demo-full`) on {plan.heldout_rooms} synthetic rooms "
                 f"generated for this report and never trained on. Numbers are percentages.")
    else:
        intro = (f"Pre-training {plan.pretrain_steps} steps on 2D pseudo-labels of {plan.pretrain_rooms} rooms, "
                 f"fine-tuning {plan.finetune_steps} steps on 3D labels of {plan.finetune_rooms} rooms, evaluation "
                 f"on {plan.heldout_rooms} held-out rooms never trained on. Numbers are percentages.")
    md = ["# liftgs demo report", "", intro, "", f"Models: `{pretrained}` and `{finetuned}`.", ""]
    if zs:
        m, r = zs["model"], zs["random"]
        ratio = m["acc@0.25"] / r["acc@0.25"] if r["acc@0.25"] else float("nan")
        md += ["## Zero-shot grounding after pre-training", "",
               "Each held-out object queried by its caption (\"a red chair\"); the top mask's box must overlap "
               "the object's box.", "",
               "| model | Acc@0.25 | Acc@0.5 | queries |", "|---|---|---|---|",
               f"| pre-trained (2D supervision only) | {_pct(m['acc@0.25'])} | {_pct(m['acc@0.5'])} | {m['n']} |",
               f"| random object of the room | {_pct(r['acc@0.25'])} | {_pct(r['acc@0.5'])} | {r['n']} |", "",
               f"Pre-trained / random at Acc@0.25: {ratio:.1f}x.", ""]
    if ft:
        ratio = ft["acc@0.25"] / ft["random_acc@0.25"] if ft["random_acc@0.25"] else float("nan")
        md += ["## Fine-tuned: referring expressions and instance segmentation", "",
               "Referring expressions: Acc@IoU of the top mask's box against the target's box. Instance "
               "segmentation: open-vocabulary protocol (every category name is a query), ScanNet AP.", "",
               "| model | Acc@0.25 | Acc@0.5 | AP | AP50 | AP25 |", "|---|---|---|---|---|---|",
               f"| fine-tuned | {_pct(ft['acc@0.25'])} | {_pct(ft['acc@0.5'])} | {_pct(ft['ap'])} | "
               f"{_pct(ft['ap50'])} | {_pct(ft['ap25'])} |",
               f"| random object of the room | {_pct(ft['random_acc@0.25'])} | {_pct(ft['random_acc@0.5'])} "
               f"| | | |", "",
               f"{ft['n_expressions']} expressions; fine-tuned / random at Acc@0.25: {ratio:.1f}x.", ""]
    if rows:
        md += ["## Fine-tuning: scratch vs pre-trained", "",
               f"{plan.curve_steps} fine-tuning steps per run on a fraction of the fine-tuning rooms, evaluated "
               "on the held-out rooms.", "", finetune_table(rows), "", *comparison_lines(rows), ""]
    if plot:
        md += [f"![data scaling]({plot.name})", ""]
    if losses:
        md += ["## Training loss", "", f"![training loss]({losses.name})", ""]
    failure = None
    try:
        ex = examples(state, heldout, finetuned, encoder)
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
