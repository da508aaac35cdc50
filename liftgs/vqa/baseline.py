"""The answer-prior baseline: answer every question with its type's most frequent training answer.

It sees no scene, so it is the floor a question-answering model has to beat: on a balanced
yes/no type it scores 50 % EM, on a type with a dominant answer it scores that answer's share.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from liftgs.vqa.data import QAItem
from liftgs.vqa.metrics import scanqa_question_type

__all__ = ["ANY_TYPE", "question_type_of", "answer_prior", "prior_predictions"]

ANY_TYPE = ""
"""key of :func:`answer_prior`'s answer for question types the training set does not have"""


def question_type_of(item: QAItem) -> str:
    """The item's ``question_type``, else its ScanQA class (as :func:`~liftgs.vqa.metrics.score_answers`)."""
    return item.question_type or scanqa_question_type(item.question)


def _mode(counts: Counter) -> str:
    # the most frequent answer; ties go to the alphabetically first, so the prior is deterministic
    return min(counts, key=lambda a: (-counts[a], a))


def answer_prior(train: Sequence[QAItem]) -> dict[str, str]:
    """{question type: most frequent reference answer among the training questions of that type},
    plus :data:`ANY_TYPE` -> the most frequent answer overall. Every reference answer of a
    question counts once."""
    if not train:
        raise ValueError("the answer prior needs training questions, got none")
    by_type: dict[str, Counter] = {}
    overall: Counter = Counter()
    for it in train:
        if not it.answers:
            raise ValueError(f"training question {it.question_id!r} has no reference answers")
        by_type.setdefault(question_type_of(it), Counter()).update(it.answers)
        overall.update(it.answers)
    prior = {t: _mode(c) for t, c in sorted(by_type.items())}
    prior[ANY_TYPE] = _mode(overall)
    return prior


def prior_predictions(items: Sequence[QAItem], prior: dict[str, str]) -> dict[str, str]:
    """{question_id: the prior's answer for the question's type}."""
    return {it.question_id: prior.get(question_type_of(it), prior[ANY_TYPE]) for it in items}
