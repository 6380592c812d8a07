"""Calibration on a labelled calibration split: the guaranteed failure flag, the recalibration of the predicted
Dice with per-case intervals, the drift check, the stage-1 temperature fit, and the calibration file.

The calibration split is a labelled set of cases that neither stage was trained on, run through the same pipeline
(its ``quality.csv``, config id ``calibration_csvs``). One word per idea (CONTRIBUTING.md, "Words"):

* ``tau`` (τ): the failure line on the *true* Dice (a case with a true Dice below it is a failure), by default
  :data:`segq_monai.metrics.quality.FAILURE_DICE`;
* ``acceptance_threshold`` (λ̂): the threshold on the *predicted* Dice that the guaranteed flag calibrates;
* ``alpha``: the target failure rate among auto-accepted cases (:mod:`.flag`); the intervals of
  :mod:`.recalibration` are stated by their ``coverage`` alone;
* the *calibration file* (``quality_calibration.json``, :mod:`.calibration_file`) is what a calibration step writes
  and a run reads; the *promise* (``promise.json``) is what a run with it promises.

The rule of this package: it holds the functional core (the maths, plain functions and small result classes) and
the calibration file; the config-facing twins stay in MONAI's rooms by kind and import from here:
:class:`segq_monai.transforms.RecalibrateQualityd` (applies a calibration file), the handlers
:class:`segq_monai.handlers.CalibrationReport` (``promise.json`` and the drift check, ``drift.json``) and
:class:`segq_monai.handlers.TemperatureFit` (writes ``fit_temperature.json``).

* :mod:`.flag`: acceptance thresholds with a finite-sample guarantee (selective / conformal risk control);
* :mod:`.maps`: the recalibration maps (identity, linear, isotonic) and their cross-validated choice;
* :mod:`.recalibration`: one class's recalibration (the chosen map) and its split-conformal intervals;
* :mod:`.drift`: the two-sample check of a cohort against the calibration split;
* :mod:`.temperature`: the stage-1 temperature fit and expected calibration error;
* :mod:`.calibration_file`: the calibration file (:class:`QualityCalibration`): applying, reading and writing it;
* :mod:`.quality_calibration`: fitting the calibration file from a calibration split, and scoring its intervals;
* :mod:`.guaranteed`: the guaranteed flag of an evaluation report, fitted on the calibration split.

Modules of this package import each other by module (``segq_monai.calibration.flag``), never through this entry
module, so that importing any one of them first works.
"""

from __future__ import annotations

from .drift import distribution_shift
from .flag import (
    AcceptanceThreshold,
    ConformalFlagger,
    acceptance_counts,
    calibrate_crc_threshold,
    calibrate_selective_threshold,
    min_flag_cases,
)
from .calibration_file import QualityCalibration, head_fingerprint, load_quality_calibration
from .guaranteed import add_guaranteed_flags, guaranteed_flag
from .maps import isotonic_regression
from .quality_calibration import calibrate_quality_csvs, calibrate_quality_table, interval_scores
from .recalibration import (
    DiceRecalibration,
    calibrate_dice,
    conformal_quantile,
    min_interval_cases,
)
from .temperature import (
    bundle_temperature,
    cross_fitted_calibration,
    expected_calibration_error,
    fit_temperature,
    load_temperature,
)

__all__ = [
    "AcceptanceThreshold",
    "ConformalFlagger",
    "DiceRecalibration",
    "QualityCalibration",
    "acceptance_counts",
    "add_guaranteed_flags",
    "bundle_temperature",
    "calibrate_crc_threshold",
    "calibrate_dice",
    "calibrate_quality_csvs",
    "calibrate_quality_table",
    "calibrate_selective_threshold",
    "conformal_quantile",
    "cross_fitted_calibration",
    "distribution_shift",
    "expected_calibration_error",
    "fit_temperature",
    "guaranteed_flag",
    "head_fingerprint",
    "interval_scores",
    "isotonic_regression",
    "load_quality_calibration",
    "load_temperature",
    "min_flag_cases",
    "min_interval_cases",
]
