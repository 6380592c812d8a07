"""Evaluation report of predicted segmentation quality: the metrics of the head and the baselines, ``report.json``.

:func:`evaluate_quality` scores the quality head (``pred_dice`` against ``true_dice``) and every baseline with the
functions of :mod:`segq_monai.metrics`: per class, and for the per-case mean over classes (``"mean"``; equal to the
single class of a binary task). Ranking metrics (Pearson, Spearman, failure AUROC, AURC, e-AURC) use the raw
confidence; the error metrics (MAE, RMSE, R²) of a baseline use it mapped onto the Dice scale by its baseline fit, an
ordinary least-squares line ``true_dice ≈ slope * score + intercept`` (``numpy.polyfit``) fitted on
``baseline_fit_rows`` (e.g. the stage-2 training cases), or in-sample when none are given. Risk is ``1 - true Dice``;
a failure is ``true Dice < τ`` (the failure Dice ``tau``).

With ``alpha``, :func:`evaluate_quality` also calibrates a guaranteed acceptance threshold ``λ̂`` on the predicted
Dice and on each baseline (:mod:`segq_monai.calibration.guaranteed`, fitted on ``calibration_rows``, the calibration
split) and reports how it does on the evaluated cases (``"guaranteed_flag"``).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from segq_monai import metrics
from segq_monai.data.columns import (
    FLAG_COLUMN,
    baseline_column,
    baseline_names,
    class_label,
    column_matrix,
    column_name,
    finite_cases,
    quality_columns,
)
from segq_monai.calibration.guaranteed import add_guaranteed_flags
from segq_monai.metrics.quality import FAILURE_DICE
from segq_monai.utils.atomic import atomic_write_text
from segq_monai.utils.jsonable import jsonable

__all__ = ["METRIC_KEYS", "evaluate_quality", "write_report"]

#: Keys of one metric block of the report, in table order.
METRIC_KEYS = ("n", "mae", "rmse", "r2", "pearson", "spearman", "auroc", "aurc", "eaurc")


# ------------------------------------------------------------------------------------------------------- metrics


def _baseline_fit(score: np.ndarray, true: np.ndarray, what: str) -> dict[str, float]:
    """The least-squares line ``true ≈ slope * score + intercept`` (``numpy.polyfit``, degree 1) of ``[N]`` arrays;
    NaN with a ``UserWarning`` when N < 2 or the score is constant."""
    if len(score) < 2 or np.all(score == score[0]):
        cause = "fewer than two cases" if len(score) < 2 else "constant score"
        warnings.warn(f"the baseline fit of {what} is undefined ({cause}); returning NaN.", UserWarning, stacklevel=3)
        return {"slope": float("nan"), "intercept": float("nan")}
    slope, intercept = np.polyfit(score, true, 1)
    return {"slope": float(slope), "intercept": float(intercept)}


def _ranking_metrics(confidence: np.ndarray, true: np.ndarray, tau: float) -> dict[str, float]:
    risk = 1.0 - true
    return {
        "pearson": metrics.pearson_correlation(confidence, true),
        "spearman": metrics.spearman_correlation(confidence, true),
        "auroc": metrics.failure_auroc(confidence, true, tau=tau),
        "aurc": metrics.aurc(confidence, risk),
        "eaurc": metrics.excess_aurc(confidence, risk),
    }


def _error_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    if not np.all(np.isfinite(pred)):  # an undefined baseline fit
        return {"mae": float("nan"), "rmse": float("nan"), "r2": float("nan")}
    return {
        "mae": metrics.mean_absolute_error(pred, true),
        "rmse": metrics.root_mean_squared_error(pred, true),
        "r2": metrics.r2_score(pred, true),
    }


def _block(
    score: np.ndarray, true: np.ndarray, tau: float, fit: Mapping[str, float] | None, what: str
) -> dict[str, float]:
    """Metrics of one confidence ``[N]`` against one true Dice ``[N]``; ``fit`` maps a baseline onto the Dice scale."""
    score, true = finite_cases(score, true, what)
    mapped = score if fit is None else fit["slope"] * score + fit["intercept"]
    out: dict[str, float] = {"n": int(len(score))}
    out.update(_error_metrics(mapped, true))
    out.update(_ranking_metrics(score, true, tau))
    return {k: float(out[k]) if k != "n" else out[k] for k in METRIC_KEYS}


def _targets(rows: Sequence[Mapping[str, Any]], classes: Sequence[str], kind: str) -> dict[str, np.ndarray]:
    """``{class name: [N]}`` plus ``"mean"``: the per-case mean over classes of the ``kind`` Dice columns."""
    m = column_matrix(rows, [column_name(kind, c) for c in classes])
    out = {class_label(c): m[:, i] for i, c in enumerate(classes)}
    out["mean"] = m.mean(axis=1)
    return out


def _flag_counts(rows: Sequence[Mapping[str, Any]], true: np.ndarray, tau: float) -> dict[str, Any] | None:
    """Confusion counts of ``flagged`` against the true failure (any class's true Dice below ``tau``)."""
    if not any(FLAG_COLUMN in row for row in rows):
        return None
    flagged = column_matrix(rows, [FLAG_COLUMN])[:, 0]
    keep = np.isfinite(flagged) & np.all(np.isfinite(true), axis=1)
    flagged, failure = flagged[keep] != 0, np.any(true[keep] < tau, axis=1)
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


def _table_classes(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The class suffixes of a labelled table (:func:`quality_columns`), checked."""
    if len(rows) == 0:
        raise ValueError("the quality table has no rows; evaluate at least one labelled case.")
    classes = quality_columns(rows)
    if not classes or not any(column_name("true_dice", classes[0]) in row for row in rows):
        raise ValueError(
            "the table has no true_dice columns; evaluate needs labels (columns true_dice or true_dice_<class>)."
        )
    if "mean" in classes:
        raise ValueError("a class is named 'mean', which the report uses for the mean over classes; rename it.")
    return classes


def _head_entry(
    rows: Sequence[Mapping[str, Any]], classes: Sequence[str], true: Mapping[str, np.ndarray], tau: float
) -> dict[str, Any] | None:
    """The quality head's metrics per class and for the per-case mean; None without ``pred_dice`` columns."""
    if not any(column_name("pred_dice", classes[0]) in row for row in rows):
        return None
    pred = _targets(rows, classes, "pred_dice")
    return {
        "per_class": {c: _block(pred[c], true[c], tau, None, f"pred_dice ({c})") for c in list(true)[:-1]},
        "mean": _block(pred["mean"], true["mean"], tau, None, "pred_dice (mean)"),
    }


def _baseline_entry(
    name: str,
    rows: Sequence[Mapping[str, Any]],
    true: Mapping[str, np.ndarray],
    fit_rows: Sequence[Mapping[str, Any]],
    fit_true: Mapping[str, np.ndarray],
    tau: float,
) -> dict[str, Any]:
    """One baseline's metrics per class and for the mean, each after its baseline fit on ``fit_rows``."""
    col = baseline_column(name)
    if not any(col in row for row in fit_rows):
        raise ValueError(f"baseline_fit_rows have no column {col!r}; compute the baselines there too.")
    score, fit_score = column_matrix(rows, [col])[:, 0], column_matrix(fit_rows, [col])[:, 0]
    fits = {c: _baseline_fit(*finite_cases(fit_score, fit_true[c], f"{col} ({c})"), f"{col} ({c})") for c in true}
    blocks = {c: _block(score, true[c], tau, fits[c], f"{col} ({c})") for c in true}
    return {"per_class": {c: blocks[c] for c in list(true)[:-1]}, "mean": blocks["mean"], "baseline_fit": fits}


def evaluate_quality(
    rows: Sequence[Mapping[str, Any]],
    tau: float = FAILURE_DICE,
    baseline_fit_rows: Sequence[Mapping[str, Any]] | None = None,
    alpha: float | None = None,
    delta: float = 0.1,
    calibration_rows: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Score predicted quality and the scalar baselines against the true Dice of a labelled set.

    Args:
        rows: the per-case table (see :mod:`segq_monai.data.columns`); needs ``true_dice`` (or
            ``true_dice_<c>``) columns. Cells may be numbers or numeric strings.
        tau: the failure Dice τ: a case (class) fails when its true Dice is strictly below it.
        baseline_fit_rows: cases to fit each baseline's baseline fit on (columns ``baseline_<name>`` and the true
            Dice), e.g. the stage-2 training cases. None: fit on ``rows`` (``"baseline_fit_split": "in-sample"``).
        alpha: None (default): no guaranteed flag. Otherwise the target failure rate among auto-accepted cases,
            in (0, 1): an acceptance threshold ``λ̂`` on a confidence is calibrated on ``calibration_rows`` by
            :func:`~segq_monai.calibration.calibrate_selective_threshold`, so that with probability >= ``1 - delta``
            over i.i.d. calibration cases, the failure rate among cases with confidence >= ``λ̂`` is at most ``alpha``
            (a case fails when any class's true Dice is below ``tau``, as for ``"flag"``). The quality head's
            confidence is the per-case predicted Dice (minimum over classes), reported under ``"guaranteed_flag"``;
            each baseline's is its score mapped onto the Dice scale by its baseline fit (fitted on
            ``baseline_fit_rows``, not on ``calibration_rows``, so that the candidate thresholds do not depend on the
            calibration draw), reported under ``baselines[name]["guaranteed_flag"]``.
        delta: the allowed probability, over the draw of the calibration split, that this guarantee fails, in (0, 1).
        calibration_rows: the calibration split: labelled cases that neither stage was trained on, run through the same
            pipeline as ``rows`` (``true_dice``, ``pred_dice`` when ``rows`` have it, the baselines). Needed with
            ``alpha`` (ValueError otherwise).

    Returns:
        a dict (NaN where a metric is undefined; :func:`write_report` writes those as ``null``)::

            {"tau": float, "n_cases": int, "classes": [str, ...],
             "baseline_fit_split": "in-sample" | "held-out", "n_baseline_fit": int,
             "quality_head": {"per_class": {cls: M}, "mean": M} | None,   # None without pred_dice columns
             "baselines": {name: {"per_class": {cls: M}, "mean": M,
                                  "baseline_fit": {cls or "mean": {"slope": float, "intercept": float}}}},
             "guaranteed_flag": G,  # with alpha and pred_dice; baselines then also hold "guaranteed_flag": G
             "flag": {"n", "true_failures", "true_positives", "false_positives", "false_negatives",
                      "true_negatives", "fraction_flagged"} | None}

            G = {"alpha", "delta", "acceptance_threshold", "feasible", "n_calibration", "calibration_fraction_accepted",
                 "calibration_bound", "n", "n_accepted", "fraction_accepted", "failures_accepted",
                 "failure_rate_accepted"}

        with ``M = {"n", "mae", "rmse", "r2", "pearson", "spearman", "auroc", "aurc", "eaurc"}``. ``"mean"``
        scores the per-case mean Dice over classes (for a binary task, the one class ``"foreground"``).

        ``acceptance_threshold`` is ``λ̂`` (``inf``, written ``null``, when no threshold is certified: ``feasible`` is
        false and every case is flagged); ``calibration_bound`` the Clopper-Pearson bound that certifies it; the rest
        are realised on ``rows``: ``failure_rate_accepted`` = true failures among the accepted (NaN when none is
        accepted). A single evaluation set scatters around the guaranteed rate; the guarantee is on the rate.
    """
    classes = _table_classes(rows)
    if baseline_fit_rows is not None and len(baseline_fit_rows) == 0:
        raise ValueError("baseline_fit_rows is empty; pass the stage-2 training cases, or None to fit in-sample.")
    fit_rows = rows if baseline_fit_rows is None else baseline_fit_rows
    true, fit_true = _targets(rows, classes, "true_dice"), _targets(fit_rows, classes, "true_dice")
    report: dict[str, Any] = {
        "tau": float(tau),
        "n_cases": len(rows),
        "classes": list(true)[:-1],
        "baseline_fit_split": "in-sample" if baseline_fit_rows is None else "held-out",
        "n_baseline_fit": len(fit_rows),
        "quality_head": _head_entry(rows, classes, true, tau),
        "baselines": {
            name: _baseline_entry(name, rows, true, fit_rows, fit_true, tau) for name in baseline_names(rows)
        },
    }
    if alpha is not None:
        add_guaranteed_flags(report, rows, calibration_rows, classes, tau, alpha, delta)
    report["flag"] = _flag_counts(rows, column_matrix(rows, [column_name("true_dice", c) for c in classes]), tau)
    return report


# -------------------------------------------------------------------------------------------------------- output



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
        score = column_matrix(rows, [baseline_column(name)])[:, 0]
        keep = np.isfinite(score) & np.isfinite(true)
        curves[name] = (score[keep], 1.0 - true[keep])
    return curves


def write_report(
    rows: Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike,
    tau: float = FAILURE_DICE,
    baseline_fit_rows: Sequence[Mapping[str, Any]] | None = None,
    load_case: Callable[[Mapping[str, Any]], tuple[Any, Any, Any, Any]] | None = None,
    k: int = 2,
    alpha: float | None = None,
    delta: float = 0.1,
    calibration_rows: Sequence[Mapping[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate (:func:`evaluate_quality`) and write ``report.json`` plus PNG figures into ``output_dir``.

    Files: ``report.json`` (atomic, strict JSON: undefined values are ``null``); ``predicted_vs_true.png`` (when
    the table has ``pred_dice``); ``risk_coverage.png`` (quality head and baselines, risk = 1 - per-case mean
    Dice); with ``load_case``, ``overlay_best_<i>.png`` / ``overlay_worst_<i>.png`` for ``i = 1..k``
    (see :func:`segq_monai.evaluation.plots.plot_best_and_worst`).

    ``alpha`` / ``delta`` / ``calibration_rows``: the guaranteed acceptance threshold of :func:`evaluate_quality`.
    ``extra``: more top-level blocks for ``report.json`` (e.g. a quality calibration's promise and drift check).

    Returns:
        the report dict, as written (NaN replaced by None), with ``"figures"``: the PNG file names.
    """
    from segq_monai.evaluation import plots  # matplotlib only when figures are drawn

    os.makedirs(output_dir, exist_ok=True)
    report = evaluate_quality(
        rows, tau=tau, baseline_fit_rows=baseline_fit_rows, alpha=alpha, delta=delta,
        calibration_rows=calibration_rows,
    )  # fmt: skip
    figures: list[str] = []
    classes = quality_columns(rows)
    if report["quality_head"] is not None:
        pred = column_matrix(rows, [column_name("pred_dice", c) for c in classes])
        true = column_matrix(rows, [column_name("true_dice", c) for c in classes])
        keep = np.all(np.isfinite(pred) & np.isfinite(true), axis=1)
        plots.plot_predicted_vs_true(
            pred[keep], true[keep], os.path.join(output_dir, "predicted_vs_true.png"), tau=tau,
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
    report.update(extra or {})
    report = jsonable(report)
    atomic_write_text(os.path.join(output_dir, "report.json"), json.dumps(report, indent=2, allow_nan=False) + "\n")
    return report
