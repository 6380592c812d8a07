"""Stage-2 metrics: true segmentation quality (Dice/IoU), how well predicted quality tracks it (regression and
failure detection), the scalar uncertainty baselines. Guaranteed thresholds, recalibration, drift and temperature
live in :mod:`segq_monai.calibration`."""

from __future__ import annotations

from .baselines import BASELINES
from .quality import FAILURE_DICE, dice_to_iou, iou_to_dice, segmentation_quality
from .cumulative import AURCMetric, FailureAUROCMetric, QualityRegressionMetric
from .regression import (
    aurc,
    excess_aurc,
    failure_auroc,
    mean_absolute_error,
    pearson_correlation,
    r2_score,
    risk_coverage_curve,
    root_mean_squared_error,
    spearman_correlation,
)
