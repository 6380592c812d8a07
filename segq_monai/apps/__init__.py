"""Command-line applications of ``python -m segq_monai`` (each a subcommand: ``demo``, ``fit``, ``example3d``,
``paths`` where the shipped files lie, ``export`` the bundle as a model-zoo archive), and the fit folder they write."""

from __future__ import annotations

from segq_monai.apps.fit_folder import load_fit, load_quality_head, network_signature

__all__ = ["load_fit", "load_quality_head", "network_signature"]
