"""Metrics for stage 2: how well predicted segmentation quality matches the true quality.

Two families, after DeVries & Taylor (arXiv 1807.00502) and Zenk et al. 2024 (failure detection benchmark):

* regression of the quality value (``pred_dice`` against ``true_dice``): :func:`mean_absolute_error`,
  :func:`root_mean_squared_error`, :func:`pearson_correlation`, :func:`spearman_correlation`, :func:`r2_score`;
* failure detection from a confidence score (e.g. ``pred_dice``, or minus an uncertainty):
  :func:`failure_auroc`, :func:`risk_coverage_curve`, :func:`aurc`, :func:`excess_aurc`. For segmentation the
  risk of a case is ``1 - true Dice`` (Zenk et al. 2024).

Shapes. Every function takes two arrays (torch tensors or anything ``numpy.asarray`` accepts) of the same shape,
either ``[N]`` (N cases, one foreground class) or ``[N, K]`` (N cases, K foreground classes, e.g. the ``[C - 1]``
vectors of ``true_dice`` / ``pred_dice`` stacked over cases). Each class is scored on its own: ``[N]`` input gives a
python ``float``, ``[N, K]`` input a float64 tensor ``[K]``. Computation is in float64 numpy on the CPU.

Bad input. Malformed input raises ``ValueError``: shapes that differ, more than two dimensions, no cases or no
classes, NaN or infinite values. Values that are statistically undefined are returned as ``float("nan")`` together
with a ``UserWarning`` that names the cause (never a silent NaN): fewer than two cases (correlations, R², AUROC), a
constant input (Pearson and Spearman: either input; R²: ``true``), a single class for AUROC (no failures, or only
failures). With ``[N, K]`` input the warning names the class index.

Dependencies. Pearson and Spearman are ``scipy.stats.pearsonr`` / ``spearmanr`` (average ranks for ties); AUROC is
``monai.metrics.compute_roc_auc``, which counts a tied failure/non-failure pair as one half (the Mann-Whitney
statistic, as ``sklearn.metrics.roc_auc_score``).

The risk-coverage curve (Geifman & El-Yaniv 2017; AURC is the area under it) keeps its name from the literature, but
its x axis is called ``fraction_accepted`` here (the literature's "coverage"): the fraction of cases accepted, most
confident first. ``coverage`` in this package is only an interval's coverage (:mod:`segq_monai.calibration`).

Ties. For the risk-coverage curve, cases with equal confidence cannot be ordered, so *tied cases share their risk*:
each case's risk is replaced by the mean risk of its tie group before the running mean is taken. At fractions where
a whole tie group has entered, the curve equals the one where tied cases enter together; inside a group it is the
expected selective risk over all orders of the tied cases. The result does not depend on the input order.

:mod:`segq_monai.metrics.cumulative` wraps these functions as ``monai.metrics.CumulativeIterationMetric``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_roc_auc
from scipy import stats

from segq_monai.metrics.quality import FAILURE_DICE

__all__ = [
    "mean_absolute_error",
    "root_mean_squared_error",
    "pearson_correlation",
    "spearman_correlation",
    "r2_score",
    "failure_auroc",
    "risk_coverage_curve",
    "aurc",
    "excess_aurc",
]

ArrayLike = Any  # torch.Tensor, np.ndarray or a (nested) sequence of numbers


class _Undefined(Exception):
    """Raised by a per-class kernel when its value is statistically undefined; the message names the cause."""


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _as_2d(a: ArrayLike, b: ArrayLike, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray, bool]:
    """Check a pair of inputs and return them as float64 ``[N, K]`` arrays, plus whether the input was ``[N]``."""
    a_np, b_np = _to_numpy(a), _to_numpy(b)
    if a_np.shape != b_np.shape:
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` must have the same shape, got {a_np.shape} and {b_np.shape}; "
            "pass one value per case (and per class)."
        )
    if a_np.ndim not in (1, 2):
        raise ValueError(f"inputs must be [N] or [N, K] (cases, classes), got shape {a_np.shape}.")
    if a_np.size == 0:
        raise ValueError(f"inputs hold no values (shape {a_np.shape}); pass at least one case and one class.")
    for name, arr in zip(names, (a_np, b_np)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"`{name}` contains NaN or infinite values; drop or impute those cases first.")
    single = a_np.ndim == 1
    return (a_np[:, None], b_np[:, None], True) if single else (a_np, b_np, False)


def _per_class(
    kernel: Callable[[np.ndarray, np.ndarray], float], a: ArrayLike, b: ArrayLike, names: tuple[str, str], what: str
) -> float | torch.Tensor:
    """Apply a 1-D ``kernel`` to each class column; turn :class:`_Undefined` into NaN plus a ``UserWarning``."""
    a2, b2, single = _as_2d(a, b, names)
    values = []
    for k in range(a2.shape[1]):
        try:
            values.append(float(kernel(a2[:, k], b2[:, k])))
        except _Undefined as cause:
            where = "" if single else f" for class {k}"
            warnings.warn(f"{what} is undefined{where}: {cause}; returning NaN.", UserWarning, stacklevel=3)
            values.append(float("nan"))
    return values[0] if single else torch.tensor(values, dtype=torch.float64)


def _check_correlatable(pred: np.ndarray, true: np.ndarray) -> None:
    if len(pred) < 2:
        raise _Undefined("fewer than two cases")
    for name, x in (("pred", pred), ("true", true)):
        if np.all(x == x[0]):
            raise _Undefined(f"`{name}` is constant")


def _pearson_1d(pred: np.ndarray, true: np.ndarray) -> float:
    _check_correlatable(pred, true)
    return float(stats.pearsonr(pred, true).statistic)


def _spearman_1d(pred: np.ndarray, true: np.ndarray) -> float:
    _check_correlatable(pred, true)
    return float(stats.spearmanr(pred, true).statistic)


def _r2_1d(pred: np.ndarray, true: np.ndarray) -> float:
    if len(true) < 2:
        raise _Undefined("fewer than two cases")
    if np.all(true == true[0]):
        raise _Undefined("`true` is constant, so its variance (the denominator) is zero")
    ss_res = np.sum((true - pred) ** 2)
    ss_tot = np.sum((true - true.mean()) ** 2)
    return float(1.0 - ss_res / ss_tot)


def _auroc_1d(confidence: np.ndarray, true_dice: np.ndarray, tau: float) -> float:
    if len(confidence) < 2:
        raise _Undefined("fewer than two cases")
    failure = true_dice < tau
    if not failure.any():
        raise _Undefined(f"no failures (every true quality >= tau = {tau})")
    if failure.all():
        raise _Undefined(f"only failures (every true quality < tau = {tau})")
    # failure score: lower confidence scores higher; MONAI's AUC counts tied pairs one half (Mann-Whitney U)
    return float(compute_roc_auc(torch.from_numpy(-confidence), torch.from_numpy(failure.astype(np.float64))))


def _selective_risks_1d(confidence: np.ndarray, risk: np.ndarray) -> np.ndarray:
    """Selective risk ``[N]`` at the accepted fraction k/N, k = 1..N; tied confidences share their group's mean risk."""
    order = np.argsort(-confidence, kind="stable")
    conf, rsk = confidence[order], risk[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(conf) != 0) + 1))
    counts = np.diff(np.append(starts, len(conf)))
    shared = np.repeat(np.add.reduceat(rsk, starts) / counts, counts)
    return np.cumsum(shared) / np.arange(1, len(conf) + 1)


