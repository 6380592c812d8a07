"""Evaluation on a labelled set: the ``quality.csv`` column scheme, ``report.json``, comparison tables, figures."""

from __future__ import annotations

from .bootstrap import grouped_resamples, percentile_interval, report_intervals, write_intervals
from .cohort_page import write_cohort_page
from .columns import quality_columns, read_quality_csv, write_quality_csv
from .quality_calibration import (
    QualityCalibration,
    calibrate_quality_csvs,
    calibrate_quality_table,
    head_fingerprint,
    load_quality_calibration,
)
from .report import METRIC_KEYS, evaluate_quality, write_report
from .tables import comparison_table
