"""Evaluation on a labelled set: the ``quality.csv`` column scheme, ``report.json``, comparison tables, figures."""

from __future__ import annotations

from .columns import quality_columns, read_quality_csv, write_quality_csv
from .report import METRIC_KEYS, evaluate_quality, least_squares_line, write_report
from .tables import comparison_table
from .bootstrap import grouped_resamples, percentile_interval, report_intervals, write_intervals
