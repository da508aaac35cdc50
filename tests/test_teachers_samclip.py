"""SAM+CLIP and caption teachers on tiny random checkpoints loaded offline; NMS and helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from liftgs.teachers import PseudoLabelStore
from liftgs.teachers.caption import CaptionTeacher, clean_caption, highlight_region
from liftgs.teachers.pipeline import jobs_from_scenes, pseudolabel
from liftgs.teachers.sam import (AutoMaskConfig, box_nms, box_nms_reference, boxes_from_masks, mask_nms,
                                 remove_small_regions, stability_score)
from liftgs.teachers.samclip import build_samclip_teacher, region_crops
from liftgs.text import HashingTextEncoder
from liftgs.types import Camera, Frame, Scene

H, W = 40, 56
LOOSE = dict(points_per_side=4, pred_iou_thresh=-1e9, stability_thresh=0.0, min_region_area=4, nms_thresh=0.9)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from liftgs.testing import write_tiny_clip, write_tiny_sam

    root = tmp_path_factory.mktemp("tiny")
    return write_tiny_sam(root / "sam"), write_tiny_clip(root / "clip", projection_dim=16)


def _frame(seed=0, name="000000"):
    cam = Camera(np.array([[50.0, 0, 28], [0, 50.0, 20], [0, 0, 1]]), np.eye(4), W, H)
    rgb = np.random.default_rng(seed).integers(0, 255, (H, W, 3)).astype(np.uint8)
    return Frame(cam, rgb, name=name)


def _check_well_formed(labels, dim):
    S = labels.num_segments
    assert labels.segments.dtype == np.int32 and labels.segments.shape == (H, W)
    assert labels.segments.min() >= -1 and labels.segments.max() == S - 1
    assert set(np.unique(labels.segments[labels.segments >= 0])) == set(range(S))  # no empty segment
    assert labels.embeddings.shape == (S, dim) and labels.embeddings.dtype == np.float32
    assert np.isfinite(labels.embeddings).all()


def test_samclip_end_to_end_offline(checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sam, clip = checkpoints
    teacher = build_samclip_teacher(sam, clip, AutoMaskConfig(**LOOSE))
    frame = _frame()
    labels = teacher(frame)
    _check_well_formed(labels, 16)
    assert labels.num_segments >= 2 and labels.captions is None
    np.testing.assert_allclose(np.linalg.norm(labels.embeddings, axis=1), 1.0, atol=1e-5)
    # each embedding is the CLIP embedding of that segment's masked, squared crop
    crops = region_crops(frame.rgb, labels.segments, teacher.clip.mean, teacher.clip.size)
    ref = teacher.clip.embed_images(crops).numpy()
    np.testing.assert_allclose(labels.embeddings, ref, atol=1e-5)
    assert labels.provenance["settings"]["segmenter"]["points_per_side"] == 4
    # through the cache
    scene = Scene("room0", np.zeros((1, 3)), np.zeros((1, 3)), [frame, _frame(1, "000001")])
    store = PseudoLabelStore(tmp_path)
    summary = pseudolabel(jobs_from_scenes([scene]), teacher, store, area_at_base=0, progress=False)
    assert summary.labelled == 2
    np.testing.assert_array_equal(store.get("room0", "000000").segments, labels.segments)


def test_sam_thresholds_filter(checkpoints):
    from liftgs.teachers.sam import SamAutoMaskGenerator

    sam, _ = checkpoints
    rgb = _frame().rgb
    loose = SamAutoMaskGenerator.from_dir(sam, AutoMaskConfig(**LOOSE))
    masks, scores = loose.propose(rgb)
    assert masks.dtype == torch.bool and masks.shape[1:] == (H, W) and masks.shape[0] == scores.shape[0]
    strict = SamAutoMaskGenerator.from_dir(sam, AutoMaskConfig(**{**LOOSE, "pred_iou_thresh": 1e9}))
    assert strict.propose(rgb)[0].shape[0] == 0
    assert (strict(rgb) == -1).all()
    mask_nms_gen = SamAutoMaskGenerator.from_dir(sam, AutoMaskConfig(**{**LOOSE, "nms": "mask"}))
    assert mask_nms_gen.propose(rgb)[0].shape[0] >= 1


@pytest.mark.parametrize("seed", range(4))
def test_box_nms_matches_reference(seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(60, 2, generator=g) * 50
    wh = torch.rand(60, 2, generator=g) * 20 + 1
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(60, generator=g)
    scores[5] = scores[7]  # ties resolve by index in both
    for thresh in (0.3, 0.7):
        assert box_nms(boxes, scores, thresh).tolist() == box_nms_reference(boxes, scores, thresh).tolist()


def test_mask_nms_and_boxes():
    masks = torch.zeros(3, 10, 12, dtype=torch.bool)
    masks[0, 2:6, 3:9] = True
    masks[1, 2:6, 3:8] = True  # near-duplicate of 0, lower score
    masks[2, 7:9, 0:2] = True
    keep = mask_nms(masks, torch.tensor([0.9, 0.8, 0.5]), 0.7)
    assert keep.tolist() == [0, 2]
    assert boxes_from_masks(masks).tolist() == [[3, 2, 9, 6], [3, 2, 8, 6], [0, 7, 2, 9]]
    logits = torch.tensor([[[3.0, 0.5, -0.5, -3.0]]])
    assert stability_score(logits, 0.0, 1.0).tolist() == [pytest.approx(1 / 3)]


def test_remove_small_regions():
    m = np.zeros((10, 10), bool)
    m[1:8, 1:8] = True
    m[4, 4] = False  # 1-px hole
    m[9, 9] = True  # 1-px island
    out = remove_small_regions(m, 3)
    assert out[4, 4] and not out[9, 9] and out[1:8, 1:8].all() and out.sum() == 49


def test_region_crops_mask_and_pad():
    rgb = np.zeros((6, 10, 3), np.uint8)
    rgb[...] = 200
    seg = np.full((6, 10), -1, np.int32)
    seg[1:3, 2:10] = 0  # 2 x 8 box -> padded to 8 x 8
    fill = (0.5, 0.25, 0.75)
    crops = region_crops(rgb, seg, fill, 8)
    assert crops.shape == (1, 3, 8, 8)
    torch.testing.assert_close(crops[0, :, 0, 0], torch.tensor(fill))  # padding
    torch.testing.assert_close(crops[0, :, 3:5, :], torch.full((3, 2, 8), 200 / 255), atol=1e-3, rtol=0)


class _FakeCaptioner:
    name = "fake"

    def __init__(self):
        self.seen = []

    def caption(self, images):
        self.seen += images
        return [f'Caption: "Object number {i}."' for i in range(len(images))]


def test_caption_teacher(checkpoints):
    from liftgs.teachers.sam import SamAutoMaskGenerator

    seg = np.full((H, W), -1, np.int32)
    seg[5:15, 5:20], seg[20:30, 30:50] = 0, 1
    captioner = _FakeCaptioner()
    teacher = CaptionTeacher(lambda rgb: seg, captioner, HashingTextEncoder(dim=8))
    frame = _frame()
    labels = teacher(frame)
    assert labels.captions == ["object number 0", "object number 1"]
    ref = HashingTextEncoder(dim=8).encode(labels.captions).pooled.numpy()
    np.testing.assert_allclose(labels.embeddings, ref)
    view = captioner.seen[0]
    np.testing.assert_array_equal(view[5:15, 5:20], frame.rgb[5:15, 5:20])  # region untouched
    assert (view[3, 10] == [255, 0, 0]).all()  # red box just outside the region
    assert (view[35, 2] < frame.rgb[35, 2]).any()  # outside dimmed
    sam, _ = checkpoints
    with_sam = CaptionTeacher(SamAutoMaskGenerator.from_dir(sam, AutoMaskConfig(**LOOSE)), _FakeCaptioner(),
                              HashingTextEncoder(dim=8))
    _check_well_formed(with_sam(frame), 8)


def test_clean_caption_and_highlight_edges():
    assert clean_caption('  "A red chair."\nmore text') == "a red chair"
    assert clean_caption("Answer: the box near the wall") == "the box near the wall"
    assert clean_caption("   ") == "an object"
    out = highlight_region(np.full((4, 4, 3), 100, np.uint8), np.zeros((4, 4), bool))
    assert (out == 65).all()


def test_hf_captioner_tiny_llava(tmp_path, monkeypatch):
    """Any local image-text-to-text checkpoint plugs in; this tiny LLaVA answers noise, cleanly."""
    import warnings

    from liftgs.teachers.caption import HFCaptioner
    from liftgs.testing import write_tiny_captioner

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        captioner = HFCaptioner.from_dir(write_tiny_captioner(tmp_path / "llava"), max_new_tokens=4)
    assert "red box" in captioner._text() and captioner._text().endswith("answer:")
    frame = _frame()
    seg = np.full((H, W), -1, np.int32)
    seg[5:15, 5:20], seg[20:30, 30:50] = 0, 1
    labels = CaptionTeacher(lambda rgb: seg, captioner, HashingTextEncoder(dim=8))(frame)
    assert len(labels.captions) == 2 and all(isinstance(c, str) and c and c.isprintable() for c in labels.captions)
    assert labels.embeddings.shape == (2, 8)
    assert labels.provenance["settings"]["captioner"].endswith("llava")
