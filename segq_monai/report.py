"""Evaluation report of predicted segmentation quality: the per-case table, the metrics, ``report.json``.

The evaluate workflow writes one row per case (``quality.csv``). Columns:

* ``image``: the input path as given;
* binary tasks: ``pred_dice``, ``pred_iou``, ``true_dice``, ``true_iou``; multi-class tasks: ``pred_dice_<c>``,
  ``pred_iou_<c>``, ``true_dice_<c>``, ``true_iou_<c>`` for each foreground class name or index ``c``;
  Dice and IoU are dimensionless, in [0, 1];
* ``flagged``: 0/1, the predicted failure (any ``pred_dice`` below the threshold);
* ``baseline_<name>``: scalar confidences of :mod:`segq_monai.baselines` (higher = better segmentation expected,
  any real scale; e.g. a negated mean entropy in nats).

:func:`evaluate_quality` scores the quality head (``pred_dice`` against ``true_dice``) and every baseline with the
functions of :mod:`segq_monai.metrics`: per class, and for the per-case mean over classes (``"mean"``; equal to the
single class of a binary task). Ranking metrics (Pearson, Spearman, failure AUROC, AURC, e-AURC) use the raw
confidence; the error metrics (MAE, RMSE, R²) of a baseline use it mapped onto the Dice scale by an ordinary
least-squares line ``true_dice ≈ slope * score + intercept`` fitted on ``calibration_rows`` (e.g. the stage-2
training cases), or in-sample when none are given. Risk is ``1 - true Dice``; a failure is ``true Dice < threshold``.

With ``alpha``, :func:`evaluate_quality` also calibrates a guaranteed acceptance threshold on the predicted Dice
and on each baseline (:func:`segq_monai.conformal.calibrate_selective_threshold`, fitted on ``conformal_rows``, a
labelled calibration split) and reports how it does on the evaluated cases (``"guaranteed_flag"``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from segq_monai import metrics
from segq_monai.atomic import atomic_write_text
from segq_monai.conformal import calibrate_selective_threshold

__all__ = [
    "read_quality_csv",
    "write_quality_csv",
    "quality_columns",
    "least_squares_line",
    "evaluate_quality",
    "write_report",
    "comparison_table",
    "METRIC_KEYS",
]

#: Keys of one metric block of the report, in table order.
METRIC_KEYS = ("n", "mae", "rmse", "r2", "pearson", "spearman", "auroc", "aurc", "eaurc")

_TEXT_COLUMNS = ("image", "label")
_BINARY_CLASS = "foreground"  # report name of the single class of a binary table


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


def _column(kind: str, cls: str) -> str:
    return f"{kind}_{cls}" if cls else kind


def _class_name(cls: str) -> str:
    return cls if cls else _BINARY_CLASS


def _baseline_names(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    names = dict.fromkeys(k for row in rows for k in row)
    return [n[len("baseline_") :] for n in names if n.startswith("baseline_")]


def _to_float(value: Any) -> float:
    if value is None or value == "":
        return float("nan")
    if isinstance(value, torch.Tensor):
        return float(value.item())
    return float(value)


def _matrix(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> np.ndarray:
    """float64 ``[N, len(columns)]``; missing or empty cells are NaN."""
    return np.array([[_to_float(row.get(c)) for c in columns] for row in rows], dtype=np.float64).reshape(
        len(rows), len(columns)
    )


# ------------------------------------------------------------------------------------------------------- metrics


def least_squares_line(score: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Ordinary least-squares line ``target ≈ slope * score + intercept`` (the same as ``numpy.polyfit(.., 1)``).

    Args:
        score: ``[N]`` confidences, any scale.
        target: ``[N]`` e.g. true Dice in [0, 1].

    Returns:
        ``(slope, intercept)``; ``(nan, nan)`` with a ``UserWarning`` when N < 2 or the score is constant.
    """
    x, y = np.asarray(score, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if len(x) < 2 or np.all(x == x[0]):
        warnings.warn(
            f"least-squares calibration is undefined ({'fewer than two cases' if len(x) < 2 else 'constant score'});"
            " returning NaN.",
            UserWarning,
            stacklevel=2,
        )
        return float("nan"), float("nan")
    dx = x - x.mean()
    slope = float(np.dot(dx, y - y.mean()) / np.dot(dx, dx))
    return slope, float(y.mean() - slope * x.mean())


def _ranking_metrics(confidence: np.ndarray, true: np.ndarray, threshold: float) -> dict[str, float]:
    risk = 1.0 - true
    return {
        "pearson": metrics.pearson_correlation(confidence, true),
        "spearman": metrics.spearman_correlation(confidence, true),
        "auroc": metrics.failure_auroc(confidence, true, threshold=threshold),
        "aurc": metrics.aurc(confidence, risk),
        "eaurc": metrics.excess_aurc(confidence, risk),
    }


def _error_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    if not np.all(np.isfinite(pred)):  # an undefined calibration
        return {"mae": float("nan"), "rmse": float("nan"), "r2": float("nan")}
    return {
        "mae": metrics.mean_absolute_error(pred, true),
        "rmse": metrics.root_mean_squared_error(pred, true),
        "r2": metrics.r2_score(pred, true),
    }


def _finite(score: np.ndarray, true: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Drop cases whose score or true Dice is not finite, with a ``UserWarning`` naming how many."""
    keep = np.isfinite(score) & np.isfinite(true)
    if not keep.all():
        warnings.warn(f"{what}: {int((~keep).sum())} case(s) without a finite value are left out.", UserWarning, 3)
    if not keep.any():
        raise ValueError(f"{what}: no case has a finite value; check the table's columns.")
    return score[keep], true[keep]


def _block(
    score: np.ndarray, true: np.ndarray, threshold: float, calibration: tuple[float, float] | None, what: str
) -> dict[str, float]:
    """Metrics of one confidence ``[N]`` against one true Dice ``[N]``; ``calibration`` maps a baseline to Dice."""
    score, true = _finite(score, true, what)
    mapped = score if calibration is None else calibration[0] * score + calibration[1]
    out: dict[str, float] = {"n": int(len(score))}
    out.update(_error_metrics(mapped, true))
    out.update(_ranking_metrics(score, true, threshold))
    return {k: float(out[k]) if k != "n" else out[k] for k in METRIC_KEYS}


def _targets(rows: Sequence[Mapping[str, Any]], classes: Sequence[str], kind: str) -> dict[str, np.ndarray]:
    """``{class name: [N]}`` plus ``"mean"``: the per-case mean over classes of the ``kind`` Dice columns."""
    m = _matrix(rows, [_column(kind, c) for c in classes])
    out = {_class_name(c): m[:, i] for i, c in enumerate(classes)}
    out["mean"] = m.mean(axis=1)
    return out


def _flag_counts(rows: Sequence[Mapping[str, Any]], true: np.ndarray, threshold: float) -> dict[str, Any] | None:
    """Confusion counts of ``flagged`` against the true failure (any class's true Dice below the threshold)."""
    if not any("flagged" in row for row in rows):
        return None
    flagged = _matrix(rows, ["flagged"])[:, 0]
    keep = np.isfinite(flagged) & np.all(np.isfinite(true), axis=1)
    flagged, failure = flagged[keep] != 0, np.any(true[keep] < threshold, axis=1)
    n = int(keep.sum())
    tp, fp = int(np.sum(flagged & failure)), int(np.sum(flagged & ~failure))
    fn, tn = int(np.sum(~flagged & failure)), int(np.sum(~flagged & ~failure))
    return {
        "n": n,
        "true_failures": tp + fn,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "true_negatives": tn,
        "fraction_flagged": (tp + fp) / n if n else float("nan"),
    }


def _worst_case(rows: Sequence[Mapping[str, Any]], classes: Sequence[str], what: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-case minimum over classes of ``pred_dice`` and of ``true_dice`` (finite cases only), both ``[n]``."""
    pred = _matrix(rows, [_column("pred_dice", c) for c in classes]).min(axis=1)
    true = _matrix(rows, [_column("true_dice", c) for c in classes]).min(axis=1)
    return _finite(pred, true, what)


def _guaranteed_flag(
    conformal: tuple[np.ndarray, np.ndarray], evaluated: tuple[np.ndarray, np.ndarray], threshold: float, alpha: float,
    delta: float,
) -> dict[str, Any]:
    """Selective acceptance threshold fitted on ``conformal`` = (confidence [n], true Dice [n]), scored on
    ``evaluated`` (the same, of the evaluated cases)."""
    cal = calibrate_selective_threshold(*conformal, tau=threshold, alpha=alpha, delta=delta)
    conf, true = evaluated
    accepted = conf >= cal.threshold
    n_acc = int(accepted.sum())
    failures = int(np.sum(accepted & (true < threshold)))
    return {
        "alpha": float(alpha),
        "delta": float(delta),
        "accept_threshold": cal.threshold,
        "feasible": cal.feasible,
        "n_calibration": cal.n_calibration,
        "calibration_fraction_accepted": cal.fraction_accepted,
        "calibration_bound": cal.bound,
        "n": len(conf),
        "n_accepted": n_acc,
        "fraction_accepted": n_acc / len(conf),
        "failures_accepted": failures,
        "failure_rate_accepted": failures / n_acc if n_acc else float("nan"),
    }


def _check_conformal(
    rows: Sequence[Mapping[str, Any]],
    conformal_rows: Sequence[Mapping[str, Any]] | None,
    classes: Sequence[str],
    with_head: bool,
) -> Sequence[Mapping[str, Any]]:
    """``conformal_rows``, checked: present, with ``true_dice`` (and ``pred_dice`` when the head is scored) columns
    in them and in ``rows``."""
    if not conformal_rows:
        raise ValueError(
            "alpha needs conformal_rows: labelled cases (true_dice, and pred_dice for the quality head) that neither "
            "stage was trained on, e.g. the quality.csv of an evaluation on a calibration split; pass them, or "
            "alpha=None."
        )
    for kind in ("true_dice", "pred_dice") if with_head else ("true_dice",):
        columns = [_column(kind, c) for c in classes]
        for name, table in (("conformal_rows", conformal_rows), ("rows", rows)):
            missing = [col for col in columns if not any(col in row for row in table)]
            if missing:
                raise ValueError(
                    f"alpha needs {name} with columns {columns}; {missing} are missing. Run the quality head on "
                    "those cases (pred_dice) and label them (true_dice), or pass alpha=None."
                )
    return conformal_rows


def evaluate_quality(
    rows: Sequence[Mapping[str, Any]],
    threshold: float = 0.8,
    calibration_rows: Sequence[Mapping[str, Any]] | None = None,
    alpha: float | None = None,
    delta: float = 0.1,
    conformal_rows: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Score predicted quality and the scalar baselines against the true Dice of a labelled set.

    Args:
        rows: the per-case table (see the module docstring); needs ``true_dice`` (or ``true_dice_<c>``) columns.
            Cells may be numbers or numeric strings.
        threshold: a case (class) fails when its true Dice is strictly below it.
        calibration_rows: cases to fit each baseline's least-squares line on (columns ``baseline_<name>`` and
            the true Dice), e.g. the stage-2 training cases. None: fit on ``rows`` (``"fit": "in-sample"``).
        alpha: None (default): no guaranteed flag. Otherwise the target failure rate among auto-accepted cases,
            in (0, 1): an acceptance threshold ``λ`` on a confidence is calibrated on ``conformal_rows`` by
            :func:`segq_monai.conformal.calibrate_selective_threshold` (``tau=threshold``), so that with probability
            >= ``1 - delta`` over i.i.d. calibration cases, the failure rate among cases with confidence >= ``λ`` is
            at most ``alpha`` (a case fails when any class's true Dice is below ``threshold``, as for ``"flag"``).
            The quality head's confidence is the per-case predicted Dice (minimum over classes), reported under
            ``"guaranteed_flag"``; each baseline's is its score mapped onto the Dice scale by its least-squares line
            (fitted on ``calibration_rows``, not on ``conformal_rows``, so that the candidate thresholds do not
            depend on the calibration draw), reported under ``baselines[name]["guaranteed_flag"]``.
        delta: the allowed probability, over the calibration draw, that this guarantee fails, in (0, 1).
        conformal_rows: labelled cases that neither stage was trained on, run through the same pipeline as
            ``rows`` (``true_dice``, ``pred_dice`` when ``rows`` have it, the baselines): the calibration split of
            the guaranteed flag. Needed with ``alpha`` (ValueError otherwise).

    Returns:
        a dict (NaN where a metric is undefined; :func:`write_report` writes those as ``null``)::

            {"threshold": float, "n_cases": int, "classes": [str, ...],
             "fit": "in-sample" | "calibration", "n_calibration": int,
             "quality_head": {"per_class": {cls: M}, "mean": M} | None,   # None without pred_dice columns
             "baselines": {name: {"per_class": {cls: M}, "mean": M,
                                  "calibration": {cls or "mean": {"slope": float, "intercept": float}}}},
             "flag": {"n", "true_failures", "true_positives", "false_positives", "false_negatives",
                      "true_negatives", "fraction_flagged"} | None,
             "guaranteed_flag": G}  # with alpha and pred_dice; baselines then also hold "guaranteed_flag": G

            G = {"alpha", "delta", "accept_threshold", "feasible", "n_calibration", "calibration_fraction_accepted",
                 "calibration_bound", "n", "n_accepted", "fraction_accepted", "failures_accepted",
                 "failure_rate_accepted"}

        with ``M = {"n", "mae", "rmse", "r2", "pearson", "spearman", "auroc", "aurc", "eaurc"}``. ``"mean"``
        scores the per-case mean Dice over classes (for a binary task, the one class ``"foreground"``).

        ``accept_threshold`` is ``λ`` (``inf``, written ``null``, when no threshold is certified: ``feasible`` is
        false and every case is flagged); ``calibration_bound`` the Clopper-Pearson bound that certifies it; the
        rest are realised on ``rows``: ``failure_rate_accepted`` = true failures among the accepted (NaN when none
        is accepted). A single evaluation set scatters around the guaranteed rate; the guarantee is on the rate.
    """
    if len(rows) == 0:
        raise ValueError("the quality table has no rows; evaluate at least one labelled case.")
    classes = quality_columns(rows)
    if not classes or not any(_column("true_dice", classes[0]) in row for row in rows):
        raise ValueError(
            "the table has no true_dice columns; evaluate needs labels (columns true_dice or true_dice_<class>)."
        )
    if "mean" in classes:
        raise ValueError("a class is named 'mean', which the report uses for the mean over classes; rename it.")
    true = _targets(rows, classes, "true_dice")
    report: dict[str, Any] = {"threshold": float(threshold), "n_cases": len(rows), "classes": list(true)[:-1]}

    cal_rows = rows if calibration_rows is None else calibration_rows
    if calibration_rows is not None and len(calibration_rows) == 0:
        raise ValueError("calibration_rows is empty; pass the stage-2 training cases, or None to fit in-sample.")
    report["fit"] = "in-sample" if calibration_rows is None else "calibration"
    report["n_calibration"] = len(cal_rows)

    report["quality_head"] = None
    if any(_column("pred_dice", classes[0]) in row for row in rows):
        pred = _targets(rows, classes, "pred_dice")
        report["quality_head"] = {
            "per_class": {c: _block(pred[c], true[c], threshold, None, f"pred_dice ({c})") for c in list(true)[:-1]},
            "mean": _block(pred["mean"], true["mean"], threshold, None, "pred_dice (mean)"),
        }

    if alpha is not None:
        conformal_rows = _check_conformal(rows, conformal_rows, classes, report["quality_head"] is not None)
        evaluated_worst = _matrix(rows, [_column("true_dice", c) for c in classes]).min(axis=1)
        conformal_worst = _matrix(conformal_rows, [_column("true_dice", c) for c in classes]).min(axis=1)
        if report["quality_head"] is not None:
            report["guaranteed_flag"] = _guaranteed_flag(
                _worst_case(conformal_rows, classes, "guaranteed flag (calibration)"),
                _worst_case(rows, classes, "guaranteed flag"),
                threshold, alpha, delta,
            )  # fmt: skip

    cal_true = _targets(cal_rows, classes, "true_dice")
    report["baselines"] = {}
    for name in _baseline_names(rows):
        col = f"baseline_{name}"
        if not any(col in row for row in cal_rows):
            raise ValueError(f"calibration_rows have no column {col!r}; compute the baselines there too.")
        score, cal_score = _matrix(rows, [col])[:, 0], _matrix(cal_rows, [col])[:, 0]
        entry: dict[str, Any] = {"per_class": {}, "mean": None, "calibration": {}}
        for c in true:
            line = least_squares_line(*_finite(cal_score, cal_true[c], f"calibration of {col} ({c})"))
            entry["calibration"][c] = {"slope": line[0], "intercept": line[1]}
            block = _block(score, true[c], threshold, line, f"{col} ({c})")
            if c == "mean":
                entry["mean"] = block
            else:
                entry["per_class"][c] = block
        if alpha is not None:
            if not any(col in row for row in conformal_rows):
                raise ValueError(f"conformal_rows have no column {col!r}; compute the baselines there too.")
            slope, intercept = entry["calibration"]["mean"]["slope"], entry["calibration"]["mean"]["intercept"]
            entry["guaranteed_flag"] = None if not math.isfinite(slope) else _guaranteed_flag(
                _finite(slope * _matrix(conformal_rows, [col])[:, 0] + intercept, conformal_worst,
                        f"guaranteed flag of {col} (calibration)"),
                _finite(slope * score + intercept, evaluated_worst, f"guaranteed flag of {col}"),
                threshold, alpha, delta,
            )  # fmt: skip
        report["baselines"][name] = entry

    report["flag"] = _flag_counts(rows, _matrix(rows, [_column("true_dice", c) for c in classes]), threshold)
    return report


# -------------------------------------------------------------------------------------------------------- output


def _jsonable(obj: Any) -> Any:
    """Plain JSON types; NaN and infinities become None (``null``)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _risk_curves(
    rows: Sequence[Mapping[str, Any]], report: Mapping[str, Any]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{method: (confidence [n], risk [n])}`` on the per-case mean Dice, for :func:`plots.plot_risk_coverage`."""
    classes = quality_columns(rows)
    true = _targets(rows, classes, "true_dice")["mean"]
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if report["quality_head"] is not None:
        pred = _targets(rows, classes, "pred_dice")["mean"]
        keep = np.isfinite(pred) & np.isfinite(true)
        curves["quality head"] = (pred[keep], 1.0 - true[keep])
    for name in report["baselines"]:
        score = _matrix(rows, [f"baseline_{name}"])[:, 0]
        keep = np.isfinite(score) & np.isfinite(true)
        curves[name] = (score[keep], 1.0 - true[keep])
    return curves


def write_report(
    rows: Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike,
    threshold: float = 0.8,
    calibration_rows: Sequence[Mapping[str, Any]] | None = None,
    load_case: Callable[[Mapping[str, Any]], tuple[Any, Any, Any, Any]] | None = None,
    k: int = 2,
    alpha: float | None = None,
    delta: float = 0.1,
    conformal_rows: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Evaluate (:func:`evaluate_quality`) and write ``report.json`` plus PNG figures into ``output_dir``.

    Files: ``report.json`` (atomic, strict JSON: undefined values are ``null``); ``predicted_vs_true.png`` (when
    the table has ``pred_dice``); ``risk_coverage.png`` (quality head and baselines, risk = 1 - per-case mean
    Dice); with ``load_case``, ``overlay_best_<i>.png`` / ``overlay_worst_<i>.png`` for ``i = 1..k``
    (see :func:`segq_monai.plots.plot_best_and_worst`).

    ``alpha`` / ``delta`` / ``conformal_rows``: the guaranteed acceptance threshold of :func:`evaluate_quality`.

    Returns:
        the report dict, as written (NaN replaced by None), with ``"figures"``: the PNG file names.
    """
    from segq_monai import plots  # matplotlib only when figures are drawn

    os.makedirs(output_dir, exist_ok=True)
    report = evaluate_quality(
        rows, threshold=threshold, calibration_rows=calibration_rows, alpha=alpha, delta=delta,
        conformal_rows=conformal_rows,
    )  # fmt: skip
    figures: list[str] = []
    classes = quality_columns(rows)
    if report["quality_head"] is not None:
        pred = _matrix(rows, [_column("pred_dice", c) for c in classes])
        true = _matrix(rows, [_column("true_dice", c) for c in classes])
        keep = np.all(np.isfinite(pred) & np.isfinite(true), axis=1)
        plots.plot_predicted_vs_true(
            pred[keep], true[keep], os.path.join(output_dir, "predicted_vs_true.png"), threshold=threshold,
            class_names=report["classes"],
        )
        figures.append("predicted_vs_true.png")
    curves = _risk_curves(rows, report)
    if curves:
        plots.plot_risk_coverage(curves, os.path.join(output_dir, "risk_coverage.png"))
        figures.append("risk_coverage.png")
    if load_case is not None:
        figures += [os.path.basename(p) for p in plots.plot_best_and_worst(rows, load_case, output_dir, k=k)]
    report["figures"] = figures
    report = _jsonable(report)
    atomic_write_text(os.path.join(output_dir, "report.json"), json.dumps(report, indent=2, allow_nan=False) + "\n")
    return report


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.3f}"


def _guaranteed_cells(flag: Mapping[str, Any] | None) -> list[str]:
    """``[accepted fraction, "k/n = rate"]`` of a guaranteed flag entry, ``–`` where there is none."""
    if not flag:
        return ["–", "–"]
    rate = flag["failure_rate_accepted"]
    return [_fmt(flag["fraction_accepted"]), f"{flag['failures_accepted']}/{flag['n_accepted']} = {_fmt(rate)}"]


def comparison_table(
    report: Mapping[str, Any] | Mapping[str, Mapping[str, Any]], summary: str = "mean", baselines: bool = True
) -> str:
    """A Markdown table, one row per method: quality head variant(s), then the baselines.

    Args:
        report: one report of :func:`evaluate_quality` / :func:`write_report`, or several keyed by variant name,
            e.g. ``{"image+seg+uncertainty": report_a, "image": report_b}`` (the paper's ablation). Baselines that
            are the same in every report are listed once; otherwise once per variant, with its name.
        summary: ``"mean"`` (per-case mean Dice over classes; the class of a binary task) or a class name.
        baselines: False lists the quality heads only (e.g. heads on the maps of different stage-1 estimators).

    Returns:
        Markdown: columns method, n, MAE, Pearson, Spearman, AUROC, AURC, e-AURC (3 decimals, ``–`` where
        undefined); when a report has a guaranteed flag (``alpha``), also the fraction of cases accepted and the
        realised failures among them; and a note on the baselines' Dice-scale fit.
    """
    reports: Mapping[str, Mapping[str, Any]]
    single = "baselines" in report or "quality_head" in report
    reports = {"": report} if single else report  # type: ignore[assignment]
    if not reports:
        raise ValueError("no report given; pass a report dict or {variant name: report}.")

    def pick(entry: Mapping[str, Any]) -> Mapping[str, Any]:
        if summary == "mean":
            return entry["mean"]
        if summary not in entry["per_class"]:
            choices = list(entry["per_class"])
            raise ValueError(f"class {summary!r} is not in the report; choose 'mean' or one of {choices}.")
        return entry["per_class"][summary]

    alphas = sorted({float(r["guaranteed_flag"]["alpha"]) for r in reports.values() if r.get("guaranteed_flag")})
    guaranteed = " accepted | failures among accepted |" if alphas else ""
    lines = [
        "| method | n | MAE | Pearson | Spearman | AUROC | AURC | e-AURC |" + guaranteed,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" + " ---: | ---: |" * bool(alphas),
    ]

    def add(label: str, m: Mapping[str, Any], flag: Mapping[str, Any] | None) -> None:
        cells = [_fmt(m.get(k)) for k in ("mae", "pearson", "spearman", "auroc", "aurc", "eaurc")]
        if alphas:
            cells += _guaranteed_cells(flag)
        lines.append(f"| {label} | {m.get('n', '–')} | " + " | ".join(cells) + " |")

    for variant, rep in reports.items():
        if rep.get("quality_head") is not None:
            label = f"quality head ({variant})" if variant else "quality head"
            add(label, pick(rep["quality_head"]), rep.get("guaranteed_flag"))
    names = list(dict.fromkeys(n for rep in reports.values() for n in rep.get("baselines", {}))) if baselines else []
    fits = sorted({str(rep.get("fit")) for rep in reports.values()})
    for name in names:
        blocks = [
            (v, _jsonable(pick(r["baselines"][name])), _jsonable(r["baselines"][name].get("guaranteed_flag")))
            for v, r in reports.items() if name in r["baselines"]
        ]  # fmt: skip
        if all(b[1:] == blocks[0][1:] for b in blocks):
            add(name, *blocks[0][1:])
        else:
            for variant, b, flag in blocks:
                add(f"{name} ({variant})", b, flag)
    thresholds = sorted({float(rep["threshold"]) for rep in reports.values()})
    lines.append("")
    lines.append(
        f"Scores on {'the per-case mean Dice over classes' if summary == 'mean' else 'class ' + summary}; "
        f"failure: true Dice < {', '.join(map(str, thresholds))}; AURC/e-AURC with risk = 1 - Dice (lower is better)."
        + (f" Baseline MAE after a least-squares map onto the Dice scale ({', '.join(fits)} fit)." if names else "")
    )
    if alphas:
        lines[-1] += (
            f" Guaranteed flag: acceptance threshold calibrated on a held-out labelled split so that the failure rate "
            f"among accepted cases is at most α = {', '.join(map(str, alphas))} with probability 1 − δ; accepted = "
            "fraction of the evaluated cases auto-accepted, then the realised failures among them."
        )
    return "\n".join(lines) + "\n"
