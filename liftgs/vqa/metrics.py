"""3D question-answering metrics as ScanQA, SQA3D and LEO score them.

Exact match, three forms (all as percentages of the questions):

* **EM@1 / EM@10** -- ScanQA's ``scripts/score.py`` (``evals_json``): the top-1 answer (any of
  the top-10) is one of the reference answers, strings compared verbatim;
* **EM** and **EM-R** (refined EM) -- LEO's ``evaluator/scanqa_eval.py`` ``answer_match`` on
  answers normalised by LEO's ``data/data_utils.py`` ``clean_answer`` (the normalisation of
  SQA3D's ``LLM/eval_sqa3d_llm.py``): the references are tried in order and the first that
  matches decides -- equal strings count for EM and EM-R, one containing the other once all
  whitespace is removed counts for EM-R only. SQA3D's EM / EM-R (LEO's ``sqa3d_eval.py``) are
  these with one reference. One deliberate difference: an answer that normalises to nothing
  never matches by containment (in LEO the empty string is contained in every reference, so an
  empty output would score 100 % EM-R).

The n-gram metrics are pycocoevalcap 1.2's, the COCO caption evaluation code the field uses,
on the top-1 answer against all references: BLEU-1..4 (``Bleu(4)``, "closest" reference
length), METEOR 1.5 (``Meteor``, ``-l en -norm``), ROUGE-L (``Rouge``, beta 1.2) and CIDEr
(``Cider``: n = 1..4, Gaussian length penalty sigma 6, document frequencies from the scored
references), times 100. Texts are tokenised as in ScanQA's ``score.py`` -- the Stanford PTB
tokenizer that ships with pycocoevalcap, lower-cased, punctuation tokens dropped --
or (``tokenizer="clean"``) normalised by ``clean_answer`` and split on spaces, as in LEO's
evaluators. SPICE is not computed (it downloads Stanford CoreNLP models).

METEOR and the PTB tokenizer run Java: :class:`CaptionScorer` finds ``java`` on ``PATH`` or
raises :class:`JavaNotFoundError` (one line: install a Java runtime, on Debian
``default-jre-headless``). It writes its temporary files in the system's temporary folder, not
inside the installed package, and keeps one METEOR process until :meth:`CaptionScorer.close`.

Question types for the per-type breakdown: an item's ``question_type`` when it has one (the
synthetic sets, and SQA3D's first-word types set by :func:`liftgs.vqa.data.read_sqa3d`), else
ScanQA's classes of ``score.py`` ``qclass1`` (:func:`scanqa_question_type`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from liftgs.vqa.data import SCANQA_TYPES, SQA3D_TYPES, QAItem, scanqa_question_type, sqa3d_question_type

__all__ = ["clean_answer", "answer_match", "em_at_k", "scanqa_question_type", "sqa3d_question_type",
           "SQA3D_TYPES", "SCANQA_TYPES", "JavaNotFoundError", "java_executable", "CaptionScorer",
           "QAScores", "score_answers", "NGRAM_METRICS"]

NGRAM_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")

_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                 "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
                 "nineteen", "twenty"]

# clean_answer, step by step in the reference's order (each a re.sub on the lower-cased text)
_CLEAN_STEPS: list[tuple[str, str]] = [
    (r"[ ]+$", ""), (r"^[ ]+", ""), (r" {2,}", " "), (r"\.[ ]{2,}", ". "),
    (r"[^a-zA-Z0-9,'\s\-:]+", ""),  # drops other punctuation and non-ASCII characters
    ("ç", "c"), ("’", "'"),
    # annotators' typos
    (r"\bletf\b", "left"), (r"\blet\b", "left"), (r"\btehre\b", "there"), (r"\brigth\b", "right"),
    (r"\brght\b", "right"), (r"\bbehine\b", "behind"), (r"\btv\b", "TV"), (r"\bchai\b", "chair"),
    (r"\bwasing\b", "washing"), (r"\bwaslked\b", "walked"), (r"\boclock\b", "o'clock"),
    (r"\bo'[ ]+clock\b", "o'clock"),
    # numbers as words
    (r"\b0\b", "zero"), (r"\bnone\b", "zero"),
    *[(rf"\b{n}\b", w) for n, w in enumerate(_NUMBER_WORDS) if n > 0],
    (r"\b23\b", "twenty-three"),
    # "no1", "mat2" -> "no", "mat"; articles before a word
    (r"\b([a-zA-Z]+)([0-9])\b", r"\g<1>"),
    (r"\ba\b ([a-zA-Z]+)", r"\g<1>"), (r"\ban\b ([a-zA-Z]+)", r"\g<1>"), (r"\bthe\b ([a-zA-Z]+)", r"\g<1>"),
    (r"\bbackwards\b", "backward"),
]
_CLEAN = [(re.compile(p), r) for p, r in _CLEAN_STEPS]


def clean_answer(text: str) -> str:
    """LEO's / SQA3D's answer normalisation: lower case, punctuation dropped, typos fixed, numbers
    0-20 (and 23, "none") as words, articles before a word dropped."""
    out = text.lower()
    for pattern, repl in _CLEAN:
        out = pattern.sub(repl, out)
    return out


def answer_match(pred: str, refs: Sequence[str]) -> tuple[int, int]:
    """(EM, EM-R) of a normalised prediction against normalised references (LEO's ``answer_match``:
    the first reference that matches either way decides)."""
    squeezed = "".join(pred.split())
    for ref in refs:
        if pred == ref:
            return 1, 1
        r = "".join(ref.split())
        if squeezed and r and (squeezed in r or r in squeezed):
            return 0, 1
    return 0, 0


def em_at_k(ranked: Sequence[str], refs: Sequence[str], k: int) -> int:
    """ScanQA's EM@k: 1 if one of the first ``k`` ranked answers is a reference (verbatim)."""
    return int(any(a in refs for a in list(ranked)[:k]))


