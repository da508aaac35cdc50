"""liftgs.vqa: 3D question answering -- data and scoring (no model).

* :mod:`liftgs.vqa.data` - ScanQA and SQA3D readers, prediction files, the ScanQA-format writer;
* :mod:`liftgs.vqa.metrics` - EM@1/EM@10 (ScanQA), EM / refined EM (LEO, SQA3D), BLEU-1..4,
  METEOR, ROUGE-L and CIDEr through pycocoevalcap, per question type;
* :mod:`liftgs.vqa.synth` - questions about the synthetic rooms from their ``scene.json``;
* :mod:`liftgs.vqa.baseline` - the answer-prior baseline;
* :mod:`liftgs.vqa.cli` - ``liftgs synth-qa``.

See docs/vqa.md.
"""

from liftgs.vqa.baseline import answer_prior, prior_predictions
from liftgs.vqa.data import QAItem, read_predictions, read_scanqa, read_sqa3d, write_scanqa
from liftgs.vqa.metrics import (
    CaptionScorer,
    JavaNotFoundError,
    QAScores,
    answer_match,
    clean_answer,
    em_at_k,
    score_answers,
)

__all__ = [
    "QAItem", "read_scanqa", "read_sqa3d", "read_predictions", "write_scanqa",
    "clean_answer", "answer_match", "em_at_k", "score_answers", "QAScores", "CaptionScorer", "JavaNotFoundError",
    "answer_prior", "prior_predictions",
]
