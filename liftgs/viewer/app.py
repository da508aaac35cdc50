"""The viewer: a viser server showing a scene, its cameras, pseudo-labels and grounded masks.

:func:`load_inputs` reads and checks everything the command line names (scene, label cache,
checkpoints, text encoder) and raises a one-line error before any server starts;
:func:`launch_viewer` starts the server on those inputs and returns a :class:`Viewer`, whose
methods (:meth:`Viewer.ground`, :meth:`Viewer.select_model`, :meth:`Viewer.show_frame`,
:meth:`Viewer.show_gaussians`) are what the browser's controls call, so a program or a test
drives the page the same way a person does. :meth:`Viewer.stop` ends it.

Grounding runs :func:`liftgs.ground.ground_cloud`, the code behind ``liftgs ground``, with the
model picked in the page; a ``grounder`` passed to :func:`launch_viewer` replaces it.
"""

from __future__ import annotations

import html
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import tyro

from liftgs.viewer.layers import (box_segments, camera_pose, display_subset, label_overlay, segment_colors,
                                  spread_indices, thumbnail)

NO_MODEL = "(no model)"
SELECTED_RGB = (255, 120, 0)  # outline of the frustum of the frame chosen in the label panel
FRUSTUM_RGB = (60, 60, 60)
MAX_SEGMENTS_LISTED = 40


