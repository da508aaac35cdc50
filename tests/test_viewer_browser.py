"""`liftgs view` in a real headless browser: type a phrase, press Ground, and find the grounded
mask's highlight colour in the screenshot where the mask's points project (and nowhere else);
every request the page makes stays on this machine.

Debian's chromium drives the page through playwright (``make test`` installs chromium as
root); without it the test skips. The grounding function is replaced by one that returns a
known mask (the red box's points), so the pixels to expect follow from the scene alone.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("viser")
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and Path(p).is_file()), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (as root: apt-get install chromium)")

VIEWPORT = {"width": 1280, "height": 800}
SCREENSHOT = Path("/tmp/viewer_screenshot.png")
PANEL_WIDTH = 380  # px at the right edge the control panel may cover
NOTICE = 330, 170  # width, height of the page's "software WebGL" notice, top left
GIZMO = 90  # px: the orientation axes at the bottom left (their yellow centre is no mask)
TOLERANCE = 12  # per channel, uint8


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    from liftgs.testing import write_rooms

    return write_rooms(tmp_path_factory.mktemp("view"), count=1, val=0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from liftgs.models import build_model
    from liftgs.testing import EMBEDDING_DIM

    torch.manual_seed(0)
    return build_model("liftgs", "tiny", EMBEDDING_DIM).save_pretrained(tmp_path_factory.mktemp("model") / "model")


def _fixed_grounder(points: np.ndarray, mask: np.ndarray, calls: list):
    """A grounder that always returns ``mask`` with score 0.9 (and records the phrase)."""
    from liftgs.geometry import box_from_points
    from liftgs.ground import GroundOutput

    def grounder(phrase, choice):
        calls.append((phrase, choice.label))
        ids = np.where(mask, 0, -1).astype(np.int32)
        return GroundOutput(masks=mask[None], scores=np.array([0.9]), point_mask_ids=ids,
                            boxes=box_from_points(points[mask])[None], timings={})

    return grounder


def _start_camera(viewer, eye, target, fov) -> None:
    """The pose a page opened from now on starts with (viser's initial camera)."""
    cam = viewer.server.initial_camera
    cam.up = (0.0, 0.0, 1.0)
    cam.fov = fov
    cam.position = tuple(eye)
    cam.look_at = tuple(target)


def _client_camera(viewer, eye, fov):
    """Wait until the (single) page reports its camera at ``eye`` with vertical field of view
    ``fov``; returns the camera it reports as (K, viewmat, width, height)."""
    from scipy.spatial.transform import Rotation

    cam = next(iter(viewer.server.get_clients().values())).camera
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:  # a camera the page has not reported yet refuses to be read
            if np.allclose(cam.position, eye, atol=1e-3) and abs(cam.fov - fov) < 1e-4 and cam.image_width > 0:
                break
        except AssertionError:
            pass
        time.sleep(0.1)
    assert np.allclose(cam.position, eye, atol=1e-3), f"the page's camera is at {cam.position}, not {eye}"
    W, H = cam.image_width, cam.image_height
    c2w = np.eye(4)
    c2w[:3, :3] = Rotation.from_quat(np.r_[cam.wxyz[1:], cam.wxyz[:1]]).as_matrix()  # wxyz -> scipy's xyzw
    c2w[:3, 3] = cam.position
    f = H / 2 / np.tan(cam.fov / 2)
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    return K, np.linalg.inv(c2w), W, H


def _matches(image: np.ndarray, rgb) -> np.ndarray:
    return (np.abs(image.astype(np.int16) - np.asarray(rgb, np.int16)) <= TOLERANCE).all(axis=-1)


def test_ground_in_the_browser_highlights_the_mask(room, model_dir):
    from liftgs.demo_report import box_corners
    from liftgs.geometry import box_from_points, project_points
    from liftgs.ground import PALETTE, TINT
    from liftgs.io.scene_dir import read_scene
    from liftgs.viewer import ViewConfig, launch_viewer

    scene_dir = room / "data" / "room0"
    scene = read_scene(scene_dir, load_frames=False)
    red = np.array([0.9, 0.1, 0.1], np.float32)
    mask = np.isclose(scene.colors, red, atol=0.02).all(axis=1)  # the red box (fabricate_scene's first object)
    assert mask.sum() > 100
    others = (scene.instance_ids >= 0) & ~mask
    highlight = ((1 - TINT) * red + TINT * PALETTE[0]) * 255  # ground.highlight_colors of rank 0

    calls: list = []
    config = ViewConfig(scene=scene_dir, checkpoint=(model_dir,), labels=room / "labels", port=0, point_size=0.04)
    viewer = launch_viewer(config, grounder=_fixed_grounder(scene.points, mask, calls))
    requests, sockets = [], []
    try:
        assert urlparse(viewer.url).hostname == "127.0.0.1"
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                "--enable-unsafe-swiftshader", "--disable-background-networking", "--no-first-run"])
            try:
                page = browser.new_page(viewport=VIEWPORT)
                page.on("request", lambda r: requests.append(r.url))
                page.on("websocket", lambda w: sockets.append(w.url))
                centre = scene.points[mask].mean(axis=0)
                eye = centre + np.array([0.0, -1.6, 1.3])
                fov = float(np.radians(55))
                _start_camera(viewer, eye, centre, fov)
                page.goto(viewer.url)
                deadline = time.monotonic() + 30
                while not viewer.server.get_clients() and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert viewer.server.get_clients(), "the page never connected"

                K, viewmat, W, H = _client_camera(viewer, eye, fov)
                assert (W, H) == (VIEWPORT["width"], VIEWPORT["height"])

                phrase_box = page.locator("div.mantine-Flex-root", has=page.locator("label", has_text="Phrase"))
                phrase_box.locator("input").fill("the red chair")
                page.get_by_role("button", name="Ground", exact=True).click()
                page.get_by_text("0.900").wait_for(timeout=20_000)  # the score, listed in the page
                assert calls == [("the red chair", str(model_dir))]

                image = None
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:  # until the recoloured cloud is drawn
                    page.screenshot(path=str(SCREENSHOT))
                    image = np.asarray(Image.open(SCREENSHOT).convert("RGB"))
                    if _matches(image, highlight).sum() > 200:
                        break
                    time.sleep(0.3)
            finally:
                browser.close()
    finally:
        viewer.stop()

    hit = _matches(image, highlight)
    uv, z = project_points(centre[None], K, viewmat)
    u, v = np.round(uv[0]).astype(int)
    assert z[0] > 0 and 0 <= u < W - PANEL_WIDTH and 0 <= v < H
    window = hit[v - 15: v + 16, u - 15: u + 16]
    assert window.mean() > 0.3, f"highlight covers {window.mean():.0%} of the pixels around the mask's centre"

    # nowhere outside the projection of the mask's box (points are squares of point_size m: a margin)
    cuv, _ = project_points(box_corners(box_from_points(scene.points[mask])), K, viewmat)
    lo, hi = cuv.min(axis=0) - 25, cuv.max(axis=0) + 25
    ys, xs = np.nonzero(hit)
    outside = (xs < lo[0]) | (xs > hi[0]) | (ys < lo[1]) | (ys > hi[1])
    ignored = ((xs < NOTICE[0]) & (ys < NOTICE[1])) | ((xs < GIZMO) & (ys >= H - GIZMO)) | (xs >= W - PANEL_WIDTH)
    stray = outside & ~ignored
    assert not stray.any(), f"highlight colour outside the mask's box at {list(zip(xs[stray], ys[stray]))[:5]}"
    # ... and not where the other objects' points project
    ouv, oz = project_points(scene.points[others], K, viewmat)
    seen = (oz > 0) & (ouv[:, 0] >= 0) & (ouv[:, 0] < W - PANEL_WIDTH) & (ouv[:, 1] >= 0) & (ouv[:, 1] < H)
    px = np.round(ouv[seen]).astype(int)
    outside_box = (px[:, 0] < lo[0]) | (px[:, 0] > hi[0]) | (px[:, 1] < lo[1]) | (px[:, 1] > hi[1])
    assert outside_box.sum() > 50, "the camera should see other objects beside the mask"
    assert not hit[px[outside_box, 1], px[outside_box, 0]].any()

    local = {"127.0.0.1", "localhost"}
    assert requests and sockets
    for url in requests + sockets:
        parsed = urlparse(url[len("blob:"):] if url.startswith("blob:") else url)
        assert parsed.scheme == "data" or parsed.hostname in local, f"the page fetched {url}"
