"""The guaranteed flag of the evaluation report: an acceptance threshold ``λ̂`` fitted on the calibration split, scored on
the evaluated cases.

``λ̂`` is calibrated by a :class:`segq_monai.calibration.flag.ConformalFlagger` (``method="selective"``) on
``calibration_rows`` (labelled cases that neither stage was trained on, run through the same pipeline) and its
acceptances are counted on the evaluated rows by :func:`segq_monai.calibration.flag.acceptance_counts`. A case
fails when any class's true Dice is below the failure Dice ``τ``. Its confidence is the per-case minimum over classes
of the predicted Dice (quality head), or a baseline mapped onto the Dice scale by its baseline fit (fitted on other
cases than the calibration split, so that the candidate thresholds do not depend on the calibration draw).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from segq_monai.data.columns import baseline_column, column_matrix, column_name, finite_cases
from segq_monai.calibration.flag import ConformalFlagger, acceptance_counts

__all__ = ["add_guaranteed_flags", "guaranteed_flag"]


def guaranteed_flag(
    calibration: tuple[np.ndarray, np.ndarray],
    evaluated: tuple[np.ndarray, np.ndarray],
    tau: float,
    alpha: float,
    delta: float,
) -> dict[str, Any]:
    """``λ̂`` fitted on ``calibration`` = (confidence ``[n]``, true Dice ``[n]``), scored on ``evaluated`` (the same, of
    the evaluated cases): the report's ``"guaranteed_flag"`` block (see :func:`~segq_monai.evaluation.report.
    evaluate_quality`)."""
    cal = ConformalFlagger(alpha=alpha, delta=delta, tau=tau).fit(*calibration).result
    conf, true = evaluated
    n_acc, failures = acceptance_counts(conf, true, cal.acceptance_threshold, tau)
    return {
        "alpha": float(alpha),
        "delta": float(delta),
        "acceptance_threshold": cal.acceptance_threshold,
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


def _check_calibration(
    rows: Sequence[Mapping[str, Any]],
    calibration_rows: Sequence[Mapping[str, Any]] | None,
    classes: Sequence[str],
    with_head: bool,
) -> Sequence[Mapping[str, Any]]:
    """``calibration_rows``, checked: present, with ``true_dice`` (and ``pred_dice`` when the head is scored) columns
    in them and in ``rows``."""
    if not calibration_rows:
        raise ValueError(
            "alpha needs calibration_rows: labelled cases (true_dice, and pred_dice for the quality head) that neither "
            "stage was trained on, e.g. the quality.csv of an evaluation on a calibration split; pass them, or "
            "alpha=None."
        )
    for kind in ("true_dice", "pred_dice") if with_head else ("true_dice",):
        columns = [column_name(kind, c) for c in classes]
        for name, table in (("calibration_rows", calibration_rows), ("rows", rows)):
            missing = [col for col in columns if not any(col in row for row in table)]
            if missing:
                raise ValueError(
                    f"alpha needs {name} with columns {columns}; {missing} are missing. Run the quality head on "
                    "those cases (pred_dice) and label them (true_dice), or pass alpha=None."
                )
    return calibration_rows


def _worst(rows: Sequence[Mapping[str, Any]], classes: Sequence[str], kind: str) -> np.ndarray:
    """``[N]``: each case's minimum over classes of the ``kind`` Dice columns."""
    return column_matrix(rows, [column_name(kind, c) for c in classes]).min(axis=1)


def add_guaranteed_flags(
    report: dict[str, Any],
    rows: Sequence[Mapping[str, Any]],
    calibration_rows: Sequence[Mapping[str, Any]] | None,
    classes: Sequence[str],
    tau: float,
    alpha: float,
    delta: float,
) -> None:
    """Add ``"guaranteed_flag"`` to ``report`` (when it scores the quality head) and to each of its baselines (None
    where the baseline fit is undefined); the baselines' fits are read from ``report``."""
    calibration_rows = _check_calibration(rows, calibration_rows, classes, report["quality_head"] is not None)
    evaluated_true, calibration_true = _worst(rows, classes, "true_dice"), _worst(calibration_rows, classes, "true_dice")
    if report["quality_head"] is not None:
        report["guaranteed_flag"] = guaranteed_flag(
            finite_cases(_worst(calibration_rows, classes, "pred_dice"), calibration_true,
                         "guaranteed flag (calibration split)"),
            finite_cases(_worst(rows, classes, "pred_dice"), evaluated_true, "guaranteed flag"),
            tau, alpha, delta,
        )  # fmt: skip
    for name, entry in report["baselines"].items():
        col = baseline_column(name)
        if not any(col in row for row in calibration_rows):
            raise ValueError(f"calibration_rows have no column {col!r}; compute the baselines there too.")
        slope, intercept = entry["baseline_fit"]["mean"]["slope"], entry["baseline_fit"]["mean"]["intercept"]
        entry["guaranteed_flag"] = None if not math.isfinite(slope) else guaranteed_flag(
            finite_cases(slope * column_matrix(calibration_rows, [col])[:, 0] + intercept, calibration_true,
                         f"guaranteed flag of {col} (calibration split)"),
            finite_cases(slope * column_matrix(rows, [col])[:, 0] + intercept, evaluated_true,
                         f"guaranteed flag of {col}"),
            tau, alpha, delta,
        )  # fmt: skip
