"""Data: Decathlon datalists, contiguous folds, the ``quality.csv`` column scheme, output names, the fit folder of
``python -m segq_monai fit`` and its loaders, the embedded Colin27 demo set and the 3D example's cases."""

from __future__ import annotations

from .collate import padded_collate, prepare_quality_batch
from .columns import quality_columns, read_quality_csv, write_quality_csv
from .datalist import (
    DEFAULT_PATH_KEYS,
    default_section,
    demo_datalist_path,
    load_datalist,
    load_stage2_items,
    read_datalist,
    write_datalist,
)
from .folds import contiguous_folds, holdout_split, split_fold
from .outputs import case_name, items_to_run, pending_items, saved_items

__all__ = [
    "DEFAULT_PATH_KEYS",
    "padded_collate",
    "prepare_quality_batch",
    "case_name",
    "items_to_run",
    "pending_items",
    "quality_columns",
    "read_quality_csv",
    "saved_items",
    "REGION_NAMES",
    "contiguous_folds",
    "default_section",
    "demo_datalist_path",
    "holdout_split",
    "load_fit",
    "load_datalist",
    "load_stage2_items",
    "read_datalist",
    "make_demo_data",
    "make_volume3d_data",
    "prepare_volume3d",
    "split_fold",
    "write_datalist",
    "write_quality_csv",
    "write_synthetic_failures",
]


#: lazily imported names -> their module, so that `python -m segq_monai.data.make_demo` (or `make_volume3d`) does
#: not import its own module twice
_LAZY = {
    "REGION_NAMES": "make_demo",
    "load_fit": "fit_folder",
    "make_demo_data": "make_demo",
    "make_volume3d_data": "make_volume3d",
    "prepare_volume3d": "volume3d",
    "write_synthetic_failures": "synthetic",
}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