@dataclass
class ViewConfig:
    """Browse a scene in the browser: its points, cameras and pseudo-labels, and ground phrases
    in it with one or more models."""

    scene: Path
    """scene directory, or a .ply / .npy / .bin point cloud (N x 6 xyz + rgb)"""
    checkpoint: Annotated[tuple[Path, ...], tyro.conf.UseAppendAction] = ()
    """model folder, checkpoint or run directory; repeat to pick between models in the page
    (default: the model `liftgs ground` uses, when it exists)"""
    labels: Path | None = None
    """pseudo-label cache written by `liftgs pseudolabel` (the folder holding <scene id>/)"""
    host: str = "127.0.0.1"
    """address to listen on (loopback: reach it from elsewhere through SSH port forwarding)"""
    port: int = 8080
    """port to listen on (the next free one if taken; 0 = any free port)"""
    text_encoder: str | None = None
    """text encoder name, folder or HF-cache repo id; default: the one the first model records,
    MiniLM when it records none; must match every model's query width"""
    mode: Literal["auto", "zero-shot", "phrase", "expression"] = "auto"
    """grounding mode, as in `liftgs ground` (auto picks by each model's run)"""
    top_k: int = 3
    """masks to keep per phrase"""
    threshold: float = 0.5
    """a point belongs to a mask when sigmoid(mask logit) exceeds this"""
    component_radius: float = 0.1
    """metres: keep each mask's main connected piece; 0 keeps masks whole"""
    max_points: int = 500_000
    """clouds with more points go through the model as their voxel means (as in `liftgs ground`)"""
    max_frames: int = 40
    """camera frustums drawn, spread evenly over the frames (0 = all)"""
    display_points: int = 1_000_000
    """points sent to the browser (a fixed random subset of larger clouds; 0 = all)"""
    point_size: float = 0.02
    """metres"""
    image_size: int = 160
    """pixels: longer side of the frame images on the frustums"""
    device: str = "cpu"

    def __post_init__(self) -> None:
        from liftgs.runtime import check_device

        check_device(self.device, allow_auto=False)
        self.scene = Path(self.scene)
        if isinstance(self.checkpoint, (str, Path)):
            self.checkpoint = (self.checkpoint,)
        self.checkpoint = tuple(Path(p) for p in self.checkpoint)
        self.labels = None if self.labels is None else Path(self.labels)
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be in [0, 65535], got {self.port}")
        from liftgs.ground import check_mask_options

        check_mask_options(self.top_k, self.threshold, self.component_radius)
        for name in ("max_points", "max_frames", "display_points"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not self.point_size > 0:
            raise ValueError(f"--point-size must be > 0 metres, got {self.point_size}")
        if self.image_size < 16:
            raise ValueError(f"--image-size must be >= 16 pixels, got {self.image_size}")


@dataclass
class ModelChoice:
    """A loaded model as the page's model picker lists it."""

    label: str
    model_dir: Path
    model: object  # an nn.Module of any family (liftgs.models.load_model)


@dataclass
class ViewInputs:
    """Everything :func:`load_inputs` read: the cloud, the cameras, the label cache, the models."""

    name: str
    points: np.ndarray  # [P, 3] float32
    colors: np.ndarray  # [P, 3] float32 in [0, 1]
    cameras: list = field(default_factory=list)  # liftgs.types.Camera per frame (scene directories)
    labels: object | None = None  # liftgs.teachers.store.PseudoLabelStore
    models: list[ModelChoice] = field(default_factory=list)
    text_encoder: object | None = None
    model_note: str = ""  # why there is no model to ground with (shown in the page)


Grounder = Callable[[str, ModelChoice], "object"]  # (phrase, model) -> liftgs.ground.GroundOutput


def _log(message: str) -> None:
    print(f"liftgs view: {message}", file=sys.stderr, flush=True)


def default_checkpoints() -> tuple[Path, ...]:
    """The models offered when none is given: the one `liftgs ground` uses by default (the
    shipped fine-tuned model), then the shipped pre-trained one (zero-shot grounding)."""
    from liftgs.ground import GroundConfig
    from liftgs.weights import PRETRAINED

    ground_default = next(f.default for f in fields(GroundConfig) if f.name == "checkpoint")
    return tuple(dict.fromkeys((Path(ground_default), Path(PRETRAINED))))


def load_inputs(config: ViewConfig, text_encoder=None, need_text_encoder: bool = True,
                log: Callable[[str], None] = _log) -> ViewInputs:
    """Read the scene, the label cache, the models and the text encoder, checking each: a
    missing scene, an unusable label cache or checkpoint, or a text encoder of the wrong width
    raises a one-line error naming the file. Without ``--checkpoint``, `liftgs ground`'s
    default model is used when it loads; otherwise the page says why there is no model."""
    from liftgs.ground import load_scene_points
    from liftgs.models.provenance import check_text_width
    from liftgs.train.checkpoint import CheckpointError

    log(f"loading {config.scene}")
    points, colors, name = load_scene_points(config.scene)
    cameras = []
    if config.scene.is_dir():
        from liftgs.io.scene_dir import read_cameras

        cameras = read_cameras(config.scene)
    log(f"{len(points):,} points, {len(cameras)} frames")
    inputs = ViewInputs(name, points, colors, cameras)
    if config.labels is not None:
        inputs.labels = _open_labels(config, name, len(cameras))
    explicit = bool(config.checkpoint)
    for path in config.checkpoint or default_checkpoints():
        try:
            inputs.models.append(_load_model(path, config.device, log))
        except (CheckpointError, ValueError, OSError) as err:
            if explicit:
                raise
            note = f"the default model {path} cannot be loaded ({str(err).splitlines()[0]})"
            log(note)
            if not inputs.models:
                inputs.model_note = f"no model to ground with: {note}; start with --checkpoint"
    _label_models(inputs.models)
    if inputs.models and need_text_encoder:
        if text_encoder is None:
            from liftgs.models.provenance import text_encoder_for

            first = inputs.models[0]
            log(f"loading text encoder {config.text_encoder or f'(recorded by {first.model_dir})'}")
            try:
                text_encoder = text_encoder_for(first.model_dir, config.text_encoder, device=config.device,
                                                model=first.model)
            except (ImportError, OSError, ValueError) as err:
                if explicit:
                    raise ValueError(f"--text-encoder {config.text_encoder}: {str(err).splitlines()[0]}") from err
                inputs.model_note = f"no text encoder: {str(err).splitlines()[0]}"
                inputs.models = []
                log(inputs.model_note)
        for choice in inputs.models:
            check_text_width(choice.model, text_encoder, choice.model_dir)
    inputs.text_encoder = text_encoder
    return inputs


def _open_labels(config: ViewConfig, scene_id: str, frames: int):
    from liftgs.io.errors import DataError
    from liftgs.teachers.store import PseudoLabelStore

    if not config.labels.is_dir():
        raise DataError("no such pseudo-label folder (--labels)", config.labels)
    if frames == 0:
        raise DataError("--labels needs a scene directory with frames; a bare point cloud has none", config.scene)
    store = PseudoLabelStore(config.labels)
    if not store.frames(scene_id):
        raise DataError(f"no pseudo-labels for scene {scene_id!r} (expected {scene_id}/<frame>.safetensors; "
                        "run `liftgs pseudolabel`)", config.labels)
    return store


def _load_model(path: Path, device: str, log: Callable[[str], None]) -> ModelChoice:
    from liftgs.models import load_model
    from liftgs.train.checkpoint import resolve_model_dir

    model_dir = resolve_model_dir(path)
    log(f"loading model {model_dir}")
    model = load_model(model_dir, map_location=device).eval()
    return ModelChoice(str(path), model_dir, model)


def _label_models(models: list[ModelChoice]) -> None:
    """The picker's labels: each path as given, a repeated one numbered."""
    seen: set[str] = set()
    for choice in models:
        label, n = choice.label, 1
        while label in seen:
            n += 1
            label = f"{choice.label} ({n})"
        seen.add(label)
        choice.label = label


def launch_viewer(config: ViewConfig, inputs: ViewInputs | None = None, grounder: Grounder | None = None,
                  text_encoder=None, log: Callable[[str], None] = _log) -> "Viewer":
    """Load the inputs (unless given), start the server and return the running :class:`Viewer`.

    ``grounder(phrase, model_choice)`` -> :class:`liftgs.ground.GroundOutput` replaces the
    default grounding (:func:`liftgs.ground.ground_cloud` on the chosen model); then no text
    encoder is loaded. ``text_encoder`` replaces the one ``config.text_encoder`` names."""
    if inputs is None:
        inputs = load_inputs(config, text_encoder, need_text_encoder=grounder is None, log=log)
    return Viewer(config, inputs, grounder, log)


class Viewer:
    """A running viewer; :attr:`url` is where the page is, :meth:`stop` ends the server."""

    def __init__(self, config: ViewConfig, inputs: ViewInputs, grounder: Grounder | None = None,
                 log: Callable[[str], None] = _log) -> None:
        import viser

        self.config, self.inputs, self._log = config, inputs, log
        self._grounder = grounder or self._ground_with_model
        self._lock = threading.RLock()
        self._stopped = threading.Event()
        self._gaussian_cache: dict[str, tuple] = {}
        self.last_result = None  # the latest liftgs.ground.GroundOutput, over every input point
        self.frame_index = 0
        self.display_index = display_subset(len(inputs.points), config.display_points)
        self.frames_drawn = spread_indices(len(inputs.cameras), config.max_frames)
        self._frame_cache: dict[int, object] = {}

        server = viser.ViserServer(host=config.host, port=config.port, label=f"liftgs · {inputs.name}")
        # the page offers a share link through an outside relay; the viewer makes no outside connection
        server.request_share_url = lambda *args, **kwargs: None
        server.gui.configure_theme(show_share_button=False, control_width="medium")
        server.scene.set_up_direction("+z")
        self.server = server
        try:
            self._set_initial_camera()
            self._build_scene()
            self._build_gui()
        except BaseException:
            server.stop()
            raise
        self.url = f"http://{_url_host(config.host)}:{server.get_port()}"

    # ------------------------------------------------------------------ life cycle
    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if not self._stopped.is_set():
            self._stopped.set()
            self.server.stop()

    def serve_forever(self) -> None:
        """Block until :meth:`stop` or Ctrl-C, then stop."""
        try:
            while not self._stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    # ------------------------------------------------------------------ scene
    def _set_initial_camera(self) -> None:
        from liftgs.ground import orbit_cameras

        pts = self.inputs.points
        lo, hi = np.percentile(pts, 2, axis=0), np.percentile(pts, 98, axis=0)
        eye = orbit_cameras(pts, 1, 64)[0].position
        cam = self.server.initial_camera
        cam.position = tuple(eye)
        cam.look_at = tuple((lo + hi) / 2)
        cam.up = (0.0, 0.0, 1.0)
        self._extent = float(np.linalg.norm(hi - lo)) or 1.0

    def _build_scene(self) -> None:
        pts, cols = self.inputs.points, self.inputs.colors
        idx = self.display_index
        self.base_rgb = (np.clip(cols[idx], 0, 1) * 255).round().astype(np.uint8)
        self.points_handle = self.server.scene.add_point_cloud(
            "/scene/points", pts[idx], self.base_rgb, point_size=self.config.point_size,
            point_shape="square", point_shading="flat", precision="float32")
        self._frustums, self._selected_frustum = [], None
        for i in self.frames_drawn:
            self._frustums.append(self._add_frustum(f"/frames/{i:06d}", int(i), FRUSTUM_RGB, with_image=True))
        if self._frustums:
            self._log(f"drew {len(self._frustums)} of {len(self.inputs.cameras)} camera frustums")

    def _frustum_scale(self) -> float:
        return float(np.clip(0.04 * self._extent, 0.05, 0.5))

    def _add_frustum(self, name: str, index: int, color, with_image: bool, image: np.ndarray | None = None):
        camera = self.inputs.cameras[index]
        wxyz, position, fov, aspect = camera_pose(camera)
        if image is None and with_image:
            image = thumbnail(self._frame(index).rgb, self.config.image_size)
        handle = self.server.scene.add_camera_frustum(
            name, fov=fov, aspect=aspect, scale=self._frustum_scale(), color=color, image=image,
            format="jpeg", wxyz=wxyz, position=position, thickness=1.5, thickness_units="screen")

        @handle.on_click
        def _(_event, index=index) -> None:
            self.show_frame(index)

        return handle

    def _frame(self, index: int):
        from liftgs.io.scene_dir import read_frame

        if index not in self._frame_cache:
            if len(self._frame_cache) > 64:
                self._frame_cache.clear()
            self._frame_cache[index] = read_frame(self.config.scene, index)
        return self._frame_cache[index]

    # ------------------------------------------------------------------ GUI
    def _build_gui(self) -> None:
        gui = self.server.gui
        n_frames = len(self.inputs.cameras)
        with gui.add_folder("Scene"):
            shown = len(self.display_index)
            gui.add_markdown(f"**{self.inputs.name}**: {len(self.inputs.points):,} points"
                             + (f" ({shown:,} shown)" if shown < len(self.inputs.points) else "")
                             + f", {n_frames} frames" + (f" ({len(self._frustums)} drawn)"
                                                          if len(self._frustums) < n_frames else ""))
            self.points_toggle = gui.add_checkbox("Points", True)
            self.points_toggle.on_update(lambda _: setattr(self.points_handle, "visible", self.points_toggle.value))
            self.size_slider = gui.add_slider("Point size (m)", 0.002, 0.1, 0.002, self.config.point_size)
            self.size_slider.on_update(lambda _: setattr(self.points_handle, "point_size", self.size_slider.value))
            self.frustum_toggle = gui.add_checkbox("Cameras", bool(self._frustums), disabled=not self._frustums)
            self.frustum_toggle.on_update(lambda _: self._set_frustums_visible(self.frustum_toggle.value))
            self.gaussian_toggle = gui.add_checkbox(
                "Predicted Gaussians", False, disabled=not self.inputs.models,
                hint="the chosen model's 3D Gaussians (one per point it sees)")
            self.gaussian_toggle.on_update(lambda _: self._draw_gaussians())
        with gui.add_folder("Grounding"):
            labels = [c.label for c in self.inputs.models] or [NO_MODEL]
            self.model_dropdown = gui.add_dropdown("Model", labels, initial_value=labels[0],
                                                   disabled=not self.inputs.models)
            self.model_dropdown.on_update(lambda _: self._model_changed())
            self.phrase_box = gui.add_text("Phrase", "", disabled=not self.inputs.models,
                                           hint="what to find, e.g. the red chair")
            self.ground_button = gui.add_button("Ground", disabled=not self.inputs.models)
            self.ground_button.on_click(lambda _: self._ground_clicked())
            self.clear_button = gui.add_button("Clear", disabled=True, color="gray")
            self.clear_button.on_click(lambda _: self.clear_grounding())
            self.results = gui.add_html(self._notice_html(
                self.inputs.model_note or ("Type a phrase and press Ground." if self.inputs.models
                                           else "no model to ground with: start with --checkpoint")))
        self.frame_slider = self.label_image = self.label_text = None
        if n_frames:
            with gui.add_folder("Frames and pseudo-labels"):
                self.frame_slider = gui.add_slider("Frame", 0, max(n_frames - 1, 1), 1, 0, disabled=n_frames == 1)
                self.frame_slider.on_update(lambda _: self._draw_frame(int(self.frame_slider.value)))
                self.label_image = gui.add_image(np.zeros((8, 8, 3), np.uint8), label="frame 0")
                self.label_text = gui.add_html("")
            self._draw_frame(0)

    def _set_frustums_visible(self, visible: bool) -> None:
        for handle in self._frustums + [self._selected_frustum]:
            if handle is not None:
                handle.visible = visible

    @staticmethod
    def _notice_html(text: str) -> str:
        return f"<div style='font-size:0.85em;padding:0 0.5em'>{html.escape(text)}</div>"

    # ------------------------------------------------------------------ models
    @property
    def model_choice(self) -> ModelChoice | None:
        """The model picked in the page (None when there is none)."""
        by_label = {c.label: c for c in self.inputs.models}
        return by_label.get(self.model_dropdown.value)

    # A control's value set here runs its callback (viser calls them on assignment too), so
    # the public methods set the control and the callback draws; unchanged, they draw themselves.
    def select_model(self, label: str) -> None:
        """Pick the model the page grounds with (clears the current highlight)."""
        if label not in {c.label for c in self.inputs.models}:
            raise ValueError(f"no model {label!r}; loaded: {[c.label for c in self.inputs.models]}")
        if self.model_dropdown.value != label:
            self.model_dropdown.value = label
        else:
            self._model_changed()

    def _model_changed(self) -> None:
        with self._lock:
            self.clear_grounding()
            self.results.content = self._notice_html(f"model: {self.model_dropdown.value}")
            if self.gaussian_toggle.value:
                self._draw_gaussians()

    def show_gaussians(self, visible: bool) -> None:
        """Show (or hide) the chosen model's predicted Gaussians as splats."""
        if self.gaussian_toggle.value != visible:
            self.gaussian_toggle.value = visible
        else:
            self._draw_gaussians()

    def _draw_gaussians(self) -> None:
        with self._lock:
            if not self.gaussian_toggle.value:
                self.server.scene.remove_by_name("/scene/gaussians")
                return
            choice = self.model_choice
            if choice is None:
                return
            if choice.label not in self._gaussian_cache:
                if not hasattr(choice.model, "gaussian_head"):
                    self.results.content = self._notice_html(f"{choice.label} predicts no Gaussians")
                    return
                self._log(f"predicting Gaussians with {choice.label}")
                self._gaussian_cache[choice.label] = self._predict_gaussians(choice)
            centers, cov, rgbs, opacities = self._gaussian_cache[choice.label]
            self.server.scene.add_gaussian_splats("/scene/gaussians", centers=centers, covariances=cov,
                                                  rgbs=rgbs, opacities=opacities)

    def _predict_gaussians(self, choice: ModelChoice) -> tuple[np.ndarray, ...]:
        """(centres [N, 3], covariances [N, 3, 3], colours [N, 3], opacities [N, 1]) of the
        model's Gaussians on the cloud grounding runs on, at most ``display_points`` of them."""
        from liftgs.clouds import voxel_downsample
        from liftgs.models.liftgs.inference import predict_gaussians
        from liftgs.render.projection import covariance_3d

        pts, cols = self.inputs.points, self.inputs.colors
        if len(pts) > self.config.max_points:  # as grounding does: the voxel means
            pts, cols, _ = voxel_downsample(pts, cols, choice.model.voxel_size)
        g = predict_gaussians(choice.model, pts, cols)
        keep = _torch_index(display_subset(len(g.means), self.config.display_points), g.means.device)
        cov = covariance_3d(g.quats[keep], g.scales[keep])
        return tuple(x.detach().float().cpu().numpy() for x in (
            g.means[keep], cov, g.colors[keep].clamp(0, 1), g.opacities[keep][:, None]))

    # ------------------------------------------------------------------ grounding
    def _ground_config(self, phrase: str, choice: ModelChoice):
        from liftgs.ground import GroundConfig

        c = self.config
        return GroundConfig(scene=c.scene, phrase=phrase, checkpoint=choice.model_dir, text_encoder=c.text_encoder,
                            mode=c.mode, top_k=c.top_k, threshold=c.threshold,
                            component_radius=c.component_radius, max_points=c.max_points, views=0,
                            device=c.device)

    def _ground_with_model(self, phrase: str, choice: ModelChoice):
        from liftgs.ground import ground_cloud

        config = self._ground_config(phrase, choice)
        result, _ = ground_cloud(choice.model, self.inputs.text_encoder, self.inputs.points, self.inputs.colors,
                                 config, choice.model_dir,
                                 warn=lambda lines: [self._log(f"warning: {line}") for line in lines])
        return result

    def _ground_clicked(self) -> None:
        try:
            self.ground(self.phrase_box.value)
        except Exception as err:  # noqa: BLE001 - shown in the page; the server keeps running
            self.results.content = self._notice_html(f"error: {str(err).splitlines()[0] if str(err) else err!r}")
            if isinstance(err, ValueError):  # a phrase or model the grounding refuses
                self._log(f"grounding refused: {str(err).splitlines()[0]}")
            else:
                import traceback

                self._log("grounding failed:\n" + traceback.format_exc())

    def ground(self, phrase: str):
        """Ground ``phrase`` with the chosen model and show the masks: each in its rank's colour
        (the rest of the cloud dimmed, as `liftgs ground` paints it), its box, and the scores in
        the page. Returns the :class:`liftgs.ground.GroundOutput`. A bad phrase raises
        ``ValueError`` (the page shows the message)."""
        from liftgs.ground import PALETTE, highlight_colors

        choice = self.model_choice
        if choice is None:
            raise ValueError(self.inputs.model_note or "no model to ground with: start with --checkpoint")
        phrase = phrase.strip()
        if not phrase:
            raise ValueError("the phrase is empty: say what to find, e.g. \"the red chair\"")
        with self._lock:
            self.ground_button.disabled = True
            self.results.content = self._notice_html(f"grounding {phrase!r} with {choice.label} ...")
            try:
                self._log(f"grounding {phrase!r} with {choice.label}")
                result = self._grounder(phrase, choice)
            finally:
                self.ground_button.disabled = False
            self.last_result = result
            idx = self.display_index
            painted = highlight_colors(self.inputs.colors[idx], result.point_mask_ids[idx])
            self.points_handle.colors = (np.clip(painted, 0, 1) * 255).round().astype(np.uint8)
            self.server.scene.remove_by_name("/grounding")
            rgb = (PALETTE[np.arange(len(result.boxes)) % len(PALETTE)] * 255).round().astype(np.uint8)
            if len(result.boxes):
                segments = box_segments(result.boxes).astype(np.float32)
                self.server.scene.add_line_segments(
                    "/grounding/boxes", segments, np.repeat(rgb, 12, axis=0)[:, None, :].repeat(2, axis=1),
                    thickness=3.0, thickness_units="screen")
            self.results.content = self._results_html(phrase, choice, result, rgb)
            self.clear_button.disabled = False
            self._log(f"{phrase!r}: {len(result.scores)} mask(s)"
                      + "".join(f", #{r} {s:.3f}" for r, s in enumerate(result.scores)))
            return result

    def clear_grounding(self) -> None:
        """Back to the scene's own colours, no boxes."""
        with self._lock:
            self.last_result = None
            self.points_handle.colors = self.base_rgb
            self.server.scene.remove_by_name("/grounding")
            self.clear_button.disabled = True

    def _results_html(self, phrase: str, choice: ModelChoice, result, rgb: np.ndarray) -> str:
        rows = []
        for r, (score, mask) in enumerate(zip(result.scores, result.masks)):
            swatch = "#%02x%02x%02x" % tuple(int(v) for v in rgb[r])
            rows.append(f"<tr><td><span style='display:inline-block;width:0.9em;height:0.9em;"
                        f"background:{swatch};border:1px solid #555'></span></td><td>#{r}</td>"
                        f"<td>{float(score):.3f}</td><td>{int(mask.sum()):,} pts</td></tr>")
        head = f"<b>{html.escape(phrase)}</b> ({html.escape(choice.label)}): {len(rows)} mask(s)"
        notes = "".join(f"<div style='color:#a60'>{html.escape(w)}</div>" for w in result.warnings)
        table = ("<table style='width:100%'><tr><th></th><th>rank</th><th>score</th><th>size</th></tr>"
                 + "".join(rows) + "</table>") if rows else "<div>no mask above the threshold</div>"
        return f"<div style='font-size:0.85em;padding:0 0.5em'>{head}{table}{notes}</div>"

    # ------------------------------------------------------------------ frames and labels
    def show_frame(self, index: int) -> None:
        """Choose frame ``index``: its image (with its pseudo-label segments over it when a label
        cache is open) in the page and on a highlighted frustum, its segments listed."""
        cameras = self.inputs.cameras
        if not cameras:
            return
        index = int(np.clip(index, 0, len(cameras) - 1))
        if int(self.frame_slider.value) != index:
            self.frame_slider.value = index
        else:
            self._draw_frame(index)

    def _draw_frame(self, index: int) -> None:
        from liftgs.io.errors import DataError
        from liftgs.teachers.store import frame_key

        index = int(np.clip(index, 0, len(self.inputs.cameras) - 1))
        with self._lock:
            self.frame_index = index
            frame = self._frame(index)
            key = frame_key(frame, index)
            image, text = frame.rgb, f"frame {index} ({key}): no pseudo-label cache (--labels)"
            if self.inputs.labels is not None:
                try:
                    labels = self.inputs.labels.get(self.inputs.name, key)
                except DataError as err:
                    text = f"frame {index} ({key}): {err}"
                else:
                    try:
                        image = label_overlay(frame.rgb, labels.segments)
                        text = None
                    except ValueError as err:
                        text = f"frame {index} ({key}): {err}"
                    else:
                        self.label_text.content = self._segments_html(index, key, labels)
            if text is not None:
                self.label_text.content = self._notice_html(text)
            self.label_image.image = _fit(image, 480)
            self.label_image.label = f"frame {index} ({key})"
            self._selected_frustum = self._add_frustum("/frames/selected", index, SELECTED_RGB, with_image=True,
                                                       image=thumbnail(image, max(self.config.image_size, 256)))
            self._selected_frustum.visible = self.frustum_toggle.value

    def _segments_html(self, index: int, key: str, labels) -> str:
        seg = labels.segments
        counts = np.bincount(seg[seg >= 0].ravel(), minlength=labels.num_segments)
        colors = segment_colors(labels.num_segments)
        captions = labels.captions
        rows = []
        for s in np.argsort(-counts)[:MAX_SEGMENTS_LISTED]:
            swatch = "#%02x%02x%02x" % tuple(int(v) for v in colors[s])
            text = html.escape(captions[s]) if captions and captions[s] else f"segment {s}"
            rows.append(f"<div><span style='display:inline-block;width:0.9em;height:0.9em;background:{swatch};"
                        f"margin-right:0.4em'></span>{text} <span style='color:#888'>"
                        f"{100 * counts[s] / seg.size:.1f}%</span></div>")
        more = labels.num_segments - len(rows)
        tail = f"<div style='color:#888'>... and {more} more</div>" if more > 0 else ""
        teacher = labels.provenance.get("teacher", "") if isinstance(labels.provenance, dict) else ""
        head = (f"<b>frame {index}</b> ({html.escape(key)}): {labels.num_segments} segments"
                + (f", teacher {html.escape(str(teacher))}" if teacher else "")
                + ("" if captions else ", no captions"))
        return f"<div style='font-size:0.85em;padding:0 0.5em'>{head}{''.join(rows)}{tail}</div>"


def _torch_index(index: np.ndarray, device):
    import torch

    return torch.as_tensor(index, dtype=torch.long, device=device)


def _fit(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` with its longer side ``side`` pixels: shrunk smoothly, enlarged by repeating pixels."""
    longer = max(image.shape[:2])
    if longer >= side:
        return thumbnail(image, side)
    factor = max(1, side // longer)
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "localhost"
    return f"[{host}]" if ":" in host else host
