"""3D question answering: ScanQA / SQA3D readers, EM / refined EM / caption metrics, the synthetic
question sets and the answer-prior baseline."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest

from liftgs.cli import main as cli_main
from liftgs.io.errors import DataError
from liftgs.io.scene_dir import read_scene_json, write_scene, write_splits
from liftgs.synth import STANDARD, room_seed
from liftgs.synth.generate import object_infos
from liftgs.synth.layout import layout_room
from liftgs.types import ObjectInfo, Scene
from liftgs.vqa import (
    CaptionScorer,
    JavaNotFoundError,
    QAItem,
    answer_match,
    answer_prior,
    clean_answer,
    em_at_k,
    prior_predictions,
    read_predictions,
    read_scanqa,
    read_sqa3d,
    score_answers,
    write_scanqa,
)
from liftgs.vqa.data import scanqa_question_type, sqa3d_question_type
from liftgs.vqa.synth import generate_qa, number_word, plural, scene_objects

needs_java = pytest.mark.skipif(shutil.which("java") is None,
                                reason="pycocoevalcap's METEOR and PTB tokenizer need Java "
                                       "(`make java` installs default-jre-headless)")


# ---------------------------------------------------------------------------------------------
# exact match


def test_clean_answer_normalises_like_leo():
    assert clean_answer("The Brown Chair.") == "brown chair"
    assert clean_answer("2 chairs") == "two chairs"
    assert clean_answer("None") == "zero"
    assert clean_answer("an apple") == "apple"
    assert clean_answer("on the tv") == "on TV"  # typo table runs after lower-casing, as in the reference
    assert clean_answer("to the letf") == "to left"
    assert clean_answer("  brown  ") == "brown"
    assert clean_answer("brown .") == "brown "  # spaces are trimmed before punctuation is dropped


def test_answer_match_em_and_refined():
    assert answer_match("brown", ["black", "brown"]) == (1, 1)
    assert answer_match("chair", ["brown chair"]) == (0, 1)  # prediction inside a reference
    assert answer_match("brown chair", ["chair"]) == (0, 1)  # reference inside the prediction
    assert answer_match("on table", ["ontable"]) == (0, 1)  # whitespace ignored for containment
    assert answer_match("sofa", ["bed", "lamp"]) == (0, 0)
    # the first reference that matches either way decides (LEO's answer_match)
    assert answer_match("chair", ["brown chair", "chair"]) == (0, 1)
    assert answer_match("", ["brown"]) == (0, 0)  # an empty answer never matches by containment


def test_em_at_k_is_verbatim():
    assert em_at_k(["brown"], ["brown", "tan"], 1) == 1
    assert em_at_k(["Brown"], ["brown"], 1) == 0
    assert em_at_k(["black", "brown"], ["brown"], 1) == 0
    assert em_at_k(["black", "brown"], ["brown"], 10) == 1
    assert em_at_k([f"a{i}" for i in range(10)] + ["brown"], ["brown"], 10) == 0


def test_question_types():
    assert scanqa_question_type("Where is the chair?") == "Place"
    assert scanqa_question_type("How many chairs are in the room?") == "Number"
    assert scanqa_question_type("What color is the sofa?") == "Color"
    assert scanqa_question_type("What type of table is it?") == "Object nature"
    assert scanqa_question_type("What is on the table?") == "Object"
    assert scanqa_question_type("Is there a lamp in the room?") == "Other"
    assert sqa3d_question_type("What is in front of me?") == "what"
    assert sqa3d_question_type(" Is the door open?") == "is"
    assert sqa3d_question_type("Which way should I go?") == "which"
    assert sqa3d_question_type("Could I sit down?") == "others"


def _items():
    return [
        QAItem("q0", "s0", "What color is the chair?", ["brown", "tan"]),
        QAItem("q1", "s0", "What is on the table?", ["brown chair"]),
        QAItem("q2", "s1", "How many lamps are there?", ["2"]),
        QAItem("q3", "s1", "What is on the bed?", ["pillow"]),
    ]


def test_score_answers_exact_match_by_hand():
    preds = {"q0": "Brown", "q1": "chair", "q2": "two", "q3": "blanket", "other": "ignored"}
    s = score_answers(_items(), preds, ngrams=False)
    # EM@1 verbatim: no prediction equals a reference string ("Brown" != "brown", "two" != "2")
    # EM after clean_answer: q0 brown, q2 two == "2" -> two; EM-R adds q1 (chair in brown chair)
    assert s.overall == {"EM@1": 0.0, "EM": 50.0, "EM-R": 75.0}
    assert s.count == 4
    assert s.per_type["Object"] == {"count": 2.0, "EM@1": 0.0, "EM": 0.0, "EM-R": 50.0}
    assert s.per_type["Color"]["EM"] == 100.0 and s.per_type["Number"]["EM"] == 100.0
    ranked = {"q0": ["black", "brown"], "q1": ["brown chair"], "q2": ["3"], "q3": ["pillow"]}
    s = score_answers(_items(), ranked, ngrams=False)
    assert s.overall["EM@1"] == 50.0 and s.overall["EM@10"] == 75.0 and s.overall["EM"] == 50.0


def test_score_answers_refuses_missing_predictions_and_answerless_items():
    with pytest.raises(ValueError, match="no prediction for 1 of 4 questions.*'q3'"):
        score_answers(_items(), {"q0": "a", "q1": "b", "q2": "c"}, ngrams=False)
    with pytest.raises(ValueError, match="no reference answers"):
        score_answers([QAItem("t0", "s", "What?", [])], {"t0": "x"}, ngrams=False)


def test_missing_java_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(JavaNotFoundError, match="default-jre-headless") as err:
        CaptionScorer()
    assert "\n" not in str(err.value)
    with pytest.raises(JavaNotFoundError):
        score_answers(_items(), {it.question_id: "x" for it in _items()})
    assert score_answers(_items(), {it.question_id: "x" for it in _items()}, ngrams=False).count == 4


# ---------------------------------------------------------------------------------------------
# caption metrics (pycocoevalcap)


@pytest.fixture(scope="module")
def scorer():
    if shutil.which("java") is None:
        pytest.skip("pycocoevalcap's METEOR and PTB tokenizer need Java (`make java` installs default-jre-headless)")
    with CaptionScorer() as s:
        yield s


REFS = {"a": ["Brown.", "tan chair"], "b": ["in the corner of the room", "corner"], "c": ["two"],
        "d": ["on the table, near the lamp"], "e": ["white"]}
PREDS = {"a": "brown wooden chair", "b": "in the corner", "c": "Two!", "d": "on table", "e": "black"}


@needs_java
def test_ptb_tokenize_equals_pycocoevalcap(scorer):
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    texts = {k: [{"caption": t} for t in v] for k, v in REFS.items()}
    assert scorer.ptb_tokenize(REFS) == PTBTokenizer().tokenize(texts)
    assert scorer.ptb_tokenize({"x": ["What's on the TV-stand?"]}) == {"x": ["what 's on the tv-stand"]}


@needs_java
def test_caption_metrics_equal_pycocoevalcap_called_directly(scorer):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    ours = scorer.score(REFS, PREDS)
    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": t} for t in v] for k, v in REFS.items()})
    res = tok.tokenize({k: [{"caption": PREDS[k]}] for k in REFS})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    want = {"BLEU-1": bleu[0], "BLEU-2": bleu[1], "BLEU-3": bleu[2], "BLEU-4": bleu[3],
            "METEOR": scorer._meteor_scorer().compute_score(gts, res)[0],
            "ROUGE-L": Rouge().compute_score(gts, res)[0], "CIDEr": Cider().compute_score(gts, res)[0]}
    assert ours == pytest.approx({k: 100 * v for k, v in want.items()}, rel=1e-9)
    assert 0 < ours["METEOR"] < 100 and ours["CIDEr"] > 0


@needs_java
def test_bleu1_and_rouge_l_by_hand(scorer):
    # "brown wooden chair" vs "brown chair": 2 of 3 unigrams match, the candidate is longer than the
    # reference (brevity penalty 1): BLEU-1 = 2/3. LCS 2: P = 2/3, R = 1, ROUGE-L with beta 1.2 =
    # (1 + 1.44) P R / (R + 1.44 P) = 0.829932
    s = scorer.score({"q": ["Brown chair."]}, {"q": "brown wooden chair"})
    assert s["BLEU-1"] == pytest.approx(100 * 2 / 3, abs=1e-6)
    assert s["ROUGE-L"] == pytest.approx(100 * 2.44 * (2 / 3) / (1 + 1.44 * 2 / 3), abs=1e-6)
    same = scorer.score({"q": ["brown chair"], "r": ["white"]}, {"q": "brown chair", "r": "white"})
    assert same["BLEU-1"] == pytest.approx(100) and same["ROUGE-L"] == pytest.approx(100)
    assert same["METEOR"] > 90


@needs_java
def test_score_answers_with_ngrams(scorer):
    items = [QAItem(k, "s", "What?", v) for k, v in REFS.items()]
    s = score_answers(items, PREDS, scorer=scorer)
    assert s.overall["EM"] == 20.0  # "Two!" -> "two"
    assert s.overall["EM-R"] == 80.0  # a, b, c, d ("on table" inside "on table, near lamp")
    assert s.overall["CIDEr"] == pytest.approx(scorer.score(REFS, PREDS)["CIDEr"])
    clean = score_answers(items, PREDS, scorer=scorer, tokenizer="clean")
    assert clean.overall["BLEU-1"] != s.overall["BLEU-1"]  # LEO's tokenisation keeps the commas


# ---------------------------------------------------------------------------------------------
# readers


def _dump(path, doc):
    path.write_text(json.dumps(doc))
    return path


SCANQA = [
    {"question_id": "train-scene0000-0", "scene_id": "scene0000_00", "question": "What is in the corner?",
     "answers": ["brown cabinet", "cabinet"], "object_ids": [8], "object_names": ["cabinet"]},
    {"question_id": "train-scene0000-1", "scene_id": "scene0000_00", "question": "Where is the sofa?",
     "answers": ["by window"], "object_ids": [2, 3], "object_names": ["sofa", "window"]},
]


def test_read_scanqa_and_write_round_trip(tmp_path):
    items = read_scanqa(_dump(tmp_path / "ScanQA_v1.0_train.json", SCANQA))
    assert [it.question_id for it in items] == ["train-scene0000-0", "train-scene0000-1"]
    assert items[0].answers == ["brown cabinet", "cabinet"] and items[1].object_ids == [2, 3]
    back = read_scanqa(write_scanqa(tmp_path / "out.json", items))
    assert back == items
    test = [{k: v for k, v in row.items() if k not in ("answers", "object_ids", "object_names")} for row in SCANQA]
    assert read_scanqa(_dump(tmp_path / "test_wo_obj.json", test), require_answers=False)[0].answers == []


@pytest.mark.parametrize("change, field", [
    (lambda r: r.pop("answers"), r"\[1\] lacks the field 'answers'"),
    (lambda r: r.update(answers=[]), r"\[1\]\.answers must be a non-empty list"),
    (lambda r: r.update(answers=["ok", 3]), r"\[1\]\.answers must be"),
    (lambda r: r.update(object_ids=["8"]), r"\[1\]\.object_ids must be a list of integers"),
    (lambda r: r.update(question=""), r"\[1\]\.question must be a non-empty string"),
    (lambda r: r.pop("scene_id"), r"\[1\] lacks the field 'scene_id'"),
    (lambda r: r.update(question_id="train-scene0000-0"), r"\[1\]\.question_id .* appears twice"),
])
def test_scanqa_errors_name_file_and_field(tmp_path, change, field):
    rows = json.loads(json.dumps(SCANQA))
    change(rows[1])
    path = _dump(tmp_path / "bad_scanqa.json", rows)
    with pytest.raises(DataError, match=field) as err:
        read_scanqa(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_scanqa_refuses_other_layouts(tmp_path):
    with pytest.raises(DataError, match="must be a list of questions.*read_sqa3d"):
        read_scanqa(_dump(tmp_path / "q.json", {"questions": []}))
    (tmp_path / "cut.json").write_text('[{"question_id": ')
    with pytest.raises(DataError, match="cut.json: cannot parse ScanQA JSON"):
        read_scanqa(tmp_path / "cut.json")


SQA_Q = {"questions": [
    {"question_id": 220602000002, "scene_id": "scene0050_00", "situation": "I am standing by the ottoman.",
     "alternative_situation": ["I stood up from the ottoman."], "question": "What instrument is in front of me?"},
    {"question_id": 220602000003, "scene_id": "scene0050_00", "situation": "I sit on the bed.",
     "alternative_situation": [], "question": "Is the door open?"},
]}
SQA_A = {"annotations": [
    {"question_id": 220602000003, "scene_id": "scene0050_00", "question_type": "N/A", "answer_type": "yes/no",
     "answers": [{"answer": "no", "answer_confidence": "yes", "answer_id": 1}]},
    {"question_id": 220602000002, "scene_id": "scene0050_00", "question_type": "N/A", "answer_type": "other",
     "answers": [{"answer": "piano", "answer_confidence": "yes", "answer_id": 1}],
     "position": {"x": 0.7, "y": 0.0, "z": 0}, "rotation": {"_x": 0, "_y": 0, "_z": -1.0, "_w": 0.0}},
]}


def test_read_sqa3d(tmp_path):
    items = read_sqa3d(_dump(tmp_path / "q.json", SQA_Q), _dump(tmp_path / "a.json", SQA_A))
    assert [(it.question_id, it.answers, it.question_type) for it in items] == [
        ("220602000002", ["piano"], "what"), ("220602000003", ["no"], "is")]
    assert items[0].situation == "I am standing by the ottoman."
    s = score_answers(items, {"220602000002": "a piano", "220602000003": "yes"}, ngrams=False)
    assert s.overall["EM"] == 50.0 and s.per_type["is"]["EM"] == 0.0 and s.per_type["what"]["EM"] == 100.0


def test_sqa3d_errors_name_file_and_field(tmp_path):
    q = _dump(tmp_path / "v1_balanced_questions_val_scannetv2.json", SQA_Q)
    bad = json.loads(json.dumps(SQA_A))
    bad["annotations"][1]["answers"] = [{"answer_id": 1}]
    a = _dump(tmp_path / "v1_balanced_sqa_annotations_val_scannetv2.json", bad)
    with pytest.raises(DataError, match=r"sqa_annotations_val_scannetv2.json: annotations\[1\]\.answers\[0\]\.answer"):
        read_sqa3d(q, a)
    short = {"annotations": SQA_A["annotations"][:1]}
    with pytest.raises(DataError, match=r"questions_val_scannetv2.json: questions\[0\]\.question_id "
                                        r"'220602000002' has no annotation"):
        read_sqa3d(q, _dump(tmp_path / "a2.json", short))
    noq = json.loads(json.dumps(SQA_Q))
    del noq["questions"][1]["situation"]
    with pytest.raises(DataError, match=r"q3.json: questions\[1\] lacks the field 'situation'"):
        read_sqa3d(_dump(tmp_path / "q3.json", noq), _dump(tmp_path / "a3.json", SQA_A))
    with pytest.raises(DataError, match="must be an object with a 'annotations' list"):
        read_sqa3d(q, _dump(tmp_path / "a4.json", []))


def test_read_predictions(tmp_path):
    top10 = [{"scene_id": "s", "question_id": "q0", "answer_top10": ["brown", "tan"]},
             {"question_id": "q1", "answer": "sofa"}]
    assert read_predictions(_dump(tmp_path / "p.json", top10)) == {"q0": ["brown", "tan"], "q1": ["sofa"]}
    assert read_predictions(_dump(tmp_path / "d.json", {"q0": "x", "7": ["y"]})) == {"q0": ["x"], "7": ["y"]}
    with pytest.raises(DataError, match=r"bad.json: \[0\] lacks the field 'answer_top10'"):
        read_predictions(_dump(tmp_path / "bad.json", [{"question_id": "q0", "pred": "x"}]))


# ---------------------------------------------------------------------------------------------
# synthetic question sets


def _write_room(root, sid, objects: dict[int, ObjectInfo]):
    ids = np.array(sorted(objects), dtype=np.int32)
    write_scene(Scene(sid, np.zeros((len(ids), 3)), np.zeros((len(ids), 3)), instance_ids=ids, objects=objects,
                      meta={"source": "synthetic"}), root)


def _layout_rooms(root, n=6, unseen=False):
    """``n`` standard-preset layouts (no rendering): every object gets 20 points, or (``unseen``)
    the first object of each room only 3."""
    for i in range(n):
        room = layout_room(STANDARD, np.random.default_rng(room_seed(5, i)))
        counts = np.full(len(room.objects), 20)
        if unseen:
            counts[0] = 3
        objects = object_infos(room, np.repeat(np.arange(len(room.objects)), counts))
        _write_room(root, f"synth_{i:04d}", objects)
    return root


def _obj(cat, color, size, box, support=-1, points=50):
    return ObjectInfo(cat, {"color": color, "size": size, "box": box, "support": support, "num_points": points})


def _hand_room(root):
    """A table (0) with a mug and a book on it, two chairs beside it, a lamp far away, a stool
    under the table, and a vase-less plant that is barely seen."""
    objects = {
        0: _obj("table", "brown", "large", [1.0, 1.0, 0.0, 2.2, 1.8, 0.75]),
        1: _obj("mug", "red", "small", [1.2, 1.2, 0.75, 1.3, 1.3, 0.85], support=0),
        2: _obj("book", "blue", "small", [1.6, 1.2, 0.75, 1.8, 1.45, 0.79], support=0),
        3: _obj("chair", "black", "medium", [0.5, 1.1, 0.0, 0.9, 1.5, 0.9]),
        4: _obj("chair", "white", "medium", [2.4, 1.1, 0.0, 2.8, 1.5, 0.9]),
        5: _obj("lamp", "yellow", "large", [4.0, 4.0, 0.0, 4.3, 4.3, 1.6]),
        6: _obj("stool", "green", "small", [1.4, 1.3, 0.0, 1.7, 1.6, 0.45]),
        7: _obj("plant", "pink", "medium", [4.5, 0.5, 0.0, 4.8, 0.8, 0.9], points=3),
    }
    _write_room(root, "hand", objects)
    write_splits(root, {"train": ["hand"], "val": []})
    return root


def test_hand_room_questions_match_its_metadata(tmp_path):
    items = generate_qa(_hand_room(tmp_path / "d"), per_type=20)
    got = {(it.question_type, it.question): it.answers for it in items}
    assert got[("counting", "How many chairs are in the room?")] == ["two"]
    assert got[("counting", "How many tables are in the room?")] == ["one"]
    assert ("counting", "How many plants are in the room?") not in got  # its only plant is not seen
    assert got[("color", "What color is the table?")] == ["brown"]
    assert ("color", "What color is the chair?") not in got  # two chairs: ambiguous
    assert not any("plant" in q for _, q in got)
    assert got[("size", "Is the table big or small?")] == ["big"]
    assert got[("size", "Is the stool big or small?")] == ["small"]
    assert ("size", "Is the mug big or small?") in got and ("size", "Is the lamp big or small?") in got
    assert got[("relation", "What is on the table?")] == ["book", "mug"]
    assert got[("relation", "What is under the table?")] == ["stool"]
    assert got[("relation", "What is next to the table?")] == ["chair"]  # the mug and book rest on it
    yes = {q for (t, q), a in got.items() if t == "existence" and a == ["yes"]}
    no = {q for (t, q), a in got.items() if t == "existence" and a == ["no"]}
    assert len(yes) == len(no) == 6  # the 6 seen categories (fewer than per_type // 2 = 10)
    assert "Is there a plant in the room?" not in yes | no  # present but unseen: neither yes nor no
    assert all(it.split == "train" and it.question_id.startswith("train-hand-") for it in items)
    rel = next(it for it in items if it.question == "What is on the table?")
    assert rel.object_ids == [0, 1, 2] and rel.object_names == ["table", "mug", "book"]


def test_generated_answers_are_consistent_with_scene_json(tmp_path):
    root = _layout_rooms(tmp_path / "d", n=8, unseen=True)
    items = generate_qa(root, seed=3)
    assert Counter(it.question_type for it in items).keys() == {"counting", "color", "existence", "size", "relation"}
    objs = {p: scene_objects(read_scene_json(root / p), root / p / "scene.json") for p in {it.scene_id for it in items}}
    for it in items:
        objects = objs[it.scene_id]
        by_cat = Counter(o.category for o in objects)
        ref = {o.id: o for o in objects}
        if it.question_type == "counting":
            cat = next(c for c in by_cat if it.question == f"How many {plural(c)} are in the room?")
            assert it.answers == [number_word(by_cat[cat])] and all(ref[i].seen for i in it.object_ids)
        elif it.question_type == "color":
            (oid,) = it.object_ids
            assert by_cat[ref[oid].category] == 1 and it.answers == [ref[oid].color] and ref[oid].seen
        elif it.question_type == "existence":
            cat = it.question[len("Is there a "):-len(" in the room?")].removeprefix("n ")
            assert it.answers == (["yes"] if any(o.category == cat and o.seen for o in objects) else ["no"])
            assert it.answers == ["yes"] or by_cat[cat] == 0
        elif it.question_type == "size":
            (oid,) = it.object_ids
            assert it.answers == [{"large": "big", "small": "small"}[ref[oid].size]]
        else:
            anchor, *targets = it.object_ids
            assert sorted({ref[t].category for t in targets}) == it.answers
            if it.question.startswith("What is on"):
                assert all(ref[t].support == anchor for t in targets)
            assert all(ref[t].seen for t in targets) and ref[anchor].seen
    unseen = {sid: objs[sid][0] for sid in objs}  # object 0 of every room has 3 points
    for it in items:
        assert unseen[it.scene_id].id not in it.object_ids


def test_generation_is_deterministic_balanced_and_split_by_scene(tmp_path):
    root = _layout_rooms(tmp_path / "d", n=10)
    a, b = generate_qa(root, seed=1), generate_qa(root, seed=1)
    assert a == b
    assert a != generate_qa(root, seed=2)
    for sid in {it.scene_id for it in a}:
        answers = Counter(it.answers[0] for it in a if it.scene_id == sid and it.question_type == "existence")
        assert answers["yes"] == answers["no"] > 0
    split_of = {it.scene_id: it.split for it in a}
    assert set(split_of.values()) == {"train", "val"} and sum(s == "val" for s in split_of.values()) == 2
    write_splits(root, {"train": [f"synth_{i:04d}" for i in range(7)],
                        "val": [f"synth_{i:04d}" for i in range(7, 10)]})
    with_file = generate_qa(root, seed=1)
    assert {it.scene_id for it in with_file if it.split == "val"} == {"synth_0007", "synth_0008", "synth_0009"}
    # a room's questions do not depend on the other rooms
    one = tmp_path / "one"
    shutil.copytree(root / "synth_0003", one / "synth_0003")
    alone = [it.question for it in generate_qa(one, seed=1)]
    assert alone == [it.question for it in with_file if it.scene_id == "synth_0003"]


def test_generation_errors_name_file_and_field(tmp_path):
    root = _hand_room(tmp_path / "d")
    doc = json.loads((root / "hand" / "scene.json").read_text())
    doc["objects"][2]["attributes"]["box"] = [0, 0, 0, 1, 1]
    (root / "hand" / "scene.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"hand/scene.json: objects\[2\]\.attributes\.box must be 6 finite"):
        generate_qa(root)
    doc["meta"]["source"] = "scannet"
    (root / "hand" / "scene.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"hand/scene.json: meta.source is 'scannet'"):
        generate_qa(root)
    with pytest.raises(DataError, match="dataset root is not a directory"):
        generate_qa(tmp_path / "missing")


def test_synth_qa_command(tmp_path, capsys):
    root = _layout_rooms(tmp_path / "d", n=5)
    out = tmp_path / "qa.json"
    assert cli_main(["synth-qa", "--data", str(root), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "questions about 5 rooms" in printed and "by type: counting" in printed
    items = read_scanqa(out)
    assert items == generate_qa(root)
    assert {it.split for it in read_scanqa(out, split="val")} == {"val"}
    assert cli_main(["synth-qa", "--data", str(root), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("liftgs synth-qa:") and "--overwrite" in err and err.count("\n") == 1
    assert cli_main(["synth-qa", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "x.json")]) == 2
    assert "dataset root is not a directory" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# answer-prior baseline


def test_answer_prior_by_hand():
    train = [QAItem("t0", "s", "How many chairs?", ["two"], "counting"),
             QAItem("t1", "s", "How many lamps?", ["one"], "counting"),
             QAItem("t2", "s", "How many beds?", ["one"], "counting"),
             QAItem("t3", "s", "Is there a bed?", ["yes"], "existence"),
             QAItem("t4", "s", "Is there a mug?", ["no"], "existence"),
             QAItem("t5", "s", "What is on the table?", ["mug", "book"], "relation"),
             QAItem("t6", "s", "What is on the bed?", ["pillow", "book"], "relation")]
    prior = answer_prior(train)
    # ties go to the alphabetically first answer: "no" over "yes", overall "book" (2) over "one" (2)
    assert prior == {"counting": "one", "existence": "no", "relation": "book", "": "book"}
    val = [QAItem("v0", "s", "How many mugs?", ["one"], "counting"),
           QAItem("v1", "s", "How many books?", ["three"], "counting"),
           QAItem("v2", "s", "Is there a lamp?", ["yes"], "existence"),
           QAItem("v3", "s", "Is there a sofa?", ["no"], "existence"),
           QAItem("v4", "s", "What is next to the bed?", ["lamp", "book"], "relation"),
           QAItem("v5", "s", "What color is the bed?", ["red"], "color")]
    preds = prior_predictions(val, prior)
    assert preds == {"v0": "one", "v1": "one", "v2": "no", "v3": "no", "v4": "book", "v5": "book"}
    s = score_answers(val, preds, ngrams=False)
    assert s.overall["EM"] == pytest.approx(100 * 3 / 6)
    assert s.per_type["counting"]["EM"] == 50.0 and s.per_type["color"]["EM"] == 0.0


def test_prior_on_a_synthetic_set_scores_half_of_the_balanced_yes_no_questions(tmp_path):
    items = generate_qa(_layout_rooms(tmp_path / "d", n=10), seed=0)
    train = [it for it in items if it.split == "train"]
    val = [it for it in items if it.split == "val"]
    prior = answer_prior(train)
    assert prior["existence"] in ("yes", "no")
    s = score_answers(val, prior_predictions(val, prior), ngrams=False)
    assert s.per_type["existence"]["EM"] == 50.0
    hits = sum(prior[it.question_type] in it.answers for it in val)
    assert s.overall["EM@1"] == pytest.approx(100 * hits / len(val))
    assert 0 < s.overall["EM"] < 100
