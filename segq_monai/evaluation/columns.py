"""The per-case quality table (``quality.csv``): its column scheme, reading and writing.

The evaluate workflow writes one row per case (``quality.csv``). Columns:

* ``image``: the input path as given;
* binary tasks: ``pred_dice``, ``pred_iou``, ``true_dice``, ``true_iou``; multi-class tasks: ``pred_dice_<c>``,
  ``pred_iou_<c>``, ``true_dice_<c>``, ``true_iou_<c>`` for each foreground class name or index ``c``;
  Dice and IoU are dimensionless, in [0, 1];
* ``flagged``: 0/1, the predicted failure (any ``pred_dice`` below the threshold);
* ``baseline_<name>``: scalar confidences of :mod:`segq_monai.metrics.baselines` (higher = better segmentation expected,
  any real scale; e.g. a negated mean entropy in nats).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from segq_monai.utils.atomic import atomic_write_text

__all__ = [
    "BINARY_CLASS",
    "as_float",
    "baseline_names",
    "class_label",
    "column_matrix",
    "column_name",
    "quality_columns",
    "read_quality_csv",
    "write_quality_csv",
]

_TEXT_COLUMNS = ("image", "label")
BINARY_CLASS = "foreground"  # report name of the single class of a binary table


# ---------------------------------------------------------------------------------------------------------- files


def _format_value(value: Any, column: str) -> str:
    """One CSV cell: floats with the shortest repr that reads back exactly (up to 17 significant digits)."""
    if value is None:
        return ""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"column {column!r} holds a tensor of shape {tuple(value.shape)}; write one number.")
        value = value.item()
    elif isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"column {column!r} holds an array of shape {value.shape}; write one number.")
        value = value.item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    raise ValueError(f"column {column!r} holds a {type(value).__name__}; write a number or a string.")


def write_quality_csv(
    path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> None:
    """Write the per-case quality table atomically (a temporary file in the same folder, then ``os.replace``).

    Args:
        path: the CSV file, e.g. ``DIR/quality.csv``; its folder must exist.
        rows: one mapping per case; values are numbers (python, numpy or one-element torch), strings or None
            (written empty). Floats are written with ``repr`` (reads back bit-exact); bools as 0/1.
        columns: column order; keys of a row not listed are left out. Default: every key, in first-seen order.
    """
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_format_value(row.get(c), c) for c in columns])
    atomic_write_text(path, buf.getvalue())


def _parse_value(text: str, column: str) -> Any:
    if column in _TEXT_COLUMNS:
        return text
    if text == "":
        return None
    low = text.strip().lower()
    if low in ("true", "false"):
        return int(low == "true")
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def read_quality_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a table written by :func:`write_quality_csv` (or any CSV with a header row).

    Returns:
        one dict per row: ``image``/``label`` as strings; other cells as ``int`` or ``float`` where they parse
        (``True``/``False`` as 1/0, ``nan`` as NaN), empty cells as None, anything else as the string.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no quality table at {os.fspath(path)!r}; run the evaluate workflow first.")
    with open(path, encoding="utf-8", newline="") as f:
        return [{k: _parse_value(v, k) for k, v in row.items()} for row in csv.DictReader(f)]


# ------------------------------------------------------------------------------------------------------- columns


def quality_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Foreground class suffixes found in the column names, in column order.

    Returns:
        ``[""]`` for a binary table (columns ``pred_dice``, ``true_dice``), else e.g. ``["1", "2"]`` or
        ``["brain", "tumour"]`` for ``true_dice_1``/``pred_dice_brain`` … . The Dice column of class ``c`` is
        ``f"true_dice_{c}"`` (``"true_dice"`` when ``c == ""``).
    """
    names = list(dict.fromkeys(k for row in rows for k in row))
    binary = any(n in ("pred_dice", "true_dice") for n in names)
    classes = list(
        dict.fromkeys(n.split("_", 2)[2] for n in names if n.startswith(("pred_dice_", "true_dice_")))
    )
    if binary and classes:
        raise ValueError(
            f"the table mixes binary columns (pred_dice/true_dice) with per-class ones ({classes}); "
            "write one or the other."
        )
    return [""] if binary else classes


def column_name(kind: str, cls: str) -> str:
    return f"{kind}_{cls}" if cls else kind


def class_label(cls: str) -> str:
    return cls if cls else BINARY_CLASS


def baseline_names(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    names = dict.fromkeys(k for row in rows for k in row)
    return [n[len("baseline_") :] for n in names if n.startswith("baseline_")]


def as_float(value: Any) -> float:
    if value is None or value == "":
        return float("nan")
    if isinstance(value, torch.Tensor):
        return float(value.item())
    return float(value)


def column_matrix(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> np.ndarray:
    """float64 ``[N, len(columns)]``; missing or empty cells are NaN."""
    return np.array([[as_float(row.get(c)) for c in columns] for row in rows], dtype=np.float64).reshape(
        len(rows), len(columns)
    )