class JavaNotFoundError(OSError):
    """No ``java`` on ``PATH`` for pycocoevalcap's METEOR and PTB tokenizer."""


def java_executable() -> str:
    """The ``java`` on ``PATH``, or :class:`JavaNotFoundError` saying what to install (without Java,
    :func:`score_answers` with ``ngrams=False`` still gives the exact-match metrics)."""
    java = shutil.which("java")
    if java is None:
        raise JavaNotFoundError("the METEOR and PTB-tokenizer steps of the caption metrics (pycocoevalcap) run "
                                "Java and no `java` is on PATH: install a Java runtime (Debian: apt-get install "
                                "default-jre-headless)")
    return java


def _coco():
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
        from pycocoevalcap.tokenizer import ptbtokenizer
    except ImportError as exc:  # pragma: no cover - a pinned dependency
        raise ImportError("the caption metrics need pycocoevalcap: pip install pycocoevalcap==1.2") from exc
    return Bleu, Cider, Rouge, ptbtokenizer


class CaptionScorer:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr of pycocoevalcap 1.2, holding one METEOR process.

    Use it as a context manager (or call :meth:`close`) to end the METEOR process; several
    :meth:`score` calls share it (METEOR takes some seconds to load its paraphrase table).
    """

    def __init__(self) -> None:
        self.java = java_executable()
        _coco()
        self._meteor = None

    def __enter__(self) -> CaptionScorer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        meteor, self._meteor = self._meteor, None
        if meteor is not None:
            meteor.__del__()  # closes its stdin and waits for the java process

    def _meteor_scorer(self):
        if self._meteor is None:
            from pycocoevalcap.meteor.meteor import Meteor

            self._meteor = Meteor()
        return self._meteor

    def ptb_tokenize(self, texts: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
        """pycocoevalcap's ``PTBTokenizer.tokenize`` (same jar, flags and punctuation list) on
        ``{key: [texts]}``, with its temporary file outside the installed package."""
        ptb = _coco()[3]
        jar = Path(ptb.__file__).parent / ptb.STANFORD_CORENLP_3_4_1_JAR
        keys = [k for k, v in texts.items() for _ in v]
        lines = [t.replace("\n", " ") for v in texts.values() for t in v]
        with tempfile.TemporaryDirectory(prefix="liftgs-ptb-") as tmp:
            source = Path(tmp) / "sentences.txt"
            source.write_bytes("\n".join(lines).encode())
            proc = subprocess.run([self.java, "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer",
                                   "-preserveLines", "-lowerCase", str(source)], capture_output=True)
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            raise RuntimeError(f"the PTB tokenizer (java) failed with status {proc.returncode}: {tail[0]}")
        out_lines = proc.stdout.decode().split("\n")
        if len(out_lines) < len(keys):
            raise RuntimeError(f"the PTB tokenizer returned {len(out_lines)} lines for {len(keys)} texts")
        out: dict[str, list[str]] = {}
        for key, line in zip(keys, out_lines):
            out.setdefault(key, []).append(" ".join(w for w in line.rstrip().split(" ")
                                                    if w not in ptb.PUNCTUATIONS))
        return out

    def score(self, refs: Mapping[str, Sequence[str]], preds: Mapping[str, str],
              tokenizer: str = "ptb") -> dict[str, float]:
        """The n-gram metrics (x100) of one prediction per key against that key's references."""
        if tokenizer not in ("ptb", "clean"):
            raise ValueError(f"tokenizer must be 'ptb' or 'clean', got {tokenizer!r}")
        keys = list(refs)
        if not keys:
            raise ValueError("no questions to score")
        if tokenizer == "ptb":
            gts = self.ptb_tokenize({k: list(refs[k]) for k in keys})
            res = self.ptb_tokenize({k: [preds[k]] for k in keys})
        else:
            gts = {k: [clean_answer(r).replace("\n", " ") for r in refs[k]] for k in keys}
            res = {k: [clean_answer(preds[k]).replace("\n", " ")] for k in keys}
        Bleu, Cider, Rouge, _ = _coco()
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        meteor, _ = self._meteor_scorer().compute_score(gts, res)
        rouge, _ = Rouge().compute_score(gts, res)
        cider, _ = Cider().compute_score(gts, res)
        values = [*bleu, meteor, rouge, cider]
        return {name: 100.0 * float(v) for name, v in zip(NGRAM_METRICS, values)}


