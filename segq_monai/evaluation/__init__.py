"""Evaluation on a labelled set: ``report.json``, bootstrap intervals, comparison tables, figures, the cohort page (the
``quality.csv`` column scheme is :mod:`segq_monai.data.columns`)."""

from __future__ import annotations

from .bootstrap import grouped_resamples, percentile_interval, report_intervals, write_intervals
from .cohort_page import write_cohort_page
from .report import METRIC_KEYS, evaluate_quality, write_report
from .tables import comparison_table
