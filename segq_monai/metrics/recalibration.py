"""Recalibration of predicted Dice to a new site, and split-conformal intervals for each case's Dice.

With ``n`` labelled cases of the target site (a *calibration split* that neither stage was trained on), each
with the head's raw predicted Dice ``x_i`` and the true Dice ``y_i`` (both in [0, 1], one foreground class):

1. The cases are split once, by a seeded random permutation that does not look at the values, into a *fit*
   part (``floor(fit_fraction * n)`` cases) and a *score* part (the rest).
2. **Isotonic recalibration** ``g``: the non-decreasing map fitted by least squares on the fit part
   (pool-adjacent-violators, :func:`isotonic_regression`), clipped to [0, 1]; between fitted points ``g`` is
   linear. Outside the fitted range it keeps the offset of the nearest end, ``g(x) = g(x_1) + (x - x_1)`` below
   the lowest fitted prediction ``x_1`` (likewise above the highest), clipped to [0, 1]: the head's own slope,
   not a flat line, so a case predicted worse than every fit case stays worse than all of them (a flat tail
   would lift a raw 0.13 below a lowest knot at 0.5 to that knot's value). It keeps the head's order of cases
   and corrects its level (e.g. a head that under-predicts by 0.14 at a new site).
3. **Split-conformal interval**: with the absolute residuals ``s_j = |y_j - g(x_j)|`` of the ``m`` score cases,
   ``q`` is the ``k``-th smallest, ``k = ceil((m + 1)(1 - alpha))``; a new case gets
   ``[max(0, g(x) - q), min(1, g(x) + q)]``.

Promise. If the calibration cases and a new case are exchangeable (e.g. i.i.d. from one site), the new case's true
Dice lies in its interval with probability at least ``1 - alpha``, the probability taken over the calibration
split and the new case together (marginal coverage; not conditional on the case, and not for any one batch).
Without ties among the scores it is also at most ``1 - alpha + 1 / (m + 1)``. The fit part is kept apart from
the scored part because residuals on the cases ``g`` was fitted to are smaller than on new ones; that is what
makes the scores of the score part exchangeable with a new case's. ``k <= m`` needs
``m >= 1/alpha - 1`` score cases (:func:`minimum_calibration_size`); fewer is refused, since the only valid
interval would be [0, 1].

Why absolute residuals and not normalised ones: a normalised score ``|y - g(x)| / sigma(x)`` needs a per-case
spread ``sigma`` that is itself calibrated; the head has none yet (issue #12 item 3 may give it one), and a
poor ``sigma`` widens the intervals where it matters. Absolute residuals give one half-width per class: easy to
read, valid whatever ``g`` is.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "DiceRecalibration",
    "calibrate_dice",
    "conformal_quantile",
    "isotonic_regression",
    "min_interval_cases",
    "minimum_calibration_size",
    "recalibrate",
    "split_calibration",
]


def _vector(x: Any, name: str) -> np.ndarray:
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
    xs, ys = _vector(x, "x"), _vector(y, "y")
    ws = np.ones_like(xs) if weights is None else _vector(weights, "weights")
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
    float64 of the shape of ``raw``. A single knot (constant predictions: the fallback of :func:`calibrate_dice`)
    gives its value everywhere."""
    x = np.asarray(raw, np.float64)
    kx, ky = np.asarray(knots_x, np.float64), np.asarray(knots_y, np.float64)
    if kx.size == 1:
        return np.full_like(x, float(np.clip(ky[0], 0.0, 1.0)))
    inside = np.interp(x, kx, ky)
    tails = np.where(x < kx[0], ky[0] + x - kx[0], ky[-1] + x - kx[-1])
    return np.clip(np.where((x < kx[0]) | (x > kx[-1]), tails, inside), 0.0, 1.0)


def minimum_calibration_size(alpha: float) -> int:
    """Fewest conformal scores ``m`` for an interval at coverage ``1 - alpha``: ``ceil(1/alpha - 1)`` (9 for 0.1)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha (the miscoverage of the interval) must be in (0, 1), got {alpha}.")
    return max(1, math.ceil(1.0 / alpha - 1.0 - 1e-9))


def min_interval_cases(coverage: float, fit_fraction: float = 0.5) -> int:
    """Fewest calibration cases ``n`` for an interval at ``coverage`` when :func:`split_calibration` keeps
    ``floor(fit_fraction * n)`` of them to fit ``g``: at least one fit case and :func:`minimum_calibration_size`
    scored ones (17 for coverage 0.9 and fit_fraction 0.5)."""
    if not 0.0 < fit_fraction < 1.0:
        raise ValueError(f"fit_fraction must be in (0, 1), got {fit_fraction}.")
    m = minimum_calibration_size(1.0 - coverage)
    n = m + 1
    while math.floor(fit_fraction * n) < 1 or n - math.floor(fit_fraction * n) < m:
        n += 1
    return n


def conformal_quantile(scores: Any, alpha: float) -> float:
    """The split-conformal quantile: the ``ceil((m + 1)(1 - alpha))``-th smallest of ``m`` scores.

    Raises ``ValueError`` naming the minimum when ``m < 1/alpha - 1`` (the rank would exceed ``m``).
    """
    s = _vector(scores, "scores")
    m, minimum = s.size, minimum_calibration_size(alpha)
    k = math.ceil((m + 1) * (1.0 - alpha) - 1e-9)  # tolerance: (m + 1)(1 - alpha) may round just above an integer
    if m < minimum or k > m:
        raise ValueError(
            f"an interval at coverage {1 - alpha:g} needs at least {minimum} scored calibration cases "
            f"(1/alpha - 1 for alpha = {alpha:g}); got {m}. Label more cases of the calibration split, or ask for a "
            "lower coverage (a larger alpha)."
        )
    return float(np.sort(s)[k - 1])


def split_calibration(n: int, fit_fraction: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the fit part (``floor(fit_fraction * n)`` cases) and of the score part (the rest), ``[n_fit]`` and
    ``[n - n_fit]``, from a permutation seeded by ``seed`` alone (it does not look at the data)."""
    if not 0.0 < fit_fraction < 1.0:
        raise ValueError(f"fit_fraction must be in (0, 1), got {fit_fraction}.")
    order = np.random.default_rng(seed).permutation(n)
    n_fit = int(math.floor(fit_fraction * n))
    return np.sort(order[:n_fit]), np.sort(order[n_fit:])


