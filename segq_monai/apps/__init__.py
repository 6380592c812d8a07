"""Applications built from the bundle's workflows: fitting a quality head to a user's own MONAI bundle."""

from __future__ import annotations

from segq_monai.apps.fit_folder import load_fit, load_quality_head, min_calibration_cases, network_signature

__all__ = ["load_fit", "load_quality_head", "min_calibration_cases", "network_signature"]
