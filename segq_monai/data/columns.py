"""The per-case quality table (``quality.csv``): its column scheme, reading and writing. This module alone knows how
column names are built and read back; the writer (:class:`segq_monai.handlers.QualityWriter`), the report and the
figures go through it.

The evaluate workflow writes one row per case (``quality.csv``). A quality column is named
``<kind>[_<bound>][_<class>]``:

* ``image``: the input path as given;
* ``kind``: one of :data:`QUALITY_KINDS` (``pred_dice``, ``pred_iou``, ``true_dice``, ``true_iou``); Dice and IoU are
  dimensionless, in [0, 1];
* ``bound``: optional, one of :data:`QUALIFIERS`: ``lo``, ``hi`` (:data:`BOUNDS`), the ends of an interval around the
  value of ``kind`` (e.g. ``pred_dice_lo``), or ``raw`` (:data:`RAW`), the head's own value where ``kind`` holds a
  recalibrated one (``pred_dice_raw``); both are written with a quality calibration
  (:mod:`segq_monai.calibration.quality_calibration`); or ``sd`` (:data:`SPREAD`), the head's own spread of the raw
  value, the standard deviation (ddof 0) of its MC-dropout passes, in the units of ``kind`` (``pred_dice_sd``, written
  when the head is sampled: ``PredictQualityd(num_samples > 1)``);
* ``class``: absent for binary tasks (``pred_dice``); for multi-class tasks each foreground class name or index
  (``pred_dice_2``, ``true_dice_brain``, ``pred_dice_lo_brain``). :data:`QUALIFIERS` and ``"mean"`` are reserved
  and cannot name a class;
* ``flagged``: 0/1, the predicted failure (any ``pred_dice`` below the failure Dice τ; with a quality calibration,
  the calibrated flag: the per-case minimum of ``pred_dice_raw`` below the calibrated acceptance threshold λ̂);
* ``baseline_<name>``: scalar confidences of :mod:`segq_monai.metrics.baselines` (higher = better segmentation expected,
  any real scale; e.g. a negated mean entropy in nats).

Columns that do not follow the scheme are kept as they are (read and written, never interpreted).
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from segq_monai.utils.atomic import atomic_write_text

__all__ = [
    "BINARY_CLASS",
    "BOUNDS",
    "FLAG_COLUMN",
    "ITEM_KINDS",
    "QUALIFIERS",
    "QUALITY_KINDS",
    "RAW",
    "SPREAD",
    "QualityColumn",
    "as_float",
    "baseline_column",
    "baseline_names",
    "class_columns",
    "class_label",
    "class_suffixes",
    "class_mean",
    "column_matrix",
    "column_name",
    "finite_cases",
    "parse_column",
    "quality_columns",
    "read_quality_csv",
    "write_quality_csv",
]

_TEXT_COLUMNS = ("image", "label")
BINARY_CLASS = "foreground"  # report name of the single class of a binary table
#: the per-case quality values, in column order
QUALITY_KINDS = ("pred_dice", "pred_iou", "true_dice", "true_iou")
#: the ends of an interval around a quality value: ``<kind>_lo``, ``<kind>_hi``
BOUNDS = ("lo", "hi")
#: the head's own value where the plain column holds a recalibrated one: ``<kind>_raw``
RAW = "raw"
#: the head's own spread of a predicted value (standard deviation of its MC-dropout passes): ``<kind>_sd``
SPREAD = "sd"
#: every optional part between ``kind`` and ``class``
QUALIFIERS = (*BOUNDS, RAW, SPREAD)
#: keys of a postprocessed case that hold quality values, and the ``(kind, bound)`` of the columns each becomes
ITEM_KINDS = {
    "pred_dice": ("pred_dice", ""),
    "pred_iou": ("pred_iou", ""),
    "pred_dice_raw": ("pred_dice", RAW),
    "pred_dice_lo": ("pred_dice", "lo"),
    "pred_dice_hi": ("pred_dice", "hi"),
    "pred_dice_sd": ("pred_dice", SPREAD),
    "true_dice": ("true_dice", ""),
    "true_iou": ("true_iou", ""),
}
#: the failure flag: the ``quality.csv`` column, and the key of a postprocessed case that holds it (0/1)
FLAG_COLUMN = "flagged"
_BASELINE_PREFIX = "baseline_"
_RESERVED_CLASSES = (*QUALIFIERS, "mean")


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


class QualityColumn(NamedTuple):
    """A parsed quality column name: ``kind`` (one of :data:`QUALITY_KINDS`), ``bound`` (``""`` or one of
    :data:`QUALIFIERS`), ``cls`` (``""`` for a binary table, else the class name or index)."""

    kind: str
    bound: str
    cls: str


def column_name(kind: str, cls: str, bound: str = "") -> str:
    """``<kind>[_<bound>][_<cls>]``, e.g. ``column_name("pred_dice", "brain", "lo") == "pred_dice_lo_brain"``."""
    if kind not in QUALITY_KINDS:
        raise ValueError(f"quality column kind must be one of {QUALITY_KINDS}, got {kind!r}.")
    if bound not in ("", *QUALIFIERS):
        raise ValueError(f"quality column bound must be '' or one of {QUALIFIERS}, got {bound!r}.")
    return "_".join(part for part in (kind, bound, cls) if part)


def parse_column(name: str) -> QualityColumn | None:
    """The parts of a quality column name (inverse of :func:`column_name`); None for any other column."""
    for kind in QUALITY_KINDS:
        if name == kind:
            return QualityColumn(kind, "", "")
        if not name.startswith(kind + "_"):
            continue
        rest = name[len(kind) + 1 :]
        bound, _, cls = rest.partition("_")
        if bound in QUALIFIERS:
            return QualityColumn(kind, bound, cls)
        return QualityColumn(kind, "", rest)
    return None


def class_suffixes(num_classes: int, class_names: Sequence[str] | None = None, what: str = "the head") -> list[str]:
    """The class parts of the columns of ``num_classes`` foreground classes: ``[""]`` for a single class with at
    most one name (plain ``pred_dice``), else the names (default ``"1" .. "K"``); ``what`` names the values in
    errors (a name count that does not match, a reserved name)."""
    if num_classes == 1 and (class_names is None or len(class_names) == 1):
        return [""]
    names = [str(n) for n in class_names] if class_names is not None else [str(i + 1) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} names but {what} has {num_classes} classes.")
    reserved = [n for n in names if n in _RESERVED_CLASSES or not n]
    if reserved:
        raise ValueError(f"class names {reserved} are reserved by the quality.csv scheme {_RESERVED_CLASSES}; rename.")
    return names


def class_columns(
    kind: str, values: Sequence[float], class_names: Sequence[str] | None, bound: str = ""
) -> dict[str, float]:
    """One case's values ``[K]`` of ``kind`` (and ``bound``) as columns: ``{kind: v}`` for a single class with at
    most one name, else ``{kind_<name>: v}`` per class (names default to ``"1" .. "K"``; :func:`class_suffixes`)."""
    classes = class_suffixes(len(values), class_names, what=kind)
    return {column_name(kind, c, bound): v for c, v in zip(classes, values)}


def quality_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Foreground class suffixes found in the column names, in column order.

    Returns:
        ``[""]`` for a binary table (columns ``pred_dice``, ``true_dice``), else e.g. ``["1", "2"]`` or
        ``["brain", "tumour"]`` for ``true_dice_1``/``pred_dice_brain`` … (interval columns such as
        ``pred_dice_lo`` name no class). The Dice column of class ``c`` is ``column_name("true_dice", c)``.
    """
    names = list(dict.fromkeys(k for row in rows for k in row))
    parsed = [p for p in map(parse_column, names) if p is not None and p.kind in ("pred_dice", "true_dice")]
    binary = any(p.cls == "" for p in parsed)
    classes = list(dict.fromkeys(p.cls for p in parsed if p.cls))
    if binary and classes:
        raise ValueError(
            f"the table mixes binary columns (pred_dice/true_dice) with per-class ones ({classes}); "
            "write one or the other."
        )
    return [""] if binary else classes


