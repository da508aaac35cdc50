"""SyntheticTeacher: perfect labels with knobs off; each knob makes exactly its kind of error."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from liftgs.teachers import SyntheticNoise, SyntheticTeacher, label_frames
from liftgs.text import HashingTextEncoder
from liftgs.types import Camera, Frame, ObjectInfo, Scene

H = W = 64
BIG, TOUCHING, SMALL, SOFA = 100, 101, 102, 103  # global instance ids (never seen in labels)


def _instance_map() -> np.ndarray:
    inst = np.full((H, W), -1, np.int32)
    inst[0:40, 0:30] = BIG  # 1200 px
    inst[0:40, 30:50] = TOUCHING  # 800 px, touches BIG
    inst[50:56, 50:56] = SMALL  # 36 px < 1% of the image
    inst[45:64, 0:21] = SOFA  # 399 px, isolated
    return inst


def _scene(inst: np.ndarray | None = None, name: str = "000000") -> tuple[Scene, Frame]:
    inst = _instance_map() if inst is None else inst
    cam = Camera(np.array([[60.0, 0, 32], [0, 60.0, 32], [0, 0, 1]]), np.eye(4), W, H)
    frame = Frame(cam, np.zeros((H, W, 3), np.uint8), instance_ids=inst, name=name)
    objects = {
        BIG: ObjectInfo("chair", {"color": "red", "size": "large", "caption": "a large red chair"}),
        TOUCHING: ObjectInfo("table", {"color": "blue", "size": "small", "caption": "a small blue table"}),
        SMALL: ObjectInfo("lamp", {"color": "green", "caption": "a green lamp"}),
        SOFA: ObjectInfo("sofa", {"color": "white", "size": "medium"}),  # no caption: composed
    }
    return Scene("room0", np.zeros((1, 3)), np.zeros((1, 3)), [frame], objects=objects), frame


CLEAN_CAPTIONS = {BIG: "a large red chair", TOUCHING: "a small blue table", SMALL: "a green lamp",
                  SOFA: "a medium white sofa"}


def _teacher(**noise) -> SyntheticTeacher:
    return SyntheticTeacher(HashingTextEncoder(dim=16), SyntheticNoise(**noise))


def _label(**noise):
    scene, frame = _scene()
    return _teacher(**noise)(frame, scene)


def _owners(labels) -> list[set[int]]:
    """Per segment, the instance ids it covers."""
    inst = _instance_map()
    return [set(np.unique(inst[labels.segments == k]).tolist()) - {-1} for k in range(labels.num_segments)]


def test_clean_labels_are_exact_and_frame_local():
    labels = _label()
    inst = _instance_map()
    assert labels.segments.dtype == np.int32 and labels.segments.shape == (H, W)
    assert labels.num_segments == 4 and labels.embeddings.shape == (4, 16)
    assert set(np.unique(labels.segments)) == {-1, 0, 1, 2, 3}  # local indices, not instance ids
    for k, owner in enumerate(_owners(labels)):
        (oid,) = owner
        np.testing.assert_array_equal(labels.segments == k, inst == oid)
        assert labels.captions[k] == CLEAN_CAPTIONS[oid]
    ref = HashingTextEncoder(dim=16).encode(labels.captions).pooled.numpy()
    np.testing.assert_allclose(labels.embeddings, ref, atol=1e-6)
    assert (labels.segments == -1).sum() == (inst == -1).sum()
    assert labels.provenance["teacher"] == "synthetic"


def test_indices_are_shuffled_per_frame_and_deterministic():
    scene, frame = _scene()
    t = _teacher()
    a, b = t(frame, scene), t(frame, scene)
    np.testing.assert_array_equal(a.segments, b.segments)
    orders = set()
    for shift in range(8):  # other frames (other content) get other orders
        sc, fr = _scene(np.roll(_instance_map(), shift, axis=1))
        orders.add(tuple(t(fr, sc).captions))
    assert len(orders) > 1


def test_all_knobs_zero_is_clean_and_batching_matches_single():
    scene, frame = _scene()
    clean = _label()
    explicit = _teacher(drop_attribute=0, swap_attribute=0, synonym=0, paraphrase=0, merge=0, split=0,
                        edge=0, drop_small=0, seed=0)(frame, scene)
    np.testing.assert_array_equal(clean.segments, explicit.segments)
    assert clean.captions == explicit.captions
    t = _teacher(**SyntheticNoise.realistic().__dict__)
    scene2, frame2 = _scene(np.roll(_instance_map(), 3, axis=0), name="000001")
    scene.frames.append(frame2)
    batched = label_frames(t, [frame, frame2], scene)
    for got, fr in zip(batched, [frame, frame2]):
        single = t(fr, scene)
        np.testing.assert_array_equal(got.segments, single.segments)
        assert got.captions == single.captions


def test_drop_attribute_leaves_only_the_noun():
    labels, clean = _label(drop_attribute=1.0), _label()
    np.testing.assert_array_equal(labels.segments, clean.segments)
    assert sorted(labels.captions) == ["a chair", "a lamp", "a sofa", "a table"]


def test_swap_attribute_changes_values_not_nouns():
    labels, clean = _label(swap_attribute=1.0), _label()
    np.testing.assert_array_equal(labels.segments, clean.segments)
    for cap, ref in zip(labels.captions, clean.captions):
        assert cap != ref and cap.split()[-1] == ref.split()[-1] and len(cap.split()) == len(ref.split())
    big = labels.captions[[k for k, o in enumerate(_owners(labels)) if o == {BIG}][0]]
    assert "red" not in big.split() and "large" not in big.split()


def test_synonym_rewords_every_known_word():
    labels, clean = _label(synonym=1.0), _label()
    np.testing.assert_array_equal(labels.segments, clean.segments)
    for cap, ref in zip(labels.captions, clean.captions):
        assert not set(cap.split()) & (set(ref.split()) - {"a", "an"}), (cap, ref)


def test_paraphrase_rewords_but_keeps_content():
    labels, clean = _label(paraphrase=1.0), _label()
    np.testing.assert_array_equal(labels.segments, clean.segments)
    for cap, ref in zip(labels.captions, clean.captions):
        assert cap != ref
        content = set(ref.split()) - {"a", "an"}
        assert content <= set(cap.replace(",", " ").split()), (cap, ref)


def test_merge_joins_touching_segments_with_the_larger_caption():
    labels = _label(merge=1.0)
    owners = _owners(labels)
    assert labels.num_segments == 3
    merged = [k for k, o in enumerate(owners) if o == {BIG, TOUCHING}]
    assert len(merged) == 1 and labels.captions[merged[0]] == CLEAN_CAPTIONS[BIG]
    assert sorted(map(sorted, owners)) == [[BIG, TOUCHING], [SMALL], [SOFA]]


def test_split_cuts_large_segments_in_two():
    labels = _label(split=1.0, split_min_fraction=0.05)
    owners = _owners(labels)
    assert labels.num_segments == 7
    for oid, parts in ((BIG, 2), (TOUCHING, 2), (SOFA, 2), (SMALL, 1)):
        ks = [k for k, o in enumerate(owners) if o == {oid}]
        assert len(ks) == parts and all(labels.captions[k] == CLEAN_CAPTIONS[oid] for k in ks)
        union = np.isin(labels.segments, ks)
        np.testing.assert_array_equal(union, _instance_map() == oid)
        if parts == 2:  # halves of similar size
            areas = [(labels.segments == k).sum() for k in ks]
            assert min(areas) >= 0.4 * sum(areas)


def test_edge_noise_moves_only_boundary_pixels():
    r = 2
    labels, clean = _label(edge=1.0, edge_px=r), _label()
    inst = _instance_map()
    # compare in instance-id space (indices may renumber if a segment vanished)
    def to_inst(lab):
        own = [min(o) if o else -1 for o in _owners(lab)]
        lut = np.array(own + [-1])
        return lut[lab.segments]
    changed = to_inst(labels) != to_inst(clean)
    size = 2 * r + 1
    band = ndimage.maximum_filter(inst, size=size) != ndimage.minimum_filter(inst, size=size)
    assert changed.any() and not (changed & ~band).any()
    assert sorted(labels.captions) == sorted(clean.captions)


def test_drop_small_removes_only_small_segments():
    labels, clean = _label(drop_small=1.0, small_fraction=0.01), _label()
    assert labels.num_segments == 3
    assert sorted(min(o) for o in _owners(labels)) == [BIG, TOUCHING, SOFA]
    assert (labels.segments[_instance_map() == SMALL] == -1).all()
    assert sorted(labels.captions) == sorted(c for c in clean.captions if c != CLEAN_CAPTIONS[SMALL])


def test_knobs_are_independent_streams():
    """Turning a caption knob on never moves a pixel; turning a geometry knob on never rewords."""
    geo, both = _label(split=0.5, edge=0.5), _label(split=0.5, edge=0.5, synonym=0.5, paraphrase=0.5)
    np.testing.assert_array_equal(geo.segments, both.segments)
    words, words_geo = _label(synonym=0.5, paraphrase=0.5), _label(synonym=0.5, paraphrase=0.5, drop_small=1.0)
    assert set(words_geo.captions) <= set(words.captions)


def test_seed_changes_noise():
    a, b = _label(synonym=0.5, paraphrase=0.5, seed=1), _label(synonym=0.5, paraphrase=0.5, seed=2)
    assert a.captions != b.captions or not np.array_equal(a.segments, b.segments)


def test_errors_are_clear():
    scene, frame = _scene()
    with pytest.raises(ValueError, match="probability"):
        SyntheticNoise(merge=1.5)
    with pytest.raises(ValueError, match="needs the frame's scene"):
        _teacher()(frame)
    frame.instance_ids = None
    with pytest.raises(ValueError, match="no instance_ids"):
        _teacher()(frame, scene)


def test_noisy_captions_mention_only_what_the_clean_caption_does():
    """The synthetic benchmark captions "a red shelf" although the object also has a size."""
    scene, frame = _scene()
    scene.objects[BIG] = ObjectInfo("shelf", {"color": "red", "size": "large", "caption": "a red shelf"})
    t = SyntheticTeacher(HashingTextEncoder(dim=16), SyntheticNoise(drop_attribute=1.0))
    caps = t(frame, scene).captions
    assert "a shelf" in caps
    t = SyntheticTeacher(HashingTextEncoder(dim=16), SyntheticNoise(swap_attribute=1.0))
    big = [c for c in t(frame, scene).captions if c.endswith("shelf")][0]
    assert len(big.split()) == 3 and "red" not in big


def test_compact_segments_fast_path_matches_unique():
    from liftgs.teachers import compact_segments

    rng = np.random.default_rng(0)
    seg = rng.choice([-1, 3, 7, 8, 20], size=(9, 11)).astype(np.int32)
    fast, ids = compact_segments(seg)
    uniq, inverse = np.unique(seg, return_inverse=True)
    np.testing.assert_array_equal(ids, uniq[1:])
    np.testing.assert_array_equal(fast, inverse.reshape(seg.shape) - 1)
    big = seg.astype(np.int64) * 10**9  # huge labels: the np.unique path
    slow, ids_slow = compact_segments(np.where(seg >= 0, big, -1))
    np.testing.assert_array_equal(slow, fast)
    assert compact_segments(np.full((2, 2), -1, np.int32))[1].size == 0


def test_on_a_generated_room():
    """End to end on the real synthetic generator (quick preset), knobs on."""
    from liftgs.synth import QUICK, generate_room

    scene = generate_room(QUICK, 0)
    t = SyntheticTeacher(HashingTextEncoder(dim=16), SyntheticNoise.realistic())
    for frame, labels in zip(scene.frames, label_frames(t, scene.frames, scene)):
        assert labels.segments.shape == frame.instance_ids.shape
        assert labels.num_segments == len(labels.captions) == labels.embeddings.shape[0]
        assert labels.segments.min(initial=-1) >= -1 and labels.segments.max(initial=-1) < labels.num_segments
    empty = Frame(scene.frames[0].camera, scene.frames[0].rgb, instance_ids=np.full_like(scene.frames[0].instance_ids, -1))
    labels = t(empty, scene)
    assert labels.num_segments == 0 and labels.embeddings.shape == (0, 16) and (labels.segments == -1).all()