@dataclass(frozen=True)
class DiceRecalibration:
    """An isotonic recalibration ``g`` of one class's predicted Dice with its conformal half-width.

    Attributes:
        knots_x: ``[K]`` raw predicted Dice values of the fit part, increasing.
        knots_y: ``[K]`` ``g`` at those values (non-decreasing, in [0, 1]); linear in between, slope 1 outside
            (the offset of the nearest end kept; see the module docstring).
        half_width: ``q``, the conformal quantile of ``|true - g(raw)|`` (Dice units); the interval is
            ``[g - q, g + q]`` clipped to [0, 1].
        alpha: the miscoverage; the promised coverage is ``1 - alpha``.
        n_fit: cases ``g`` was fitted on. n_score: cases ``q`` was computed on.
        fallback: True when the fit part's predictions were all equal: ``g`` is then the mean true Dice of the
            fit part, for every case.
    """

    knots_x: tuple[float, ...]
    knots_y: tuple[float, ...]
    half_width: float
    alpha: float
    n_fit: int
    n_score: int
    fallback: bool

    def predict(self, raw: Any) -> np.ndarray:
        """Recalibrated Dice ``g(raw)``: float64 of the shape of ``raw`` (any shape), in [0, 1]."""
        return recalibrate(raw, self.knots_x, self.knots_y)

    def interval(self, raw: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)``: ``g(raw) -/+ half_width`` clipped to [0, 1], each of the shape of ``raw``."""
        g = self.predict(raw)
        return np.clip(g - self.half_width, 0.0, 1.0), np.clip(g + self.half_width, 0.0, 1.0)


def calibrate_dice(
    pred_dice: Any,
    true_dice: Any,
    alpha: float = 0.1,
    fit_fraction: float = 0.5,
    seed: int = 0,
    split: tuple[Sequence[int], Sequence[int]] | None = None,
    what: str = "predicted Dice",
) -> DiceRecalibration:
    """Fit the isotonic recalibration on the fit part and the conformal half-width on the score part.

    Args:
        pred_dice: ``[N]`` raw predicted Dice of the calibration cases (one class), finite.
        true_dice: ``[N]`` their true Dice, in [0, 1].
        alpha: miscoverage of the interval, in (0, 1): coverage ``1 - alpha`` (see the module docstring).
        fit_fraction: share of the cases the recalibration is fitted on; the rest give the conformal scores.
        seed: seed of :func:`split_calibration`.
        split: ``(fit indices, score indices)`` to use instead (e.g. one split shared by several classes).
        what: names the quantity in warnings and errors.

    Returns:
        :class:`DiceRecalibration`. A constant prediction on the fit part falls back to the fit part's mean true
        Dice, with a ``UserWarning``; the interval around it keeps its coverage.
    """
    x, y = _vector(pred_dice, "pred_dice"), _vector(true_dice, "true_dice")
    if x.shape != y.shape:
        raise ValueError(f"pred_dice and true_dice must have one value per case, got {x.shape} and {y.shape}.")
    fit, score = split_calibration(len(x), fit_fraction, seed) if split is None else (np.asarray(i) for i in split)
    if len(fit) == 0:
        raise ValueError(f"{what}: no calibration case is left to fit the recalibration on; label more cases.")
    try:
        knots_x, knots_y = isotonic_regression(x[fit], y[fit])
        half_width = conformal_quantile(np.abs(y[score] - recalibrate(x[score], knots_x, knots_y)), alpha)
    except ValueError as e:
        raise ValueError(f"{what}: {e} ({len(x)} calibration cases, {len(fit)} of them to fit, fit_fraction "
                         f"{fit_fraction:g})") from e  # fmt: skip
    fallback = len(knots_x) == 1
    if fallback:
        warnings.warn(
            f"{what}: the {len(fit)} fit cases all have the predicted Dice {knots_x[0]:.4g}; the recalibration falls "
            f"back to their mean true Dice {knots_y[0]:.4g} for every case (the interval ±{half_width:.3g} keeps "
            f"its coverage {1 - alpha:g}, but it no longer tells cases apart).",
            UserWarning,
            stacklevel=2,
        )
    return DiceRecalibration(
        knots_x=tuple(float(v) for v in knots_x),
        knots_y=tuple(float(v) for v in knots_y),
        half_width=half_width,
        alpha=float(alpha),
        n_fit=len(fit),
        n_score=len(score),
        fallback=fallback,
    )
