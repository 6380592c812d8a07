"""Ignite handlers for segq-monai workflows."""

from __future__ import annotations

from .calibration_report import CalibrationReport
from .cohort_page import CohortPage
from .distributed import rank_handlers
from .host_binding import HostBinding
from .progress import ProgressUpdate
from .quality_metrics import AURC, FailureAUROC, QualityRegression
from .quality_report import QualityReport
from .quality_writer import QualityWriter
from .temperature import TemperatureFit
