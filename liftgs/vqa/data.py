"""Question-answering files: ScanQA JSON, SQA3D JSON and prediction files -> :class:`QAItem`.

**ScanQA** (Azuma et al., CVPR 2022; ``ScanQA_v1.0_{train,val,test_w_obj,test_wo_obj}.json``,
field list in the ScanQA repository's ``docs/dataset.md``): a JSON list of questions::

    {"question_id": "train-scene0000-0", "scene_id": "scene0000_00", "question": "What is ...?",
     "answers": ["brown", ...], "object_ids": [8], "object_names": ["cabinet"]}

The test files have no ``answers`` (``test_wo_obj`` neither ``object_ids`` nor
``object_names``). The synthetic question sets of :mod:`liftgs.vqa.synth` use this layout plus
``question_type`` and ``split``.

**SQA3D** (Ma et al., ICLR 2023; ``v1_balanced_questions_{split}_scannetv2.json`` and
``v1_balanced_sqa_annotations_{split}_scannetv2.json``, as read by the SQA3D repository's
``LLM/eval_sqa3d_llm.py`` and LEO's ``ScanNetSQA3D`` dataset): a questions file
``{"questions": [{"question_id": 220602000002, "scene_id": ..., "situation": ...,
"alternative_situation": [...], "question": ...}]}`` and an annotations file
``{"annotations": [{"question_id": ..., "scene_id": ..., "answers": [{"answer": "piano",
"answer_confidence": "yes", "answer_id": 1}], "question_type": "N/A", "answer_type": "other",
"position": {...}, "rotation": {...}}]}``, joined on ``question_id``. Its ``question_type`` is
"N/A" throughout, so the type of an SQA3D question is the benchmark's by first word
(:func:`sqa3d_question_type`).

**Predictions**: ScanQA's submission layout ``[{"question_id": ..., "answer_top10": [...]}]``
(ranked answers, the first is the prediction), ``[{"question_id": ..., "answer": "..."}]``, or
a JSON object ``{question_id: answer or [ranked answers]}``.

Every reader checks each entry before using it and refuses a bad one with one
:class:`~liftgs.io.errors.DataError` naming the file and the field (``[12].answers``).
Question ids are kept as strings (SQA3D's are integers in the files).
"""

from __future__ import annotations

import json
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liftgs.io.errors import DataError, data_error

__all__ = ["QAItem", "read_scanqa", "read_sqa3d", "read_predictions", "write_scanqa", "scanqa_entry",
           "SQA3D_TYPES", "SCANQA_TYPES", "sqa3d_question_type", "scanqa_question_type"]

SQA3D_TYPES = ("what", "is", "how", "can", "which", "others")
SCANQA_TYPES = ("Place", "Number", "Color", "Object nature", "Object", "Other")


@dataclass
class QAItem:
    """One question about a scene with its reference answers (any of them counts as right)."""

    question_id: str
    scene_id: str
    question: str
    answers: list[str]
    question_type: str = ""  # "" -> classified from the question text when scoring
    situation: str = ""  # SQA3D: the agent's situation description
    object_ids: list[int] = field(default_factory=list)
    object_names: list[str] = field(default_factory=list)
    split: str = ""


def sqa3d_question_type(question: str) -> str:
    """SQA3D's question type by the first word (LEO's ``get_sqa_question_type``)."""
    q = question.lstrip().lower()
    for name in SQA3D_TYPES[:-1]:
        if q[:len(name)] == name:
            return name
    return "others"


def scanqa_question_type(question: str) -> str:
    """ScanQA's question class (``scripts/score.py`` ``qclass1``; case-sensitive substrings)."""
    if "Where" in question:
        return "Place"
    if "How many" in question:
        return "Number"
    if "What color" in question or "What is the color" in question:
        return "Color"
    if any(k in question for k in ("What shape", "What type", "What kind")):
        return "Object nature"
    if "What is" in question:
        return "Object"
    return "Other"


