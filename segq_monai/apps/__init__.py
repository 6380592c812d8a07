"""Command-line applications of ``python -m segq_monai`` (each a subcommand), and the fit folder they write."""

from __future__ import annotations

from segq_monai.apps.fit_folder import load_fit, load_quality_head, min_calibration_cases, network_signature

__all__ = ["load_fit", "load_quality_head", "min_calibration_cases", "network_signature"]
