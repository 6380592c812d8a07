"""The recalibration maps ``g`` of predicted Dice, and their choice by cross-validation
(:mod:`segq_monai.calibration.recalibration` fits them on the fit part of a calibration split).

With the head's raw predicted Dice ``x`` and the true Dice ``y`` (both ``[N]``, in [0, 1], one foreground class)
of the fit cases, the recalibration map ``g`` is chosen among three candidates (:data:`MAPS`), by their
cross-validated mean absolute error (:func:`cross_validated_mae`: K-fold over the fit cases, ``K =``
:data:`DEFAULT_FOLDS`, a group of cases, e.g. the artifact copies of one slice, kept in one fold), the
simplest winning ties, then refitted on the whole fit part:

* ``identity``: ``g(x) = x``, the head as it is;
* ``linear``: the least-squares line under slope >= 0 (``numpy.polyfit`` degree 1; the fit part's mean when the slope
  is negative or its predictions are all equal), clipped to [0, 1];
* ``isotonic``: the non-decreasing map fitted by least squares (pool-adjacent-violators,
  :func:`isotonic_regression`), clipped to [0, 1]; between fitted points ``g`` is linear. Outside the fitted
  range it keeps the offset of the nearest end, ``g(x) = g(x_1) + (x - x_1)`` below the lowest fitted prediction
  ``x_1`` (likewise above the highest), clipped to [0, 1]: the head's own slope, not a flat line, so a case
  predicted worse than every fit case stays worse than all of them (a flat tail would lift a raw 0.13 below a
  lowest knot at 0.5 to that knot's value). It keeps the head's order of cases and corrects its level.

Identity is always a candidate, so a recalibration never makes the predicted Dice worse than the raw one by more
than the noise of the cross-validation. With fewer than ``2 K`` fit cases (groups) no choice is made: isotonic,
as before the choice existed (and as every calibration file without a recorded map was made).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "DEFAULT_FOLDS",
    "MAPS",
    "apply_map",
    "case_vector",
    "cross_validated_mae",
    "cv_folds",
    "fit_map",
    "isotonic_regression",
    "out_of_fold_errors",
    "recalibrate",
]

#: the candidate recalibration maps, simplest first (the first of equal cross-validated MAEs wins)
MAPS = ("identity", "linear", "isotonic")
#: folds of the cross-validation that chooses the map
DEFAULT_FOLDS = 5


def case_vector(x: Any, name: str) -> np.ndarray:
    """``x`` as a float64 ``[N]`` array (one value per case); ``ValueError`` naming ``name`` unless 1-D and finite."""
    a = x.detach().cpu().to(torch.float64).numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float64)
    if a.ndim != 1:
        raise ValueError(f"`{name}` must be [N] (one value per case), got shape {a.shape}.")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"`{name}` contains NaN or infinite values; drop those calibration cases first.")
    return a


def isotonic_regression(x: Any, y: Any, weights: Any | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares non-decreasing fit of ``y`` on ``x`` (pool-adjacent-violators), clipped to [0, 1].

    Cases with equal ``x`` are first pooled (weighted mean of their ``y``). The fit minimises
    ``sum_i w_i (y_i - f(x_i))^2`` over non-decreasing ``f``; clipping the unconstrained solution to [0, 1] gives
    the solution constrained to [0, 1]. It equals scikit-learn's ``IsotonicRegression(y_min=0, y_max=1)``.

    Args:
        x: ``[N]`` predictions (e.g. raw predicted Dice), finite.
        y: ``[N]`` targets (e.g. true Dice in [0, 1]), finite.
        weights: ``[N]`` positive case weights; default 1.

    Returns:
        ``(knots_x, knots_y)``: the distinct values of ``x`` in increasing order ``[K]`` and the fitted value at
        each ``[K]`` (non-decreasing, in [0, 1]). Evaluate with :func:`recalibrate`.
    """
    xs, ys = case_vector(x, "x"), case_vector(y, "y")
    ws = np.ones_like(xs) if weights is None else case_vector(weights, "weights")
    if not (xs.shape == ys.shape == ws.shape) or xs.size == 0:
        raise ValueError(
            f"x, y and weights must be non-empty and of one length, got {xs.shape}, {ys.shape}, {ws.shape}."
        )
    if np.any(ws <= 0):
        raise ValueError("weights must be positive.")
    knots_x, inverse = np.unique(xs, return_inverse=True)
    w = np.bincount(inverse, weights=ws)
    v = np.bincount(inverse, weights=ws * ys) / w
    # pool adjacent violators: a stack of blocks (mean, weight, count), merged while out of order
    means: list[float] = []
    block_w: list[float] = []
    counts: list[int] = []
    for value, weight in zip(v.tolist(), w.tolist()):
        means.append(value)
        block_w.append(weight)
        counts.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            wt = block_w[-2] + block_w[-1]
            means[-2] = (means[-2] * block_w[-2] + means[-1] * block_w[-1]) / wt
            block_w[-2] = wt
            counts[-2] += counts[-1]
            del means[-1], block_w[-1], counts[-1]
    return knots_x, np.clip(np.repeat(means, counts), 0.0, 1.0)