def _load_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise DataError(f"{what} file is missing", path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise data_error(path, f"cannot parse {what} JSON (truncated or corrupt?)", exc) from exc


def _qid(value: Any, path: Path, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        raise DataError(f"{where}.question_id must be a non-empty string or an integer, got {value!r}", path)
    return str(value)


def _row_qid(row: Any, path: Path, where: str, seen: Container[str]) -> str:
    """The question id of entry ``row`` (an object with a ``question_id`` not in ``seen``)."""
    if not isinstance(row, dict):
        raise DataError(f"{where} must be an object, got {type(row).__name__}", path)
    if "question_id" not in row:
        raise DataError(f"{where} lacks the field 'question_id'", path)
    qid = _qid(row["question_id"], path, where)
    if qid in seen:
        raise DataError(f"{where}.question_id {qid!r} appears twice", path)
    return qid


def _text(entry: dict, key: str, path: Path, where: str, required: bool = True) -> str:
    if key not in entry:
        if required:
            raise DataError(f"{where} lacks the field {key!r}", path)
        return ""
    value = entry[key]
    if not isinstance(value, str) or (required and not value.strip()):
        raise DataError(f"{where}.{key} must be a non-empty string, got {value!r}", path)
    return value


def _string_list(value: Any, path: Path, where: str, allow_empty: bool) -> list[str]:
    if (not isinstance(value, list) or not (value or allow_empty)
            or not all(isinstance(v, str) and v.strip() for v in value)):
        raise DataError(f"{where} must be a {'' if allow_empty else 'non-empty '}list of non-empty strings, "
                        f"got {value!r}", path)
    return list(value)


def _int_list(value: Any, path: Path, where: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise DataError(f"{where} must be a list of integers, got {value!r}", path)
    return list(value)


def read_scanqa(path: str | Path, require_answers: bool = True, split: str | None = None) -> list[QAItem]:
    """A ScanQA-format JSON list -> questions in file order.

    ``require_answers=False`` reads the answer-less test files; ``split`` keeps only the entries
    whose ``split`` field equals it (synthetic sets hold every split in one file).
    """
    path = Path(path)
    rows = _load_json(path, "ScanQA")
    if not isinstance(rows, list):
        raise DataError(f"ScanQA JSON must be a list of questions, got a {type(rows).__name__}"
                        + (" (SQA3D files go to read_sqa3d)" if isinstance(rows, dict) else ""), path)
    items, seen = [], set()
    for i, row in enumerate(rows):
        where = f"[{i}]"
        qid = _row_qid(row, path, where, seen)
        seen.add(qid)
        scene_id = _text(row, "scene_id", path, where)
        question = _text(row, "question", path, where)
        if "answers" in row or require_answers:
            if "answers" not in row:
                raise DataError(f"{where} lacks the field 'answers' (an answer-less test file? "
                                "read it with require_answers=False)", path)
            answers = _string_list(row["answers"], path, f"{where}.answers", allow_empty=not require_answers)
        else:
            answers = []
        object_ids = _int_list(row["object_ids"], path, f"{where}.object_ids") if "object_ids" in row else []
        object_names = (_string_list(row["object_names"], path, f"{where}.object_names", allow_empty=True)
                        if "object_names" in row else [])
        item = QAItem(qid, scene_id, question, answers,
                      question_type=_text(row, "question_type", path, where, required=False),
                      situation=_text(row, "situation", path, where, required=False),
                      object_ids=object_ids, object_names=object_names,
                      split=_text(row, "split", path, where, required=False))
        if split is None or item.split == split:
            items.append(item)
    if split is not None and not items:
        splits = sorted({str(r.get("split", "")) for r in rows if isinstance(r, dict)})
        raise DataError(f"no question has split {split!r} (splits in the file: {splits})", path)
    return items


def _wrapped_list(doc: Any, key: str, path: Path, what: str) -> list:
    if not isinstance(doc, dict) or key not in doc:
        raise DataError(f"{what} JSON must be an object with a {key!r} list", path)
    if not isinstance(doc[key], list):
        raise DataError(f"{key} must be a list, got {type(doc[key]).__name__}", path)
    return doc[key]


def read_sqa3d(questions_path: str | Path, annotations_path: str | Path) -> list[QAItem]:
    """SQA3D's questions + annotations files -> questions in the questions file's order.

    The answers are the annotation's ``answers[*].answer``; ``question_type`` is the SQA3D type
    of the question text (what / is / how / can / which / others).
    """
    qpath, apath = Path(questions_path), Path(annotations_path)
    questions = _wrapped_list(_load_json(qpath, "SQA3D questions"), "questions", qpath, "SQA3D questions")
    annotations = _wrapped_list(_load_json(apath, "SQA3D annotations"), "annotations", apath,
                                "SQA3D annotations")
    answers: dict[str, tuple[int, list[str], str]] = {}
    for i, row in enumerate(annotations):
        where = f"annotations[{i}]"
        qid = _row_qid(row, apath, where, answers)
        if "answers" not in row:
            raise DataError(f"{where} lacks the field 'answers'", apath)
        raw = row["answers"]
        if not isinstance(raw, list) or not raw:
            raise DataError(f"{where}.answers must be a non-empty list of {{\"answer\": ...}} objects, "
                            f"got {raw!r}", apath)
        texts = []
        for j, a in enumerate(raw):
            if not isinstance(a, dict) or not isinstance(a.get("answer"), str) or not a["answer"].strip():
                raise DataError(f"{where}.answers[{j}].answer must be a non-empty string, got {a!r}", apath)
            texts.append(a["answer"])
        scene = row.get("scene_id", "")
        if not isinstance(scene, str):
            raise DataError(f"{where}.scene_id must be a string, got {scene!r}", apath)
        answers[qid] = (i, texts, scene)
    items, seen = [], set()
    for i, row in enumerate(questions):
        where = f"questions[{i}]"
        qid = _row_qid(row, qpath, where, seen)
        seen.add(qid)
        scene_id = _text(row, "scene_id", qpath, where)
        question = _text(row, "question", qpath, where)
        situation = _text(row, "situation", qpath, where)
        if qid not in answers:
            raise DataError(f"{where}.question_id {qid!r} has no annotation in {apath}", qpath)
        j, texts, ann_scene = answers[qid]
        if ann_scene and ann_scene != scene_id:
            raise DataError(f"annotations[{j}].scene_id {ann_scene!r} differs from the question's "
                            f"scene_id {scene_id!r} in {qpath}", apath)
        items.append(QAItem(qid, scene_id, question, texts, question_type=sqa3d_question_type(question),
                            situation=situation))
    extra = [qid for qid in answers if qid not in seen]
    if extra:
        raise DataError(f"annotations[{answers[extra[0]][0]}].question_id {extra[0]!r} has no question in "
                        f"{qpath} ({len(extra)} such annotations)", apath)
    return items


def read_predictions(path: str | Path) -> dict[str, list[str]]:
    """A prediction file -> {question_id: ranked answers} (the first answer is the prediction)."""
    path = Path(path)
    doc = _load_json(path, "predictions")
    out: dict[str, list[str]] = {}

    def ranked(value: Any, where: str) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return list(value)
        raise DataError(f"{where} must be an answer string or a non-empty list of strings, got {value!r}", path)

    if isinstance(doc, dict):
        for qid, value in doc.items():
            out[str(qid)] = ranked(value, f"[{qid!r}]")
        return out
    if not isinstance(doc, list):
        raise DataError(f"predictions must be a list of {{question_id, answer_top10 | answer}} objects or an "
                        f"object {{question_id: answer}}, got a {type(doc).__name__}", path)
    for i, row in enumerate(doc):
        where = f"[{i}]"
        qid = _row_qid(row, path, where, out)
        key = "answer_top10" if "answer_top10" in row else "answer" if "answer" in row else None
        if key is None:
            raise DataError(f"{where} lacks the field 'answer_top10' (or 'answer')", path)
        out[qid] = ranked(row[key], f"{where}.{key}")
    return out


def scanqa_entry(item: QAItem) -> dict[str, Any]:
    """The ScanQA-format JSON object of ``item`` (plus ``question_type`` / ``situation`` /
    ``split`` when set)."""
    entry: dict[str, Any] = {"question_id": item.question_id, "scene_id": item.scene_id,
                             "question": item.question, "answers": list(item.answers),
                             "object_ids": list(item.object_ids), "object_names": list(item.object_names)}
    for key in ("question_type", "situation", "split"):
        if getattr(item, key):
            entry[key] = getattr(item, key)
    return entry


def write_scanqa(path: str | Path, items: list[QAItem]) -> Path:
    """Write ``items`` as a ScanQA-format JSON list (atomically); returns the path."""
    from liftgs.config import save_json_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_json_atomic(path, [scanqa_entry(it) for it in items])
    return path
