"""Small utilities: atomic file writes, boolean config values, where the shipped files lie."""

from __future__ import annotations

from .atomic import atomic_path, atomic_write_text, remove_temporaries, writable_dir
from .booleans import as_bool
from .jsonable import jsonable
from .resources import BUNDLE_FILES, bundle_root, check_bundle, configs_dir, overlay_path, overlays, packaged, paths
