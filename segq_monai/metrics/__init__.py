"""Stage-2 metrics: true segmentation quality (Dice/IoU), how well predicted quality tracks it (regression and
failure detection), the scalar uncertainty baselines, guaranteed acceptance thresholds, recalibration with per-case intervals, and temperature scaling."""

from __future__ import annotations

from .baselines import BASELINES
from .conformal import ConformalFlagger, calibrate_crc_threshold, calibrate_selective_threshold
from .drift import distribution_shift
from .quality import dice_to_iou, iou_to_dice, segmentation_quality
from .recalibration import DiceRecalibration, calibrate_dice, isotonic_regression
from .regression import (
    AURCMetric,
    FailureAUROCMetric,
    QualityRegressionMetric,
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
from .temperature import TemperatureScaling, expected_calibration_error, fit_temperature
