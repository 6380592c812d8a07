"""Evaluation report of predicted segmentation quality: the metrics of the head and the baselines, ``report.json``.

:func:`evaluate_quality` scores the quality head (``pred_dice`` against ``true_dice``) and every baseline with the
functions of :mod:`segq_monai.metrics`: per class, and for the per-case mean over classes (``"mean"``; equal to the
single class of a binary task). Ranking metrics (Pearson, Spearman, failure AUROC, AURC, e-AURC) use the raw
confidence; the error metrics (MAE, RMSE, R²) of a baseline use it mapped onto the Dice scale by an ordinary
least-squares line ``true_dice ≈ slope * score + intercept`` fitted on ``calibration_rows`` (e.g. the stage-2
training cases), or in-sample when none are given. Risk is ``1 - true Dice``; a failure is ``true Dice < threshold``.

With ``alpha``, :func:`evaluate_quality` also calibrates a guaranteed acceptance threshold on the predicted Dice
and on each baseline (:func:`segq_monai.metrics.conformal.calibrate_selective_threshold`, fitted on
``conformal_rows``, a
labelled calibration split) and reports how it does on the evaluated cases (``"guaranteed_flag"``).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from segq_monai import metrics
from segq_monai.evaluation.columns import (
    baseline_names,
    class_label,
    column_matrix,
    column_name,
    quality_columns,
)
from segq_monai.metrics.conformal import calibrate_selective_threshold
from segq_monai.utils.atomic import atomic_write_text

__all__ = ["METRIC_KEYS", "evaluate_quality", "jsonable", "least_squares_line", "write_report"]

#: Keys of one metric block of the report, in table order.
METRIC_KEYS = ("n", "mae", "rmse", "r2", "pearson", "spearman", "auroc", "aurc", "eaurc")


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
    m = column_matrix(rows, [column_name(kind, c) for c in classes])
    out = {class_label(c): m[:, i] for i, c in enumerate(classes)}
    out["mean"] = m.mean(axis=1)
    return out


def _flag_counts(rows: Sequence[Mapping[str, Any]], true: np.ndarray, threshold: float) -> dict[str, Any] | None:
    """Confusion counts of ``flagged`` against the true failure (any class's true Dice below the threshold)."""
    if not any("flagged" in row for row in rows):
        return None
    flagged = column_matrix(rows, ["flagged"])[:, 0]
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
    pred = column_matrix(rows, [column_name("pred_dice", c) for c in classes]).min(axis=1)
    true = column_matrix(rows, [column_name("true_dice", c) for c in classes]).min(axis=1)
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
        columns = [column_name(kind, c) for c in classes]
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
            :func:`~segq_monai.metrics.calibrate_selective_threshold` (``tau=threshold``), so that with probability
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
    if not classes or not any(column_name("true_dice", classes[0]) in row for row in rows):
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
    if any(column_name("pred_dice", classes[0]) in row for row in rows):
        pred = _targets(rows, classes, "pred_dice")
        report["quality_head"] = {
            "per_class": {c: _block(pred[c], true[c], threshold, None, f"pred_dice ({c})") for c in list(true)[:-1]},
            "mean": _block(pred["mean"], true["mean"], threshold, None, "pred_dice (mean)"),
        }

    if alpha is not None:
        conformal_rows = _check_conformal(rows, conformal_rows, classes, report["quality_head"] is not None)
        evaluated_worst = column_matrix(rows, [column_name("true_dice", c) for c in classes]).min(axis=1)
        conformal_worst = column_matrix(conformal_rows, [column_name("true_dice", c) for c in classes]).min(axis=1)
        if report["quality_head"] is not None:
            report["guaranteed_flag"] = _guaranteed_flag(
                _worst_case(conformal_rows, classes, "guaranteed flag (calibration)"),
                _worst_case(rows, classes, "guaranteed flag"),
                threshold, alpha, delta,
            )  # fmt: skip

    cal_true = _targets(cal_rows, classes, "true_dice")
    report["baselines"] = {}
    for name in baseline_names(rows):
        col = f"baseline_{name}"
        if not any(col in row for row in cal_rows):
            raise ValueError(f"calibration_rows have no column {col!r}; compute the baselines there too.")
        score, cal_score = column_matrix(rows, [col])[:, 0], column_matrix(cal_rows, [col])[:, 0]
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
                _finite(slope * column_matrix(conformal_rows, [col])[:, 0] + intercept, conformal_worst,
                        f"guaranteed flag of {col} (calibration)"),
                _finite(slope * score + intercept, evaluated_worst, f"guaranteed flag of {col}"),
                threshold, alpha, delta,
            )  # fmt: skip
        report["baselines"][name] = entry

    report["flag"] = _flag_counts(rows, column_matrix(rows, [column_name("true_dice", c) for c in classes]), threshold)
    return report


# -------------------------------------------------------------------------------------------------------- output


def jsonable(obj: Any) -> Any:
    """Plain JSON types; NaN and infinities become None (``null``)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return jsonable(obj.tolist())
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
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
        score = column_matrix(rows, [f"baseline_{name}"])[:, 0]
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
    (see :func:`segq_monai.evaluation.plots.plot_best_and_worst`).

    ``alpha`` / ``delta`` / ``conformal_rows``: the guaranteed acceptance threshold of :func:`evaluate_quality`.

    Returns:
        the report dict, as written (NaN replaced by None), with ``"figures"``: the PNG file names.
    """
    from segq_monai.evaluation import plots  # matplotlib only when figures are drawn

    os.makedirs(output_dir, exist_ok=True)
    report = evaluate_quality(
        rows, threshold=threshold, calibration_rows=calibration_rows, alpha=alpha, delta=delta,
        conformal_rows=conformal_rows,
    )  # fmt: skip
    figures: list[str] = []
    classes = quality_columns(rows)
    if report["quality_head"] is not None:
        pred = column_matrix(rows, [column_name("pred_dice", c) for c in classes])
        true = column_matrix(rows, [column_name("true_dice", c) for c in classes])
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
    report = jsonable(report)
    atomic_write_text(os.path.join(output_dir, "report.json"), json.dumps(report, indent=2, allow_nan=False) + "\n")
    return report