def _aurc_1d(confidence: np.ndarray, risk: np.ndarray) -> float:
    return float(_selective_risks_1d(confidence, risk).mean())


def _excess_aurc_1d(confidence: np.ndarray, risk: np.ndarray) -> float:
    return _aurc_1d(confidence, risk) - _aurc_1d(-risk, risk)


def mean_absolute_error(pred: ArrayLike, true: ArrayLike) -> float | torch.Tensor:
    """Mean of ``|pred - true|`` over cases.

    Args:
        pred: predicted quality, ``[N]`` or ``[N, K]`` (e.g. ``pred_dice``, in [0, 1]).
        true: true quality, same shape (e.g. ``true_dice``).

    Returns:
        ``float`` for ``[N]`` input, float64 tensor ``[K]`` for ``[N, K]``; >= 0, in the units of the inputs.
    """
    return _per_class(lambda p, t: np.mean(np.abs(p - t)), pred, true, ("pred", "true"), "MAE")


def root_mean_squared_error(pred: ArrayLike, true: ArrayLike) -> float | torch.Tensor:
    """Square root of the mean of ``(pred - true) ** 2`` over cases, >= 0.

    Shapes and returns as :func:`mean_absolute_error`.
    """
    return _per_class(lambda p, t: np.sqrt(np.mean((p - t) ** 2)), pred, true, ("pred", "true"), "RMSE")


def pearson_correlation(pred: ArrayLike, true: ArrayLike) -> float | torch.Tensor:
    """Pearson's r between predicted and true quality, in [-1, 1].

    Inputs ``[N]`` or ``[N, K]``. NaN (with a ``UserWarning``) when N < 2 or either input is constant.
    """
    return _per_class(_pearson_1d, pred, true, ("pred", "true"), "Pearson correlation")


