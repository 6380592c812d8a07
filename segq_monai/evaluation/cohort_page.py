"""The cohort page: ``OUT/index.html``, one self-contained static file over an inference or evaluation folder.

It opens from disk in any browser (no server, no network: the thumbnails and the histogram are PNG data URIs, the
CSS and the few lines of JavaScript are inline) and holds:

* one row per case of ``quality.csv``, worst predicted Dice (mean over classes) first, with the flag, the interval
  ``[pred_dice_lo, pred_dice_hi]`` and ``pred_dice_sd`` where the table has them, the true Dice where it is
  labelled, and relative links to the case's NIfTI files (``<case>/<case>_*.nii.gz``);
* a thumbnail per case (:func:`segq_monai.evaluation.plots.thumbnail_png`): the image, the uncertainty map as a
  heat map and the segmentation's contour; the middle slice of a 3D volume;
* the cohort's predicted Dice as a histogram, against the calibration split's when the run had a quality
  calibration (both the raw head output, the quantity the drift check compares);
* the drift statement of ``drift.json`` (:class:`segq_monai.handlers.CalibrationReport`).

Click a column header to sort by it (again: reverse). The page honours ``index.html?sort=<column>&order=asc|desc``
(columns: ``index``, ``case``, ``pred_dice``, ``pred_dice_lo``, ``pred_dice_hi``, ``pred_dice_sd``, ``true_dice``,
``flagged``). When its images have loaded, ``<body>`` carries ``data-images-decoded`` (how many decoded to a width
above 0) for automated checks.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from segq_monai.data.outputs import DRIFT_FILE, PROMISE_FILE, case_name, map_path, sidecar_path
from segq_monai.data.columns import FLAG_COLUMN, RAW, SPREAD, as_float, column_name, quality_columns, read_quality_csv
from segq_monai.evaluation.plots import dice_histogram_png, thumbnail_png
from segq_monai.calibration.calibration_file import QualityCalibration
from segq_monai.utils.atomic import atomic_write_text

__all__ = ["write_cohort_page", "PAGE_NAME", "SORT_KEYS"]

PAGE_NAME = "index.html"
#: the columns the page sorts by (``?sort=`` values)
SORT_KEYS = ("index", "case", "pred_dice", "pred_dice_lo", "pred_dice_hi", "pred_dice_sd", "true_dice", FLAG_COLUMN)
_OUTPUT_FILES = ("quality.csv", "report.json", PROMISE_FILE, DRIFT_FILE)


def _mean(row: Mapping[str, Any], kind: str, bound: str, classes: Sequence[str]) -> float:
    """The class mean of ``<kind>[_<bound>]_<class>``; NaN when a class's cell is missing or empty."""
    values = [as_float(row.get(column_name(kind, c, bound))) for c in classes]
    return float(np.mean(values)) if values and all(math.isfinite(v) for v in values) else math.nan


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _load(path: str | os.PathLike) -> np.ndarray:
    """``[C, *spatial]`` float array of an image file (any format MONAI's ``LoadImage`` reads)."""
    from monai.transforms import LoadImage

    return np.asarray(LoadImage(image_only=True, ensure_channel_first=True)(os.fspath(path)), dtype=np.float32)


def _labels(seg: np.ndarray) -> np.ndarray:
    """``[1, *spatial]`` class indices from one index channel or from binary channels (sigmoid outputs)."""
    if seg.shape[0] == 1:
        return seg
    return np.max((seg != 0) * np.arange(1, seg.shape[0] + 1).reshape(-1, *([1] * (seg.ndim - 1))), axis=0)[None]


def _thumbnail(
    output_dir: Path, case: str, entry: Mapping[str, Any], seg_key: str, uncertainty_key: str, size: int
) -> str | None:
    """The case's thumbnail as a data URI; None when its image cannot be read."""
    source = entry.get("source", entry.get("image"))
    if not isinstance(source, str) or not os.path.isfile(source):
        return None
    image = _load(source)[:1]
    seg_file, unc_file = map_path(output_dir, case, seg_key), map_path(output_dir, case, uncertainty_key)
    seg = _labels(_load(seg_file)) if seg_file.is_file() else np.zeros_like(image)
    unc = _load(unc_file)[:1] if unc_file.is_file() else np.zeros_like(image)
    if seg.shape[1:] != image.shape[1:] or unc.shape[1:] != image.shape[1:]:
        return None  # maps on another grid than the image (e.g. a host bundle that resamples): no picture
    return _data_uri(thumbnail_png(image, seg, unc, size=size))


def _reference(calibration: QualityCalibration | str | os.PathLike | None) -> list[float] | None:
    if calibration is None:
        return None
    if not isinstance(calibration, QualityCalibration):
        calibration = QualityCalibration.load(calibration)
    return calibration.reference.get("pred_dice_raw")


def _drift_statement(drift: Mapping[str, Any] | None) -> str | None:
    if drift is None:
        return None
    if drift.get("drifted"):
        return str(drift.get("message"))
    parts = []
    for key, name in (("pred_dice_raw", "raw predicted Dice"), ("mean_entropy", "mean entropy (nats)")):
        s = (drift.get("statistics") or {}).get(key)
        if s and s.get("p_value") is not None and math.isfinite(s["p_value"]):
            parts.append(f"{name}: median {s['median']:.3g} against {s['median_reference']:.3g} in calibration, "
                         f"KS D = {s['ks_statistic']:.2f}, p = {s['p_value']:.2g}")  # fmt: skip
    return (
        f"No drift detected (Kolmogorov-Smirnov p-values at or above {drift.get('p_value_threshold')}): "
        + ("; ".join(parts) or "no statistic") + ". This does not prove the cohort is like the calibration split."
    )


