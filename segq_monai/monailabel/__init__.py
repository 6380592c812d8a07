"""MONAI Label integration: a scoring method, an active-learning strategy and an infer task over a segq bundle.

- :class:`SegQPipeline` builds the bundle's two-stage inference from its ``configs/inference.json`` (one definition).
- :class:`QualityScoring` stores each unlabelled image's predicted Dice and mean predictive entropy in its
  datastore info.
- :class:`LowestQualityStrategy` serves the unlabelled image with the lowest predicted Dice.
- :class:`SegQInferTask` returns the segmentation, writes its entropy map beside it and reports predicted Dice.

The app in ``segq_monai/monailabel/app`` wires them up::

    monailabel start_server --app "$(segq-monai paths monailabel_app)" --studies <folder of images> \\
        --conf ckpt_dir segq_output/models

Needs MONAI Label, the optional extra: ``pip install "segq-monai[monailabel]"``; without it, importing this package
raises an ``ImportError`` that says so.
"""

from __future__ import annotations

from segq_monai.monailabel.pipeline import SegQPipeline, quality_summary

try:
    import monailabel
except ImportError as e:  # tested by hiding monailabel in a subprocess (tests/test_packaging.py)
    raise ImportError(
        'segq_monai.monailabel needs MONAI Label, the optional extra "monailabel" of segq-monai; install it with: '
        f'pip install "segq-monai[monailabel]" (importing monailabel failed: {e}).'
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
    "quality_summary",
]
