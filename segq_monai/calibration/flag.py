"""Failure flagging with a finite-sample guarantee: calibrate the acceptance threshold on predicted Dice.

A case is *auto-accepted* when its confidence (e.g. the predicted Dice ``pred_dice`` of the quality head) is at
least a threshold ``λ``, and *flagged* for a human otherwise. It is a true *failure* when its true Dice is strictly
below ``tau``. Both functions pick ``λ`` on a labelled calibration split ``(C_i, Q_i), i = 1..n`` (confidence, true
quality) that neither stage was trained on, and return an :class:`AcceptanceThreshold`.

* :func:`calibrate_selective_threshold` (the requirement "among auto-accepted cases, at most a fraction ``alpha``
  are failures"): Learn-then-Test (Angelopoulos et al. 2021, arXiv 2110.01052) with exact binomial p-values and a
  Bonferroni correction over a fixed grid of thresholds; the binomial tail bound is that of selection with
  guaranteed risk (Geifman & El-Yaniv 2017), here made valid for the selected threshold by testing every grid
  point. Controls the *selective* (conditional) risk ``P(Q < tau | C >= λ)`` with probability ``1 - delta`` over
  the calibration draw. Needs i.i.d. cases.
* :func:`calibrate_crc_threshold`: Conformal Risk Control (Angelopoulos et al. 2022, arXiv 2208.02814) with the
  loss ``1{C >= λ and Q < tau}``. Controls the *joint* rate ``P(C >= λ and Q < tau)`` (accepted failures per
  case, not per accepted case) in expectation. Needs only exchangeability.

The failure rate among accepted cases is a ratio that is not monotone in ``λ``, so CRC cannot control it; a bound
on the joint rate is a weaker promise (with 50 % accepted, a joint rate of 0.1 is a failure rate of 0.2 among the
accepted).

:class:`ConformalFlagger` wraps both for bundle configs: ``fit(confidence, true_dice)`` then
``flag(confidence)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats

from segq_monai.metrics.quality import FAILURE_DICE

__all__ = [
    "DEFAULT_GRID",
    "AcceptanceThreshold",
    "ConformalFlagger",
    "acceptance_counts",
    "calibrate_crc_threshold",
    "calibrate_selective_threshold",
    "min_flag_cases",
]

#: Default candidate thresholds of :func:`calibrate_selective_threshold`: 1.00, 0.99, ..., 0.00 (Dice scale).
DEFAULT_GRID = tuple(np.arange(100, -1, -1) / 100.0)

_METHODS = ("selective", "crc")


def min_flag_cases(alpha: float, delta: float, grid_size: int = len(DEFAULT_GRID)) -> int:
    """The fewest calibration cases with which :func:`calibrate_selective_threshold` can certify any threshold.

    With ``n`` accepted cases and no failure among them, the binomial p-value is ``(1 - alpha) ** n``; it must reach
    ``delta / grid_size`` (Bonferroni over the grid), so ``n >= log(delta / grid_size) / log(1 - alpha)``: 66 for
    ``alpha = delta = 0.1``.
    """
    return math.ceil(math.log(delta / grid_size) / math.log(1.0 - alpha) - 1e-9)


@dataclass(frozen=True)
class AcceptanceThreshold:
    """A calibrated acceptance threshold: accept a case when ``confidence >= acceptance_threshold``, flag it otherwise.

    Attributes:
        acceptance_threshold: ``λ̂``, in the units of the confidence; ``+inf`` accepts nothing, ``-inf`` everything.
        fraction_accepted: fraction of the calibration cases with ``confidence >= acceptance_threshold``, in [0, 1].
        bound: the bound that certifies ``acceptance_threshold`` (see ``method``); ``feasible`` when it is ``<= alpha``.
            ``"selective"``: the one-sided Clopper-Pearson upper confidence bound, at level ``1 - delta / m``
            (``m`` grid points), on the failure rate among accepted cases (1.0 when nothing is accepted).
            ``"crc"``: the inflated empirical joint rate ``(#accepted failures + 1) / (n + 1)``.
        feasible: False when no threshold met the bound and the strictest one (``+inf``: accept nothing,
            flag everything) was returned.
        method: ``"selective"`` or ``"crc"``.
        alpha: the target rate. delta: the allowed failure probability of ``"selective"`` (None for ``"crc"``).
        tau: failure threshold on the true quality (a failure is ``true_dice < tau``).
        n_calibration: calibration cases used. n_accepted: of those, the accepted ones.
        failures_accepted: accepted calibration cases that are failures.
    """

    acceptance_threshold: float
    fraction_accepted: float
    bound: float
    feasible: bool
    method: str
    alpha: float
    delta: float | None
    tau: float
    n_calibration: int
    n_accepted: int
    failures_accepted: int


def _to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().to(torch.float64).numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float64)


def _check_inputs(confidence: Any, true_dice: Any, tau: float, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    conf, true = _to_numpy(confidence), _to_numpy(true_dice)
    if conf.ndim != 1 or conf.shape != true.shape:
        raise ValueError(
            f"`confidence` and `true_dice` must both be [N] (one value per case), got {conf.shape} and "
            f"{true.shape}; for several classes pass e.g. the per-case minimum over classes."
        )
    if conf.size == 0:
        raise ValueError("no calibration cases; pass a labelled calibration split.")
    for name, arr in (("confidence", conf), ("true_dice", true)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"`{name}` contains NaN or infinite values; drop those calibration cases first.")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}.")
    if not math.isfinite(tau):
        raise ValueError(f"tau must be a finite failure threshold on the true quality, got {tau}.")
    return conf, true


def _clopper_pearson_upper(k: np.ndarray, n: np.ndarray, level: float) -> np.ndarray:
    """One-sided Clopper-Pearson upper bound on a binomial rate: ``k`` events in ``n`` trials, at ``level``.

    ``sup{p : P(Binom(n, p) <= k) >= 1 - level}`` = ``Beta(level; k + 1, n - k)`` quantile; 1 when ``k == n``
    (in particular when ``n == 0``).
    """
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    full = k >= n
    upper = stats.beta.ppf(level, k + 1.0, np.where(full, 1.0, n - k))
    return np.where(full, 1.0, upper)


def acceptance_counts(confidence: Any, true_dice: Any, threshold: float, tau: float) -> tuple[int, int]:
    """Cases accepted at ``threshold`` (``confidence >= threshold``) and, of those, the failures
    (``true_dice < tau``).

    Args:
        confidence: ``[N]`` confidences (e.g. predicted Dice); true_dice: ``[N]`` true qualities (e.g. true Dice).
        threshold: the acceptance threshold ``λ``; tau: the failure threshold ``τ`` on the true quality.

    Returns:
        ``(n_accepted, failures_accepted)``.
    """
    conf, true = _to_numpy(confidence), _to_numpy(true_dice)
    accepted = conf >= threshold
    return int(accepted.sum()), int(np.sum(accepted & (true < tau)))


def _result(
    conf: np.ndarray,
    true: np.ndarray,
    threshold: float,
    bound: Callable[[int, int], float],
    method: str,
    alpha: float,
    delta: float | None,
    tau: float,
) -> AcceptanceThreshold:
    """The :class:`AcceptanceThreshold` of ``threshold`` on the calibration cases; ``bound(k, n_accepted)``."""
    n_acc, k = acceptance_counts(conf, true, threshold, tau)
    value = bound(k, n_acc)
    return AcceptanceThreshold(
        acceptance_threshold=float(threshold),
        fraction_accepted=n_acc / len(conf),
        bound=value,
        feasible=value <= alpha * (1 + 1e-9),  # the tolerance of the decisions (binomial p-value, floor)
        method=method,
        alpha=float(alpha),
        delta=None if delta is None else float(delta),
        tau=float(tau),
        n_calibration=len(conf),
        n_accepted=n_acc,
        failures_accepted=k,
    )


def calibrate_selective_threshold(
    confidence: Any,
    true_dice: Any,
    tau: float = FAILURE_DICE,
    alpha: float = 0.1,
    delta: float = 0.1,
    grid: Sequence[float] | None = None,
) -> AcceptanceThreshold:
    """Acceptance threshold whose failure rate among accepted cases is at most ``alpha``, w.p. ``>= 1 - delta``.

    Method (Learn-then-Test, Bonferroni). For every candidate ``λ`` of a grid ``Λ`` of ``m`` thresholds, fixed
    before the calibration data are seen, let ``n_λ = #{i : C_i >= λ}`` and ``k_λ = #{i : C_i >= λ, Q_i < tau}``.
    Test the null ``H_λ : R(λ) > alpha`` with the exact binomial p-value ``p_λ = P(Binom(n_λ, alpha) <= k_λ)``
    (1 when ``n_λ = 0``) and reject it when ``p_λ <= delta / m``; equivalently, when the one-sided Clopper-Pearson
    upper bound ``U_λ`` on ``R(λ)`` at level ``1 - delta / m`` is ``<= alpha``. Return the most lenient (smallest)
    rejected ``λ``, i.e. the one accepting the most cases; if no ``λ`` is rejected, return ``λ = +inf`` (accept
    nothing), ``feasible=False``, with a ``UserWarning``.

    Guarantee. Let the calibration cases and a new case ``(C, Q)`` be i.i.d., and let ``R(λ) = P(Q < tau | C >= λ)``
    be the failure rate among accepted cases at ``λ`` (``R := 0`` when ``P(C >= λ) = 0``, e.g. ``λ = +inf``).
    Then, with probability at least ``1 - delta`` over the calibration split,

        ``R(λ̂) <= alpha``, i.e. ``P(Q < tau | C >= λ̂, calibration split) <= alpha``:

    at most a fraction ``alpha`` of the cases accepted in future (in the long run) are failures. It holds for any
    distribution and any confidence score, because conditionally on ``n_λ`` the accepted cases' failures are
    ``Binom(n_λ, R(λ))`` for a fixed ``λ`` and Bonferroni bounds the chance of any false rejection over ``Λ`` by
    ``delta`` (so every rejected ``λ`` is valid at once). It is not a statement about the failure fraction of one
    finite test batch, which scatters around ``R(λ̂)``. The price of the guarantee is power: with no failures at all
    among the accepted, ``n_λ >= log(delta / m) / log(1 - alpha)`` cases must be accepted (66 for the defaults).

    Args:
        confidence: ``[N]`` calibration confidences, higher = better expected (e.g. ``pred_dice`` in [0, 1]; for
            several classes, the per-case minimum over classes). Tensor or array-like, finite.
        true_dice: ``[N]`` true quality of the same cases (e.g. true Dice in [0, 1]), finite.
        tau: a case is a failure when ``true_dice < tau`` (strictly).
        alpha: target failure rate among accepted cases, in (0, 1).
        delta: allowed probability, over the calibration draw, that the guarantee fails, in (0, 1).
        grid: the candidate thresholds ``Λ`` (finite, in the units of ``confidence``), fixed independently of the
            calibration data; default :data:`DEFAULT_GRID` (0.00, 0.01, ..., 1.00, for a Dice-scale confidence).
            More points cost a factor ``m`` in ``delta / m``, only logarithmically in the bound.

    Returns:
        :class:`AcceptanceThreshold` with ``method="selective"``; ``bound`` is ``U_λ̂`` (1.0 for ``λ̂ = +inf``).

    Example::

        cal = calibrate_selective_threshold(pred_dice_cal, true_dice_cal, tau=0.8, alpha=0.1, delta=0.1)
        flagged = pred_dice_new < cal.acceptance_threshold
    """
    conf, true = _check_inputs(confidence, true_dice, tau, alpha)
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}.")
    lam = np.asarray(DEFAULT_GRID if grid is None else grid, dtype=np.float64).reshape(-1)
    if lam.size == 0 or not np.all(np.isfinite(lam)):
        raise ValueError(f"grid must be a non-empty sequence of finite thresholds, got {grid!r}.")
    lam = np.unique(lam)[::-1]  # strict to lenient
    m = len(lam)
    level = 1.0 - delta / m

    accepted = conf[:, None] >= lam[None, :]  # [N, m]
    n_acc = accepted.sum(axis=0)
    k_fail = (accepted & (true < tau)[:, None]).sum(axis=0)
    p_values = np.where(n_acc > 0, stats.binom.cdf(k_fail, n_acc, alpha), 1.0)
    rejected = np.flatnonzero(p_values <= delta / m)
    if rejected.size == 0:
        best = int(np.argmin(p_values))
        warnings.warn(
            f"no threshold certifies a failure rate <= {alpha} among accepted cases with probability "
            f"{1 - delta:g} on {len(conf)} calibration case(s) (smallest p-value {p_values[best]:.3g} at "
            f"λ = {lam[best]:g}, needed <= {delta / m:.3g}); returning λ = +inf: accept nothing, flag every case. "
            "Use more calibration cases, a larger alpha or delta, or a coarser grid.",
            UserWarning,
            stacklevel=2,
        )
    threshold = float(lam[rejected[-1]]) if rejected.size else math.inf  # the most lenient rejected threshold
    return _result(
        conf,
        true,
        threshold,
        lambda k, n_in: float(_clopper_pearson_upper(k, n_in, level)),
        "selective",
        alpha,
        delta,
        tau,
    )


def calibrate_crc_threshold(
    confidence: Any, true_dice: Any, tau: float = FAILURE_DICE, alpha: float = 0.1
) -> AcceptanceThreshold:
    """Acceptance threshold whose expected rate of *accepted failures per case* is at most ``alpha`` (CRC).

    Method (Conformal Risk Control with the loss ``L_i(λ) = 1{C_i >= λ, Q_i < tau}``, non-increasing in ``λ``,
    bounded by 1, 0 at ``λ = +inf``): ``λ̂ = inf{λ : (sum_i L_i(λ) + 1) / (n + 1) <= alpha}``, i.e. at most
    ``r - 1`` accepted calibration failures with ``r = floor(alpha * (n + 1))``. With ``f_(1) >= f_(2) >= ...``
    the confidences of the calibration failures, this accepts exactly the cases with ``C > f_(r)``; it is returned
    as ``threshold = nextafter(f_(r), +inf)`` so that "accept when ``C >= threshold``" holds (the infimum over a
    left-continuous loss is not attained: a case with ``C = f_(r)`` is flagged). Fewer than ``r`` calibration
    failures: ``threshold = -inf`` (accept everything). ``r = 0`` (``n + 1 < 1 / alpha``): no threshold qualifies;
    ``+inf`` (accept nothing), ``feasible=False``, with a ``UserWarning``.

    Guarantee. If the calibration cases and a new case ``(C, Q)`` are exchangeable, then

        ``P(C >= λ̂ and Q < tau) <= alpha``,

    the probability taken over the calibration split and the new case together: in expectation, at most a
    fraction ``alpha`` of *all* new cases are accepted failures. Without ties among the failures' confidences it
    equals ``E[min(r, M)] / (n + 1)`` with ``M`` the number of failures among the ``n + 1`` cases, so it is tight
    (``>= alpha - 1 / (n + 1)`` when failures are common). This is **not** a bound on the failure rate among
    accepted cases (that rate is the joint rate divided by the fraction accepted); for that use
    :func:`calibrate_selective_threshold`.

    Args:
        confidence: ``[N]`` calibration confidences, higher = better expected. Tensor or array-like, finite.
        true_dice: ``[N]`` true quality (failure: ``< tau``), finite.
        tau: failure threshold on the true quality.
        alpha: target joint rate, in (0, 1).

    Returns:
        :class:`AcceptanceThreshold` with ``method="crc"``, ``delta=None`` and ``bound`` =
        ``(#accepted calibration failures + 1) / (n + 1)``.
    """
    conf, true = _check_inputs(confidence, true_dice, tau, alpha)
    n = len(conf)
    r = math.floor(alpha * (n + 1) + 1e-9)  # tolerance: alpha * (n + 1) may round just below an integer
    fail_conf = np.sort(conf[true < tau])[::-1]
    if r == 0:
        warnings.warn(
            f"conformal risk control needs n + 1 >= 1 / alpha calibration cases; got n = {n} for alpha = {alpha}. "
            "Returning λ = +inf: accept nothing, flag every case.",
            UserWarning,
            stacklevel=2,
        )
        threshold = math.inf
    elif len(fail_conf) < r:
        threshold = -math.inf
    else:
        threshold = float(np.nextafter(fail_conf[r - 1], math.inf))
    return _result(conf, true, threshold, lambda k, _: (k + 1) / (n + 1), "crc", alpha, None, tau)


class ConformalFlagger:
    """Flags cases for human review with a calibrated guarantee on the accepted ones.

    ``fit`` calibrates the acceptance threshold on a labelled calibration split (:func:`calibrate_selective_threshold`
    for ``method="selective"``, :func:`calibrate_crc_threshold` for ``"crc"``); ``flag`` marks every case whose
    confidence is below it (NaN confidence is flagged). Guarantees as stated in those functions.

    Args:
        alpha: target rate: failures among accepted cases (``"selective"``) or accepted failures among all cases
            (``"crc"``), in (0, 1).
        delta: allowed probability that the ``"selective"`` guarantee fails, over the calibration draw; unused by
            ``"crc"``.
        tau: a case is a failure when its true quality (e.g. true Dice) is below this.
        method: ``"selective"`` (conditional rate, with probability ``1 - delta``) or ``"crc"`` (joint rate, in
            expectation).
        grid: candidate thresholds of ``"selective"`` (default :data:`DEFAULT_GRID`).

    Example::

        flagger = ConformalFlagger(alpha=0.1, delta=0.1, tau=0.8).fit(pred_dice_cal, true_dice_cal)
        to_review = flagger.flag(pred_dice_new)  # bool [N]
    """

    def __init__(
        self,
        alpha: float = 0.1,
        delta: float = 0.1,
        tau: float = FAILURE_DICE,
        method: str = "selective",
        grid: Sequence[float] | None = None,
    ) -> None:
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")
        self.alpha = alpha
        self.delta = delta
        self.tau = tau
        self.method = method
        self.grid = grid
        self.result: AcceptanceThreshold | None = None

    def fit(self, confidence: Any, true_dice: Any) -> ConformalFlagger:
        """Calibrate on ``[N]`` confidences and true qualities of held-out labelled cases; returns ``self``."""
        if self.method == "selective":
            self.result = calibrate_selective_threshold(
                confidence, true_dice, tau=self.tau, alpha=self.alpha, delta=self.delta, grid=self.grid
            )
        else:
            self.result = calibrate_crc_threshold(confidence, true_dice, tau=self.tau, alpha=self.alpha)
        return self

    @property
    def acceptance_threshold(self) -> float:
        """The fitted acceptance threshold ``λ̂`` (accept when ``confidence >= λ̂``)."""
        if self.result is None:
            raise RuntimeError("ConformalFlagger is not fitted; call fit(confidence, true_dice) first.")
        return self.result.acceptance_threshold

    def flag(self, confidence: Any) -> np.ndarray | torch.Tensor:
        """Flag (True) every case not accepted: ``confidence < acceptance_threshold`` or NaN.

        Args:
            confidence: any shape, e.g. ``[N]``; a tensor gives a bool tensor on its device, anything else a numpy
                bool array.
        """
        lam = self.acceptance_threshold
        if isinstance(confidence, torch.Tensor):
            return ~(confidence >= lam)
        return ~(np.asarray(confidence, dtype=np.float64) >= lam)