def _fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else ""


def _sort_value(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else ""


def write_cohort_page(
    output_dir: str | os.PathLike,
    calibration: QualityCalibration | str | os.PathLike | None = None,
    seg_key: str = "seg",
    uncertainty_key: str = "entropy",
    thumbnail_size: int = 96,
    title: str | None = None,
    host_change: Sequence[str] | None = None,
) -> Path:
    """Write ``output_dir/index.html`` (module docstring) from the folder's ``quality.csv``, the per-case sidecars
    and maps of :class:`segq_monai.handlers.QualityWriter` and, when present, ``drift.json``. Written whole or not at
    all.

    Args:
        output_dir: an inference or evaluation output folder (it must hold ``quality.csv``).
        calibration: the run's quality calibration (object or file), for the calibration split's predicted Dice in
            the histogram; None: the cohort alone.
        seg_key, uncertainty_key: the saved maps drawn in the thumbnails (``<case>/<case>_<key>.nii.gz``); a missing
            map is left out of the picture.
        thumbnail_size: thumbnail width and height, pixels.
        title: the page's title; default: the folder's name.
        host_change: the differences from the fitted host of a run forced with ``segq#allow_host_change``
            (:class:`segq_monai.handlers.HostBinding`), shown at the top of the page.

    Returns:
        the page's path.
    """
    import jinja2

    output_dir = Path(output_dir)
    table = read_quality_csv(output_dir / "quality.csv")
    classes = quality_columns(table) if table else [""]
    raw = any(column_name("pred_dice", c, RAW) in table[0] for c in classes) if table else False
    has = {
        key: any(column_name(kind, c, bound) in row for row in table for c in classes)
        for key, (kind, bound) in {"pred_dice_lo": ("pred_dice", "lo"), "pred_dice_sd": ("pred_dice", SPREAD),
                                   "true_dice": ("true_dice", "")}.items()
    }  # fmt: skip
    rows = []
    for index, row in enumerate(table):
        case = case_name(str(row["image"]))
        sidecar = sidecar_path(output_dir, case)
        entry = json.loads(sidecar.read_text())["entry"] if sidecar.is_file() else {}
        values = {
            "pred_dice": _mean(row, "pred_dice", "", classes),
            "pred_dice_lo": _mean(row, "pred_dice", "lo", classes),
            "pred_dice_hi": _mean(row, "pred_dice", "hi", classes),
            "pred_dice_sd": _mean(row, "pred_dice", SPREAD, classes),
            "true_dice": _mean(row, "true_dice", "", classes),
            "raw": _mean(row, "pred_dice", RAW, classes) if raw else math.nan,
        }
        flagged = row.get(FLAG_COLUMN)
        per_class = (
            ", ".join(f"{c}: {_fmt(as_float(row.get(column_name('pred_dice', c))))}" for c in classes)
            if len(classes) > 1
            else ""
        )
        links = [
            {"name": f.name[len(case) + 1 :].removesuffix(".nii.gz"), "href": quote(f"{case}/{f.name}")}
            for f in sorted((output_dir / case).glob(f"{case}_*.nii.gz"))
        ]
        rows.append({
            "index": index, "case": case, "image": row["image"], "values": values,
            "text": {k: _fmt(v) for k, v in values.items()}, "sort": {k: _sort_value(v) for k, v in values.items()},
            FLAG_COLUMN: None if flagged is None else int(flagged), "per_class": per_class, "links": links,
            "thumbnail": _thumbnail(output_dir, case, entry, seg_key, uncertainty_key, thumbnail_size),
        })  # fmt: skip
    rows.sort(key=lambda r: (not math.isfinite(r["values"]["pred_dice"]), r["values"]["pred_dice"], r["index"]))
    cohort = [r["values"]["raw" if raw else "pred_dice"] for r in rows]
    reference = _reference(calibration)
    drift_file = output_dir / DRIFT_FILE
    drift = json.loads(drift_file.read_text()) if drift_file.is_file() else None
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("segq_monai.evaluation", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    page = environment.get_template("cohort.html.j2").render(
        title=title or output_dir.resolve().name,
        rows=rows,
        n_flagged=sum(1 for r in rows if r[FLAG_COLUMN]),
        has=has,
        thumbnail_size=thumbnail_size,
        histogram=_data_uri(dice_histogram_png(cohort, reference)) if rows else None,
        histogram_kind="raw (before recalibration)" if raw else "as written in quality.csv",
        has_reference=reference is not None,
        drift=_drift_statement(drift),
        drifted=bool(drift and drift.get("drifted")),
        host_change=list(host_change or []),
        files=[f for f in _OUTPUT_FILES if (output_dir / f).is_file()] + sorted(p.name for p in output_dir.glob("*.png")),
        sort_keys=SORT_KEYS,
    )
    path = output_dir / PAGE_NAME
    atomic_write_text(path, page)
    return path
