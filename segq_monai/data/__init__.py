"""Data: Decathlon datalists, contiguous folds and the embedded Colin27 demo set."""

from __future__ import annotations

from .datalist import DEFAULT_PATH_KEYS, default_section, demo_datalist_path, load_datalist, write_datalist
from .folds import contiguous_folds, holdout_split, split_fold
from .outputs import case_name, pending_items, saved_items

__all__ = [
    "DEFAULT_PATH_KEYS",
    "case_name",
    "pending_items",
    "saved_items",
    "REGION_NAMES",
    "contiguous_folds",
    "default_section",
    "demo_datalist_path",
    "holdout_split",
    "load_datalist",
    "make_demo_data",
    "split_fold",
    "write_datalist",
]


def __getattr__(name: str):
    # lazy, so that `python -m segq_monai.data.make_demo` does not import its own module twice
    if name in ("REGION_NAMES", "make_demo_data"):
        from . import make_demo

        return getattr(make_demo, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
