"""Has a cohort moved away from the calibration split? Two-sample comparisons of per-case summaries.

A calibration's promises (interval coverage, the guaranteed flag) hold for cases exchangeable with the calibration
split. :func:`distribution_shift` compares one per-case quantity of a cohort (e.g. the raw predicted Dice, or the
mean predictive entropy in nats) with the same quantity on the calibration split: the two-sample
Kolmogorov-Smirnov statistic ``D = sup_t |F_cohort(t) - F_reference(t)|`` with its p-value (``scipy.stats.ks_2samp``,
exact for small samples), the medians, and the fraction of the cohort outside the calibration range. A small
p-value says the cohort is unlike the cases the guarantee was made on; a large one does not prove it is alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

__all__ = ["distribution_shift"]


def distribution_shift(cohort: Any, reference: Any) -> dict[str, float]:
    """Compare ``cohort`` ``[N]`` with ``reference`` ``[M]`` (finite values of one per-case quantity).

    Returns:
        ``{"n", "n_reference", "median", "median_reference", "ks_statistic", "p_value", "fraction_outside"}``:
        ``ks_statistic`` in [0, 1]; ``p_value`` of the two-sided test that both come from one distribution;
        ``fraction_outside``: share of the cohort below the reference's minimum or above its maximum. NaN where
        a side is empty (no case left after dropping non-finite values).
    """
    x = np.asarray(cohort, np.float64).reshape(-1)
    y = np.asarray(reference, np.float64).reshape(-1)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    out: dict[str, float] = {"n": x.size, "n_reference": y.size}
    if x.size == 0 or y.size == 0:
        nan = float("nan")
        return {**out, "median": nan, "median_reference": nan, "ks_statistic": nan, "p_value": nan,
                "fraction_outside": nan}  # fmt: skip
    test = stats.ks_2samp(x, y)
    return {
        **out,
        "median": float(np.median(x)),
        "median_reference": float(np.median(y)),
        "ks_statistic": float(test.statistic),
        "p_value": float(test.pvalue),
        "fraction_outside": float(np.mean((x < y.min()) | (x > y.max()))),
    }
