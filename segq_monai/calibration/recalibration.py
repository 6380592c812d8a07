"""Recalibration of predicted Dice to a new site, and split-conformal intervals for each case's Dice.

With ``n`` labelled cases of the target site (a *calibration split* that neither stage was trained on), each
with the head's raw predicted Dice ``x_i`` and the true Dice ``y_i`` (both in [0, 1], one foreground class):

1. The cases are split once, by a seeded random permutation that does not look at the values, into a *fit*
   part (``floor(fit_fraction * n)`` cases) and a *score* part (the rest).
2. **The recalibration map** ``g`` is chosen on the fit part among three candidates (:data:`MAPS`), by their
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
3. **Split-conformal interval**, on the ``m`` score cases, of one of two kinds:

   * ``absolute``: scores ``s_j = |y_j - g(x_j)|``, ``q`` the ``k``-th smallest, ``k = ceil((m + 1) coverage)``;
     a new case gets ``[max(0, g(x) - q), min(1, g(x) + q)]``: one half-width for every case;
   * ``normalised``: with the head's own spread ``sd`` of each case (``pred_dice_sd``, the standard deviation of
     its MC-dropout passes, Dice units), scores ``s_j = |y_j - g(x_j)| / max(sd_j, eps)`` (``eps =``
     :data:`SD_FLOOR`), ``q_n`` their ``k``-th smallest, and the interval ``g(x) -/+ q_n max(sd, eps)``, clipped to
     [0, 1]: narrow where the head's passes agree, wide where they do not, at the same promised coverage.

   Normalised when every calibration case has a spread, it varies (its standard deviation over the score cases
   at least :data:`MIN_SD_SPREAD` of its mean; a constant spread only rescales the absolute interval) and, where the
   fit part is large enough for the map choice (else absolute, as before), the fit part's out-of-fold residuals
   give a narrower mean interval normalised than absolute (the map's own error does not scale with the spread, and can make the normalised one
   wider); otherwise absolute. The kind is chosen on the fit part alone, so the promise below holds for it. Both
   ``q`` are kept, so a new case without a spread still gets the absolute interval.

Promise. If the calibration cases and a new case are exchangeable (e.g. i.i.d. from one site), the new case's true
Dice lies in its interval with probability at least ``coverage``, the probability taken over the calibration
split and the new case together (marginal coverage; not conditional on the case, and not for any one batch), for
either kind. Without ties among the scores it is also at most ``coverage + 1 / (m + 1)``. The fit part (where
``g`` is fitted and chosen) is kept apart from the scored part because residuals on the cases ``g`` was fitted to
are smaller than on new ones; that is what makes the scores of the score part exchangeable with a new case's.
``k <= m`` needs ``m >= 1/(1 - coverage) - 1`` score cases (:func:`minimum_calibration_size`); fewer is refused, since the
only valid interval would be [0, 1].
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "DEFAULT_FOLDS",
    "INTERVAL_KINDS",
    "MAPS",
    "MIN_SD_SPREAD",
    "SD_FLOOR",
    "DiceRecalibration",
    "apply_map",
    "calibrate_dice",
    "conformal_quantile",
    "cross_validated_mae",
    "cv_folds",
    "fit_map",
    "isotonic_regression",
    "min_interval_cases",
    "minimum_calibration_size",
    "recalibrate",
    "split_calibration",
]

#: the candidate recalibration maps, simplest first (the first of equal cross-validated MAEs wins)
MAPS = ("identity", "linear", "isotonic")
#: folds of the cross-validation that chooses the map
DEFAULT_FOLDS = 5
#: the kinds of conformal interval
INTERVAL_KINDS = ("absolute", "normalised")
#: floor of the head's spread in a normalised score, Dice units: ``|y - g| / max(sd, SD_FLOOR)``
SD_FLOOR = 1e-3
#: the spread must vary at least this much (standard deviation / mean over the score cases) for normalised intervals
MIN_SD_SPREAD = 0.05


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


def minimum_calibration_size(coverage: float) -> int:
    """Fewest conformal scores ``m`` for an interval at ``coverage``: ``ceil(1/(1 - coverage) - 1)`` (9 for 0.9)."""
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage (of the interval) must be in (0, 1), got {coverage}.")
    return max(1, math.ceil(1.0 / (1.0 - coverage) - 1.0 - 1e-9))


def min_interval_cases(coverage: float, fit_fraction: float = 0.5) -> int:
    """Fewest calibration cases ``n`` for an interval at ``coverage`` when :func:`split_calibration` keeps
    ``floor(fit_fraction * n)`` of them to fit ``g``: at least one fit case and :func:`minimum_calibration_size`
    scored ones (17 for coverage 0.9 and fit_fraction 0.5)."""
    if not 0.0 < fit_fraction < 1.0:
        raise ValueError(f"fit_fraction must be in (0, 1), got {fit_fraction}.")
    m = minimum_calibration_size(coverage)
    n = m + 1
    while math.floor(fit_fraction * n) < 1 or n - math.floor(fit_fraction * n) < m:
        n += 1
    return n


def conformal_quantile(scores: Any, coverage: float) -> float:
    """The split-conformal quantile: the ``ceil((m + 1) coverage)``-th smallest of ``m`` scores.

    Raises ``ValueError`` naming the minimum when ``m < 1/(1 - coverage) - 1`` (the rank would exceed ``m``).
    """
    s = _vector(scores, "scores")
    m, minimum = s.size, minimum_calibration_size(coverage)
    k = math.ceil((m + 1) * coverage - 1e-9)  # tolerance: (m + 1) coverage may round just above an integer
    if m < minimum or k > m:
        raise ValueError(
            f"an interval at coverage {coverage:g} needs at least {minimum} scored calibration cases "
            f"(1/(1 - coverage) - 1); got {m}. Label more cases of the calibration split, or ask for a "
            "lower coverage."
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


def fit_map(name: str, x: Any, y: Any) -> dict[str, tuple[float, ...]]:
    """Fit the recalibration map ``name`` (one of :data:`MAPS`) of ``y`` on ``x`` (both ``[N]``, Dice units).

    Returns its parameters for :func:`apply_map`: ``{}`` for identity, ``{"coef": (slope, intercept)}`` for linear
    (``numpy.polyfit`` degree 1, under slope >= 0 like the isotonic map: slope 0 and the mean of ``y`` when the
    least-squares slope is negative or ``x`` holds one value), ``{"knots_x", "knots_y"}``
    for isotonic (:func:`isotonic_regression`).
    """
    xs, ys = _vector(x, "x"), _vector(y, "y")
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
    return {name: float(_out_of_fold_errors(x, y, folds, name).mean()) for name in maps}


def _out_of_fold_errors(x: Any, y: Any, folds: Any, name: str) -> np.ndarray:
    """``[N]`` ``|y - g(x)|`` of each case under the map ``name`` fitted on the other folds."""
    xs, ys, fs = _vector(x, "x"), _vector(y, "y"), np.asarray(folds)
    if len(np.unique(fs)) < 2:
        raise ValueError("cross-validation needs at least two folds.")
    errors = np.empty_like(xs)
    for f in np.unique(fs):
        held = fs == f
        errors[held] = np.abs(ys[held] - apply_map(name, xs[held], fit_map(name, xs[~held], ys[~held])))
    return errors


def _spread(sd: Any, n: int) -> np.ndarray:
    a = _vector(sd, "pred_sd")
    if a.shape != (n,) or np.any(a < 0):
        raise ValueError(f"pred_sd must be [{n}] non-negative spreads (Dice units), got shape {a.shape}.")
    return np.maximum(a, SD_FLOOR)


@dataclass(frozen=True)
class DiceRecalibration:
    """The recalibration ``g`` of one class's predicted Dice with its conformal half-widths.

    Attributes:
        knots_x: ``[K]`` raw predicted Dice values of the fit part, increasing (isotonic map; else empty).
        knots_y: ``[K]`` ``g`` at those values (non-decreasing, in [0, 1]); linear in between, slope 1 outside
            (the offset of the nearest end kept; see the module docstring).
        half_width: ``q``, the conformal quantile of ``|true - g(raw)|`` (Dice units): the absolute interval is
            ``[g - q, g + q]`` clipped to [0, 1].
        coverage: the promised coverage of the interval, in (0, 1).
        n_fit: cases ``g`` was fitted on. n_score: cases ``q`` was computed on.
        fallback: True when the fit part's predictions were all equal and ``g`` is their mean true Dice, for every
            case.
        map: which of :data:`MAPS` ``g`` is (files without it were isotonic).
        coef: ``(slope, intercept)`` of the linear map (else empty).
        cv_mae: the cross-validated MAE of each candidate map (Dice units); None when no choice was made.
        half_width_normalised: ``q_n``, the conformal quantile of ``|true - g(raw)| / max(sd, sd_floor)`` (units of
            the head's spread); None without spreads.
        interval_kind: the kind of interval, one of :data:`INTERVAL_KINDS` (the file's ``"interval"``).
        sd_floor: ``eps`` of the normalised scores, Dice units.
    """

    knots_x: tuple[float, ...]
    knots_y: tuple[float, ...]
    half_width: float
    coverage: float
    n_fit: int
    n_score: int
    fallback: bool
    map: str = "isotonic"
    coef: tuple[float, ...] = ()
    cv_mae: dict[str, float] | None = None
    half_width_normalised: float | None = None
    interval_kind: str = "absolute"
    sd_floor: float = SD_FLOOR

    def predict(self, raw: Any) -> np.ndarray:
        """Recalibrated Dice ``g(raw)``: float64 of the shape of ``raw`` (any shape), in [0, 1]."""
        return apply_map(self.map, raw, {"knots_x": self.knots_x, "knots_y": self.knots_y, "coef": self.coef})

    def interval(self, raw: Any, sd: Any | None = None, kind: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` of the interval ``kind`` (default: :attr:`interval_kind`, absolute when ``sd`` is None),
        each of the shape of ``raw``: ``g(raw) -/+ q`` or ``g(raw) -/+ q_n max(sd, sd_floor)`` (``sd``: the case's
        ``pred_dice_sd``, broadcast with ``raw``), clipped to [0, 1]."""
        kind = (self.interval_kind if sd is not None else "absolute") if kind is None else kind
        g = self.predict(raw)
        if kind == "absolute":
            half = self.half_width
        elif kind == "normalised":
            if sd is None or self.half_width_normalised is None:
                raise ValueError(
                    "a normalised interval needs the case's pred_dice_sd and a calibration made with it; run the head "
                    "with num_samples > 1 (quality_num_samples) for both, or ask for the absolute interval."
                )
            half = self.half_width_normalised * np.maximum(np.asarray(sd, np.float64), self.sd_floor)
        else:
            raise ValueError(f"interval kind must be one of {INTERVAL_KINDS}, got {kind!r}.")
        return np.clip(g - half, 0.0, 1.0), np.clip(g + half, 0.0, 1.0)


def calibrate_dice(
    pred_dice: Any,
    true_dice: Any,
    coverage: float = 0.9,
    fit_fraction: float = 0.5,
    seed: int = 0,
    split: tuple[Sequence[int], Sequence[int]] | None = None,
    what: str = "predicted Dice",
    pred_sd: Any | None = None,
    groups: Sequence[Hashable] | None = None,
    maps: Sequence[str] = MAPS,
    n_folds: int = DEFAULT_FOLDS,
) -> DiceRecalibration:
    """Choose and fit the recalibration on the fit part, and the conformal half-widths on the score part.

    Args:
        pred_dice: ``[N]`` raw predicted Dice of the calibration cases (one class), finite.
        true_dice: ``[N]`` their true Dice, in [0, 1].
        coverage: promised coverage of the interval, in (0, 1) (see the module docstring).
        fit_fraction: share of the cases the recalibration is chosen and fitted on; the rest give the scores.
        seed: seed of :func:`split_calibration` and of :func:`cv_folds`.
        split: ``(fit indices, score indices)`` to use instead (e.g. one split shared by several classes).
        what: names the quantity in warnings and errors.
        pred_sd: ``[N]`` the head's spread of each case (``pred_dice_sd``, Dice units, >= 0) for normalised
            intervals; None: absolute intervals only.
        groups: ``[N]`` a group label per case (e.g. the slice that artifact copies were made of); a group stays in
            one fold of the cross-validation. None: every case its own group.
        maps: the candidate maps, from :data:`MAPS`; ``("isotonic",)`` fits isotonic without a choice.
        n_folds: folds of the cross-validation (:data:`DEFAULT_FOLDS`); with fewer than ``2 n_folds`` fit groups no
            choice is made (isotonic, if a candidate).

    Returns:
        :class:`DiceRecalibration`. A constant prediction on the fit part falls back to the fit part's mean true
        Dice (linear or isotonic map), with a ``UserWarning``; the interval around it keeps its coverage.
    """
    x, y = _vector(pred_dice, "pred_dice"), _vector(true_dice, "true_dice")
    if x.shape != y.shape:
        raise ValueError(f"pred_dice and true_dice must have one value per case, got {x.shape} and {y.shape}.")
    sd = None if pred_sd is None else _spread(pred_sd, len(x))
    maps = tuple(maps)
    if not maps or any(m not in MAPS for m in maps):
        raise ValueError(f"maps must be a non-empty selection of {MAPS}, got {maps}.")
    fit, score = split_calibration(len(x), fit_fraction, seed) if split is None else (np.asarray(i) for i in split)
    if len(fit) == 0:
        raise ValueError(f"{what}: no calibration case is left to fit the recalibration on; label more cases.")
    fit_groups = None if groups is None else [list(groups)[i] for i in fit]
    if groups is not None and len(groups) != len(x):
        raise ValueError(f"{what}: groups has {len(groups)} labels for {len(x)} calibration cases.")
    n_groups = len(fit) if fit_groups is None else len(set(fit_groups))
    cv_mae = None
    chosen = "isotonic" if "isotonic" in maps else maps[0]
    folds = cv_folds(len(fit), fit_groups, n_folds, seed) if n_groups >= 2 * n_folds else None
    if len(maps) > 1 and folds is not None:
        cv_mae = cross_validated_mae(x[fit], y[fit], folds, maps)
        chosen = min(maps, key=lambda m: (cv_mae[m], maps.index(m)))
    params = {k: tuple(v) for k, v in fit_map(chosen, x[fit], y[fit]).items()}
    g = DiceRecalibration(params.get("knots_x", ()), params.get("knots_y", ()), 0.0, float(coverage), len(fit),
                          len(score), False, chosen, params.get("coef", ()))  # fmt: skip
    try:
        residuals = np.abs(y[score] - g.predict(x[score]))
        half_width = conformal_quantile(residuals, coverage)
        normalised = None if sd is None else conformal_quantile(residuals / sd[score], coverage)
    except ValueError as e:
        raise ValueError(f"{what}: {e} ({len(x)} calibration cases, {len(fit)} of them to fit, fit_fraction "
                         f"{fit_fraction:g})") from e  # fmt: skip
    varies = sd is not None and float(np.std(sd[score])) >= MIN_SD_SPREAD * float(np.mean(sd[score]))
    varies = varies and folds is not None  # too few fit cases to tell which kind is narrower: absolute, as before
    if varies:  # the kind whose out-of-fold interval on the fit part is the narrower
        errors = _out_of_fold_errors(x[fit], y[fit], folds, chosen)
        level = min(1.0, math.ceil((len(fit) + 1) * coverage) / len(fit))
        width_absolute = float(np.quantile(errors, level, method="inverted_cdf"))
        width_normalised = float(np.quantile(errors / sd[fit], level, method="inverted_cdf") * np.mean(sd[fit]))
        varies = width_normalised < width_absolute
    fallback = chosen != "identity" and np.ptp(x[fit]) == 0
    if fallback:
        warnings.warn(
            f"{what}: the {len(fit)} fit cases all have the predicted Dice {x[fit][0]:.4g}; the recalibration falls "
            f"back to their mean true Dice {float(np.mean(y[fit])):.4g} for every case (the interval ±{half_width:.3g} "
            f"keeps its coverage {coverage:g}, but it no longer tells cases apart).",
            UserWarning,
            stacklevel=2,
        )
    return DiceRecalibration(
        knots_x=g.knots_x,
        knots_y=g.knots_y,
        half_width=half_width,
        coverage=float(coverage),
        n_fit=len(fit),
        n_score=len(score),
        fallback=bool(fallback),
        map=chosen,
        coef=g.coef,
        cv_mae=cv_mae,
        half_width_normalised=normalised,
        interval_kind="normalised" if varies else "absolute",
    )
