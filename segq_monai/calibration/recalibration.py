"""Recalibration of predicted Dice to a new site, and split-conformal intervals for each case's Dice.

With ``n`` labelled cases of the target site (a *calibration split* that neither stage was trained on), each
with the head's raw predicted Dice ``x_i`` and the true Dice ``y_i`` (both in [0, 1], one foreground class):

1. The cases are split once, by a seeded random permutation that does not look at the values, into a *fit*
   part (``floor(fit_fraction * n)`` cases) and a *score* part (the rest).
2. **The recalibration map** ``g`` is chosen on the fit part among the candidates of
   :mod:`segq_monai.calibration.maps` (identity, linear, isotonic) by their cross-validated mean absolute error, then
   refitted on the whole fit part.
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
``k <= m`` needs ``m >= 1/(1 - coverage) - 1`` score cases (:func:`min_interval_scores`); fewer is refused, since the
only valid interval would be [0, 1].
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segq_monai.calibration.maps import (
    DEFAULT_FOLDS,
    MAPS,
    apply_map,
    case_vector,
    cross_validated_mae,
    cv_folds,
    fit_map,
    out_of_fold_errors,
)

__all__ = [
    "INTERVAL_KINDS",
    "MIN_SD_SPREAD",
    "SD_FLOOR",
    "DiceRecalibration",
    "calibrate_dice",
    "conformal_quantile",
    "min_interval_cases",
    "min_interval_scores",
    "split_calibration",
]

#: the kinds of conformal interval
INTERVAL_KINDS = ("absolute", "normalised")
#: floor of the head's spread in a normalised score, Dice units: ``|y - g| / max(sd, SD_FLOOR)``
SD_FLOOR = 1e-3
#: the spread must vary at least this much (standard deviation / mean over the score cases) for normalised intervals
MIN_SD_SPREAD = 0.05


def min_interval_scores(coverage: float) -> int:
    """Fewest conformal scores ``m`` for an interval at ``coverage``: ``ceil(1/(1 - coverage) - 1)`` (9 for 0.9)."""
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage (of the interval) must be in (0, 1), got {coverage}.")
    return max(1, math.ceil(1.0 / (1.0 - coverage) - 1.0 - 1e-9))


def min_interval_cases(coverage: float, fit_fraction: float = 0.5) -> int:
    """Fewest calibration cases ``n`` for an interval at ``coverage`` when :func:`split_calibration` keeps
    ``floor(fit_fraction * n)`` of them to fit ``g``: at least one fit case and :func:`min_interval_scores`
    scored ones (17 for coverage 0.9 and fit_fraction 0.5)."""
    if not 0.0 < fit_fraction < 1.0:
        raise ValueError(f"fit_fraction must be in (0, 1), got {fit_fraction}.")
    m = min_interval_scores(coverage)
    n = m + 1
    while math.floor(fit_fraction * n) < 1 or n - math.floor(fit_fraction * n) < m:
        n += 1
    return n


def conformal_quantile(scores: Any, coverage: float) -> float:
    """The split-conformal quantile: the ``ceil((m + 1) coverage)``-th smallest of ``m`` scores.

    Raises ``ValueError`` naming the minimum when ``m < 1/(1 - coverage) - 1`` (the rank would exceed ``m``).
    """
    s = case_vector(scores, "scores")
    m, minimum = s.size, min_interval_scores(coverage)
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


def _spread(sd: Any, n: int) -> np.ndarray:
    a = case_vector(sd, "pred_sd")
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
    x, y = case_vector(pred_dice, "pred_dice"), case_vector(true_dice, "true_dice")
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
        errors = out_of_fold_errors(x[fit], y[fit], folds, chosen)
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
