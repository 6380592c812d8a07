"""Small utilities: atomic file writes, boolean config values."""

from __future__ import annotations

from .atomic import atomic_path, atomic_write_text
from .booleans import as_bool
