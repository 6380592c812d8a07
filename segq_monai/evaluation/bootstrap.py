"""The package's one bootstrap: percentile intervals over resamples of whole groups of cases.

What is resampled: groups of cases, with replacement, each drawn group with all its cases; a resample holds as many
groups as the data (:func:`grouped_resamples`). With every case its own group (``groups=None`` in
:func:`bootstrap_interval`) this is the plain bootstrap over cases. The demo's cases are artifact copies of a few
slices: copies of one slice are correlated, so resampling cases would treat them as independent and give intervals
that are too narrow; its groups are the slices.

The interval (:func:`percentile_interval`) is the ``(1 ± level) / 2`` quantiles of the statistic over the resamples
where it is defined (finite): a resample where it is not (a correlation of constant values, an AUROC without
failures) is left out, and the interval is NaN only when no resample gives a value. :func:`bootstrap_interval`
gives one statistic's value and interval; :func:`report_intervals` those of the report's metrics
(:mod:`segq_monai.evaluation.report`) for the quality head and every baseline over the same resamples, and the paired
intervals of each baseline's metric minus the head's: whether the head beats a baseline is read from the interval of
the difference, not from two overlapping intervals.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from segq_monai import metrics
from segq_monai.data.columns import baseline_names, column_matrix, column_name, quality_columns
from segq_monai.utils.jsonable import jsonable
from segq_monai.utils.atomic import atomic_write_text

__all__ = ["INTERVAL_KEYS", "bootstrap_interval", "grouped_resamples", "percentile_interval", "report_intervals", "write_intervals"]

#: the metrics :func:`report_intervals` gives intervals for, in table order.
INTERVAL_KEYS = ("mae", "pearson", "spearman", "auroc", "aurc", "eaurc")


def grouped_resamples(groups: Sequence[Hashable], n_resamples: int = 1000, seed: int = 0) -> list[np.ndarray]:
    """Case indices of ``n_resamples`` bootstrap resamples of whole groups.

    Args:
        groups: ``[N]`` the group of each case (e.g. its source slice).
        n_resamples: number of resamples.
        seed: seed of the draws (``numpy.random.default_rng``).

    Returns:
        ``n_resamples`` int arrays; each is the concatenated case indices of G groups drawn with replacement
        from the G distinct groups (so its length varies when the groups differ in size).
    """
    if len(groups) == 0 or n_resamples < 1:
        raise ValueError(f"need at least one case and one resample, got {len(groups)} cases, {n_resamples}.")
    _, inverse = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(int(inverse.max()) + 1)]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(members), (n_resamples, len(members)))
    return [np.concatenate([members[g] for g in draw]) for draw in draws]


def percentile_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """``(lo, hi)``: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the finite ``values``; NaN
    when none is finite (a metric undefined on every resample)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan"), float("nan")
    lo, hi = np.quantile(v, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_interval(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    pred: Sequence[float],
    true: Sequence[float],
    groups: Sequence[Hashable] | None = None,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(value, lo, hi)``: ``statistic(pred, true)`` on all ``[N]`` cases, and its :func:`percentile_interval` over
    :func:`grouped_resamples` of ``groups`` (``[N]``; None: every case its own group, the bootstrap over cases)."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    resamples = grouped_resamples(range(len(pred)) if groups is None else groups, n_resamples, seed)
    values = [float(statistic(pred[idx], true[idx])) for idx in resamples]
    return (float(statistic(pred, true)), *percentile_interval(values, level))


def _metric_fns(tau: float) -> dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float]]:
    """``{metric: f(confidence, mapped onto Dice, true Dice)}``, as :func:`evaluate_quality` scores them; the MAE is
    NaN where the map onto Dice is undefined (a baseline constant on the cases that fit it, e.g. pairwise Dice at
    T = 1)."""
    return {
        "mae": lambda c, m, t: metrics.mean_absolute_error(m, t) if np.isfinite(m).all() else np.nan,
        "pearson": lambda c, m, t: metrics.pearson_correlation(c, t),
        "spearman": lambda c, m, t: metrics.spearman_correlation(c, t),
        "auroc": lambda c, m, t: metrics.failure_auroc(c, t, tau=tau),
        "aurc": lambda c, m, t: metrics.aurc(c, 1.0 - t),
        "eaurc": lambda c, m, t: metrics.excess_aurc(c, 1.0 - t),
    }