def class_label(cls: str) -> str:
    """The report's name of class ``cls``: the suffix itself, ``"foreground"`` for a binary table."""
    return cls if cls else BINARY_CLASS


def baseline_column(name: str) -> str:
    return _BASELINE_PREFIX + name


def baseline_names(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    names = dict.fromkeys(k for row in rows for k in row)
    return [n[len(_BASELINE_PREFIX) :] for n in names if n.startswith(_BASELINE_PREFIX)]


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


def class_mean(rows: Sequence[Mapping[str, Any]], kind: str, classes: Sequence[str] | None = None) -> np.ndarray:
    """float64 ``[N]``: each case's mean over ``classes`` (default: :func:`quality_columns`) of the ``kind`` columns;
    NaN where a class's cell is missing or empty."""
    classes = quality_columns(rows) if classes is None else classes
    if not classes:
        return np.full(len(rows), np.nan)
    return column_matrix(rows, [column_name(kind, c) for c in classes]).mean(axis=1)


def finite_cases(score: np.ndarray, true: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``score`` and ``true`` (both ``[N]``) without the cases where either is not finite (a ``UserWarning`` says
    how many); ValueError naming ``what`` when none is left."""
    keep = np.isfinite(score) & np.isfinite(true)
    if not keep.all():
        warnings.warn(f"{what}: {int((~keep).sum())} case(s) without a finite value are left out.", UserWarning, 3)
    if not keep.any():
        raise ValueError(f"{what}: no case has a finite value; check the table's columns.")
    return score[keep], true[keep]