@dataclass
class QAScores:
    """Scores of a set of answers: ``overall`` metric -> value (percent), ``per_type`` question
    type -> {"count", "EM@1", "EM", "EM-R"}."""

    overall: dict[str, float]
    per_type: dict[str, dict[str, float]] = field(default_factory=dict)
    count: int = 0

    def to_dict(self) -> dict:
        return {"count": self.count, "overall": dict(self.overall), "per_type": {k: dict(v) for k, v in
                                                                               self.per_type.items()}}

    def to_markdown(self) -> str:
        """Two Markdown tables: the overall metrics, then EM by question type."""
        names = list(self.overall)
        lines = ["| questions | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names),
                 f"| {self.count} | " + " | ".join(f"{self.overall[n]:.1f}" for n in names) + " |"]
        if self.per_type:
            cols = ["EM@1", "EM", "EM-R"]
            lines += ["", "| type | questions | " + " | ".join(cols) + " |", "|---|---:|" + "---:|" * len(cols)]
            for t, row in self.per_type.items():
                lines.append(f"| {t} | {int(row['count'])} | " + " | ".join(f"{row[c]:.1f}" for c in cols) + " |")
        return "\n".join(lines)


def _ranked(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def score_answers(items: Sequence[QAItem], predictions: Mapping[str, str | Sequence[str]], *,
                  ngrams: bool = True, tokenizer: str = "ptb", scorer: CaptionScorer | None = None) -> QAScores:
    """EM@1 (+ EM@10 when ranked lists are given), EM, EM-R and (``ngrams``) BLEU-1..4, METEOR,
    ROUGE-L, CIDEr of ``predictions`` ({question_id: answer or ranked answers}) on ``items``.

    Every item needs reference answers and a prediction; predictions of other questions are
    ignored. ``scorer`` reuses a :class:`CaptionScorer` (else one is made and closed here).
    """
    if not items:
        raise ValueError("no questions to score")
    no_refs = [it.question_id for it in items if not it.answers]
    if no_refs:
        raise ValueError(f"{len(no_refs)} questions have no reference answers (first: {no_refs[0]!r}); "
                         "an answer-less test split cannot be scored here")
    missing = [it.question_id for it in items if it.question_id not in predictions]
    if missing:
        raise ValueError(f"no prediction for {len(missing)} of {len(items)} questions "
                         f"(first: question_id {missing[0]!r})")
    ranked = {it.question_id: _ranked(predictions[it.question_id]) for it in items}
    empty = [q for q, r in ranked.items() if not r]
    if empty:
        raise ValueError(f"the prediction of question_id {empty[0]!r} is an empty list")
    top10 = any(len(r) > 1 for r in ranked.values())
    rows = []
    for it in items:
        r = ranked[it.question_id]
        em, em_r = answer_match(clean_answer(r[0]), [clean_answer(a) for a in it.answers])
        rows.append((it.question_type or scanqa_question_type(it.question),
                     em_at_k(r, it.answers, 1), em_at_k(r, it.answers, 10), em, em_r))
    n = len(rows)
    overall = {"EM@1": 100.0 * sum(r[1] for r in rows) / n}
    if top10:
        overall["EM@10"] = 100.0 * sum(r[2] for r in rows) / n
    overall["EM"] = 100.0 * sum(r[3] for r in rows) / n
    overall["EM-R"] = 100.0 * sum(r[4] for r in rows) / n
    per_type: dict[str, dict[str, float]] = {}
    for t in dict.fromkeys(r[0] for r in rows):
        sel = [r for r in rows if r[0] == t]
        per_type[t] = {"count": float(len(sel)), "EM@1": 100.0 * sum(r[1] for r in sel) / len(sel),
                       "EM": 100.0 * sum(r[3] for r in sel) / len(sel),
                       "EM-R": 100.0 * sum(r[4] for r in sel) / len(sel)}
    if ngrams:
        refs = {it.question_id: list(it.answers) for it in items}
        preds = {it.question_id: ranked[it.question_id][0] for it in items}
        if scorer is None:
            with CaptionScorer() as own:
                overall.update(own.score(refs, preds, tokenizer))
        else:
            overall.update(scorer.score(refs, preds, tokenizer))
    return QAScores(overall=overall, per_type=per_type, count=n)