def spearman_correlation(pred: ArrayLike, true: ArrayLike) -> float | torch.Tensor:
    """Spearman's rho (Pearson's r of the ranks, ties given their average rank), in [-1, 1].

    Inputs ``[N]`` or ``[N, K]``. NaN (with a ``UserWarning``) when N < 2 or either input is constant.
    """
    return _per_class(_spearman_1d, pred, true, ("pred", "true"), "Spearman correlation")


def r2_score(pred: ArrayLike, true: ArrayLike) -> float | torch.Tensor:
    """Coefficient of determination of ``pred`` as a predictor of ``true``: ``1 - SS_res / SS_tot``, in (-inf, 1].

    ``SS_res = sum((true - pred) ** 2)``, ``SS_tot = sum((true - mean(true)) ** 2)``; the same value as
    ``sklearn.metrics.r2_score(y_true=true, y_pred=pred)``. Note that the arguments are not symmetric. Inputs
    ``[N]`` or ``[N, K]``. NaN (with a ``UserWarning``) when N < 2 or ``true`` is constant (sklearn would return
    1.0 or 0.0 there).
    """
    return _per_class(_r2_1d, pred, true, ("pred", "true"), "R2")


def failure_auroc(confidence: ArrayLike, true_dice: ArrayLike, tau: float = FAILURE_DICE) -> float | torch.Tensor:
    """Area under the ROC curve for detecting failed segmentations from a confidence score, in [0, 1].

    A case is a failure when ``true_dice < tau``; a lower ``confidence`` should mean failure, so the
    detection score is ``-confidence``. Equals ``sklearn.metrics.roc_auc_score(true_dice < tau,
    -confidence)``: the probability that a random failure has lower confidence than a random non-failure, ties
    counting one half. 0.5 is chance.

    Args:
        confidence: ``[N]`` or ``[N, K]``, any real scale (e.g. ``pred_dice``).
        true_dice: same shape, the true Dice in [0, 1].
        tau: the failure Dice τ on ``true_dice`` (strictly below is a failure).

    Returns:
        ``float`` or float64 tensor ``[K]``; NaN (with a ``UserWarning``) when N < 2 or all cases are failures,
        or none is.
    """
    kernel = partial(_auroc_1d, tau=float(tau))
    return _per_class(kernel, confidence, true_dice, ("confidence", "true_dice"), "failure AUROC")


def risk_coverage_curve(confidence: ArrayLike, risk: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Selective risk against the fraction of cases accepted, most confident first (the risk-coverage curve).

    Cases are sorted by confidence, descending; at the accepted fraction k/N the selective risk is the mean risk of
    the k most confident cases. Tied confidences share their risk (see the module docstring), so the curve does not
    depend on the input order.

    Args:
        confidence: ``[N]`` or ``[N, K]``, higher means more likely to be correct.
        risk: same shape, e.g. ``1 - dice`` in [0, 1].

    Returns:
        ``(fraction_accepted, selective_risk)`` as float64 numpy arrays: fraction_accepted ``[N]`` = (1..N) / N;
        selective risk ``[N]`` (``[N, K]`` for ``[N, K]`` input), in the units of ``risk``.
    """
    conf2, risk2, single = _as_2d(confidence, risk, ("confidence", "risk"))
    n = conf2.shape[0]
    curves = np.stack([_selective_risks_1d(conf2[:, k], risk2[:, k]) for k in range(conf2.shape[1])], axis=1)
    return np.arange(1, n + 1) / n, curves[:, 0] if single else curves


def aurc(confidence: ArrayLike, risk: ArrayLike) -> float | torch.Tensor:
    """Area under the risk-coverage curve: the mean selective risk over the accepted fractions k/N, k = 1..N. Lower is
    better.

    For segmentation use ``risk = 1 - dice`` (Zenk et al. 2024); then AURC is in [0, 1].

    Args:
        confidence: ``[N]`` or ``[N, K]``.
        risk: same shape.

    Returns:
        ``float`` or float64 tensor ``[K]``.
    """
    return _per_class(_aurc_1d, confidence, risk, ("confidence", "risk"), "AURC")


def excess_aurc(confidence: ArrayLike, risk: ArrayLike) -> float | torch.Tensor:
    """AURC minus the AURC of the optimal ranking (``confidence = -risk``); >= 0, and 0 for an optimal ranking.

    Shapes and returns as :func:`aurc`.
    """
    return _per_class(_excess_aurc_1d, confidence, risk, ("confidence", "risk"), "e-AURC")
