"""MONAI Label integration: a scoring method, an active-learning strategy and an infer task over a segq bundle.

- :class:`SegQPipeline` builds the bundle's two-stage inference from its ``configs/inference.json`` (one definition).
- :class:`QualityScoring` stores each unlabelled image's predicted Dice and mean predictive entropy in its
  datastore info.
- :class:`LowestQualityStrategy` serves the unlabelled image with the lowest predicted Dice.
- :class:`SegQInferTask` returns the segmentation, writes its entropy map beside it and reports predicted Dice.

The app in ``segq_monai/monailabel/app`` wires them up::

    monailabel start_server --app segq_monai/monailabel/app --studies <folder of images> --conf bundle_root bundle

Needs MONAI Label (``pip install "segq-monai[monailabel]"``); :mod:`segq_monai.monailabel.pipeline` alone does not.
"""

from __future__ import annotations

from segq_monai.monailabel.pipeline import SegQPipeline, default_bundle_root, quality_summary

try:
    import monailabel
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        'segq_monai.monailabel needs MONAI Label; install it with: pip install "segq-monai[monailabel]".'
    ) from e

from segq_monai.monailabel.infer import SegQInferTask
from segq_monai.monailabel.scoring import (
    ENTROPY_KEY,
    ERROR_KEY,
    FLAGGED_KEY,
    MODEL_TS_KEY,
    PRED_DICE_KEY,
    QUALITY_KEY,
    QualityScoring,
)
from segq_monai.monailabel.strategy import LowestQualityStrategy

__all__ = [
    "ENTROPY_KEY",
    "ERROR_KEY",
    "FLAGGED_KEY",
    "MODEL_TS_KEY",
    "PRED_DICE_KEY",
    "QUALITY_KEY",
    "LowestQualityStrategy",
    "QualityScoring",
    "SegQInferTask",
    "SegQPipeline",
    "default_bundle_root",
    "quality_summary",
]
