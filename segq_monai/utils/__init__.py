"""Utilities: where the packaged files lie (:mod:`segq_monai.utils.resources`)."""

from __future__ import annotations

from . import resources
from .resources import BUNDLE_FILES, bundle_root, check_bundle, configs_dir, overlay_path, overlays, packaged, paths

__all__ = list(resources.__all__)