def recalibrate(raw: Any, knots_x: Sequence[float], knots_y: Sequence[float]) -> np.ndarray:
    """Evaluate an isotonic fit (:func:`isotonic_regression`'s knots) at ``raw`` (any shape): linear between the
    knots, slope 1 beyond the end knots (``knots_y[0] + raw - knots_x[0]`` below the first), clipped to [0, 1];
    float64 of the shape of ``raw``. A single knot (constant predictions: the fallback of
    :func:`~segq_monai.calibration.recalibration.calibrate_dice`)
    gives its value everywhere."""
    x = np.asarray(raw, np.float64)
    kx, ky = np.asarray(knots_x, np.float64), np.asarray(knots_y, np.float64)
    if kx.size == 1:
        return np.full_like(x, float(np.clip(ky[0], 0.0, 1.0)))
    inside = np.interp(x, kx, ky)
    tails = np.where(x < kx[0], ky[0] + x - kx[0], ky[-1] + x - kx[-1])
    return np.clip(np.where((x < kx[0]) | (x > kx[-1]), tails, inside), 0.0, 1.0)


def fit_map(name: str, x: Any, y: Any) -> dict[str, tuple[float, ...]]:
    """Fit the recalibration map ``name`` (one of :data:`MAPS`) of ``y`` on ``x`` (both ``[N]``, Dice units).

    Returns its parameters for :func:`apply_map`: ``{}`` for identity, ``{"coef": (slope, intercept)}`` for linear
    (``numpy.polyfit`` degree 1, under slope >= 0 like the isotonic map: slope 0 and the mean of ``y`` when the
    least-squares slope is negative or ``x`` holds one value), ``{"knots_x", "knots_y"}``
    for isotonic (:func:`isotonic_regression`).
    """
    xs, ys = case_vector(x, "x"), case_vector(y, "y")
    if name == "identity":
        return {}
    if name == "linear":
        if xs.size == 0:
            raise ValueError("a linear recalibration needs at least one case.")
        slope, intercept = np.polyfit(xs, ys, 1) if np.ptp(xs) > 0 else (0.0, 0.0)
        if slope <= 0:  # least squares under slope >= 0: a recalibration never turns the head's order round
            return {"coef": (0.0, float(np.mean(ys)))}
        return {"coef": (float(slope), float(intercept))}
    if name == "isotonic":
        knots_x, knots_y = isotonic_regression(xs, ys)
        return {"knots_x": tuple(float(v) for v in knots_x), "knots_y": tuple(float(v) for v in knots_y)}
    raise ValueError(f"recalibration map must be one of {MAPS}, got {name!r}.")


def apply_map(name: str, raw: Any, params: Mapping[str, Sequence[float]]) -> np.ndarray:
    """Evaluate the map ``name`` with :func:`fit_map`'s ``params`` at ``raw`` (any shape): float64 in [0, 1]."""
    x = np.asarray(raw, np.float64)
    if name == "identity":
        return np.clip(x, 0.0, 1.0)
    if name == "linear":
        slope, intercept = params["coef"]
        return np.clip(slope * x + intercept, 0.0, 1.0)
    if name == "isotonic":
        return recalibrate(x, params["knots_x"], params["knots_y"])
    raise ValueError(f"recalibration map must be one of {MAPS}, got {name!r}.")


def cv_folds(n: int, groups: Sequence[Hashable] | None = None, n_folds: int = DEFAULT_FOLDS, seed: int = 0) -> np.ndarray:
    """The fold of each of ``n`` cases, ``[n]`` int in ``[0, k)``, ``k = min(n_folds, number of groups)``.

    The groups (default: each case its own) in order of first appearance are put in a random order by
    ``numpy.random.default_rng(seed).permutation`` (it does not look at the values) and cut into ``k`` contiguous
    runs as scikit-learn's unshuffled ``KFold`` cuts ``k`` folds (the first ``G mod k`` runs one group longer), so
    the cases of one group share a fold.
    """
    labels = list(range(n)) if groups is None else list(groups)
    if len(labels) != n:
        raise ValueError(f"groups must give one group per case: {len(labels)} groups for {n} cases.")
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}.")
    codes: dict[Hashable, int] = {}
    case_group = np.array([codes.setdefault(g, len(codes)) for g in labels], np.int64)
    n_groups = len(codes)
    k = min(n_folds, n_groups)
    position = np.empty(n_groups, np.int64)
    position[np.random.default_rng(seed).permutation(n_groups)] = np.arange(n_groups)
    sizes = np.full(k, n_groups // k) + (np.arange(k) < n_groups % k)
    fold_of_position = np.repeat(np.arange(k), sizes)
    return fold_of_position[position[case_group]]


def cross_validated_mae(
    x: Any, y: Any, folds: Any, maps: Sequence[str] = MAPS
) -> dict[str, float]:
    """Out-of-fold mean absolute error of each map in ``maps``: each fold predicted by the map fitted on the other
    folds (:func:`fit_map`, :func:`apply_map`), ``|y - g(x)|`` averaged over all cases. ``x``, ``y``, ``folds``:
    ``[N]`` (``folds`` from :func:`cv_folds`, at least two distinct). Dice units."""
    return {name: float(out_of_fold_errors(x, y, folds, name).mean()) for name in maps}


def out_of_fold_errors(x: Any, y: Any, folds: Any, name: str) -> np.ndarray:
    """``[N]`` ``|y - g(x)|`` of each case under the map ``name`` fitted on the other folds."""
    xs, ys, fs = case_vector(x, "x"), case_vector(y, "y"), np.asarray(folds)
    if len(np.unique(fs)) < 2:
        raise ValueError("cross-validation needs at least two folds.")
    errors = np.empty_like(xs)
    for f in np.unique(fs):
        held = fs == f
        errors[held] = np.abs(ys[held] - apply_map(name, xs[held], fit_map(name, xs[~held], ys[~held])))
    return errors
