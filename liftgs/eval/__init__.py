"""liftgs.eval: the field's metrics and benchmark runners.

* :mod:`liftgs.eval.instance_ap` - instance-segmentation AP exactly as ScanNet's benchmark script;
* :mod:`liftgs.eval.scannet_format` - the benchmark's prediction / GT text formats;
* :mod:`liftgs.eval.open_vocab` - the open-vocabulary protocol (category names -> scored masks);
* :mod:`liftgs.eval.grounding` - ScanRefer Acc@IoU and Multi3DRefer F1@IoU;
* :mod:`liftgs.eval.referring` - referring segmentation on point / Gaussian masks: mask IoU,
  ScanRefer mIoU and Acc@IoU, Multi3DRefer F1@IoU and union mIoU;
* :mod:`liftgs.eval.mesh_vertices` - instance AP on ScanNet mesh vertices (masks moved from the
  scene's points by nearest neighbour, GT per vertex), the official benchmark's domain;
* :mod:`liftgs.eval.submission` - grounding predictions in the ScanRefer, ReferIt3D and
  Multi3DRefer benchmarks' submission formats;
* :mod:`liftgs.eval.runner` - scenes + a grounder -> all of the above;
* :mod:`liftgs.eval.report` - Markdown / JSON tables; :mod:`liftgs.eval.cli` - ``liftgs eval``;
* :mod:`liftgs.eval.gensplat` - GenSplat's instance AP and semantic mIoU on reconstructed scenes
  (``liftgs gensplat-eval``, docs/gensplat.md).

See docs/metrics.md for how each number matches the official scripts.
"""

from liftgs.eval.grounding import (
    MultiReferQuery,
    ReferQuery,
    f1_one_query,
    grounding_accuracy,
    is_unique_target,
    mask_box,
    multi3drefer_f1,
)
from liftgs.eval.instance_ap import ClassSet, InstanceAPResult, InstancePrediction, evaluate_instances
from liftgs.eval.mesh_vertices import MeshVertices, read_mesh_vertices
from liftgs.eval.open_vocab import predict_instances, scene_gt_ids, vocabulary_of
from liftgs.eval.referring import (
    MultiSegReferQuery,
    SegReferQuery,
    mask_iou,
    mean_mask_iou,
    multi3drefer_segmentation,
    scanrefer_segmentation,
    union_iou,
)
from liftgs.eval.runner import EvalResults, Grounder, ModelGrounder, evaluate_scenes
from liftgs.eval.scannet_format import evaluate_prediction_dir, read_predictions, write_predictions
from liftgs.eval.submission import Submission

__all__ = [
    "ClassSet",
    "InstanceAPResult",
    "InstancePrediction",
    "evaluate_instances",
    "evaluate_prediction_dir",
    "read_predictions",
    "write_predictions",
    "predict_instances",
    "scene_gt_ids",
    "vocabulary_of",
    "ReferQuery",
    "MultiReferQuery",
    "grounding_accuracy",
    "multi3drefer_f1",
    "f1_one_query",
    "is_unique_target",
    "mask_box",
    "SegReferQuery",
    "MultiSegReferQuery",
    "mask_iou",
    "mean_mask_iou",
    "union_iou",
    "scanrefer_segmentation",
    "multi3drefer_segmentation",
    "evaluate_scenes",
    "EvalResults",
    "MeshVertices",
    "read_mesh_vertices",
    "Submission",
    "Grounder",
    "ModelGrounder",
]