def report_intervals(
    rows: Sequence[Mapping[str, Any]],
    report: Mapping[str, Any],
    groups: Sequence[Hashable],
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Grouped-bootstrap intervals of the per-case mean-Dice metrics of ``report`` (:func:`evaluate_quality` of
    ``rows``): the quality head (``pred_dice``) and each baseline, whose MAE uses the line in
    ``report["baselines"][name]["baseline_fit"]["mean"]`` (fitted elsewhere, kept fixed over resamples).

    Args:
        rows: the evaluated table, ``[N]`` rows.
        report: its report (``tau``, ``quality_head``, ``baselines``).
        groups: ``[N]`` the group of each row.
        n_resamples, level, seed: the bootstrap (:func:`grouped_resamples`, :func:`percentile_interval`).

    Returns:
        ``{"level", "n_resamples", "n_groups", "methods": {"quality_head" | name: {metric: [lo, hi]}},
        "against_head": {name: {metric: [lo, hi]}}}`` with metrics :data:`INTERVAL_KEYS` (NaN where undefined);
        ``against_head`` (empty without a quality head) holds the interval of the baseline's metric minus the head's,
        each resample's two values taken on the same drawn slices (for the AURC, positive: the head ranks better).
    """
    if len(groups) != len(rows):
        raise ValueError(f"groups has {len(groups)} entries for {len(rows)} rows; give one group per row.")
    classes = quality_columns(rows)
    true = column_matrix(rows, [column_name("true_dice", c) for c in classes]).mean(axis=1)
    series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if report.get("quality_head") is not None:
        pred = column_matrix(rows, [column_name("pred_dice", c) for c in classes]).mean(axis=1)
        series["quality_head"] = (pred, pred)
    for name in baseline_names(rows):
        if name in report.get("baselines", {}):
            line = report["baselines"][name]["baseline_fit"]["mean"]
            score = column_matrix(rows, [f"baseline_{name}"])[:, 0]
            slope = np.nan if line["slope"] is None else line["slope"]
            intercept = np.nan if line["intercept"] is None else line["intercept"]
            series[name] = (score, slope * score + intercept)
    resamples = grouped_resamples(groups, n_resamples, seed)
    fns = _metric_fns(float(report["tau"]))
    out: dict[str, Any] = {}
    per_resample: dict[str, dict[str, np.ndarray]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a resample of one group has undefined correlations: NaN, left out
        for method, (confidence, mapped) in series.items():
            keep = np.isfinite(confidence) & np.isfinite(true)
            values: dict[str, list[float]] = {k: [] for k in fns}
            for idx in resamples:
                idx = idx[keep[idx]]
                for key, fn in fns.items():
                    values[key].append(float(fn(confidence[idx], mapped[idx], true[idx])) if len(idx) else np.nan)
            out[method] = {key: list(percentile_interval(v, level)) for key, v in values.items()}
            per_resample[method] = {key: np.asarray(v) for key, v in values.items()}
    head = per_resample.pop("quality_head", None)
    against = {} if head is None else {
        method: {key: list(percentile_interval(v - head[key], level)) for key, v in values.items()}
        for method, values in per_resample.items()
    }  # fmt: skip
    n_groups = len({str(g) for g in groups})
    return {"level": level, "n_resamples": n_resamples, "n_groups": n_groups, "methods": out,
            "against_head": against}  # fmt: skip


def write_intervals(intervals: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write :func:`report_intervals` output as strict JSON (NaN as ``null``), atomically."""
    atomic_write_text(path, json.dumps(jsonable(intervals), indent=1, allow_nan=False) + "\n")
