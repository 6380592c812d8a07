"""Issue #18 items 3-4: the recalibration map chosen by cross-validated MAE (against scikit-learn) and the
normalised split-conformal intervals (against a direct quantile and on exchangeable draws)."""

from __future__ import annotations

import math
import unittest

import numpy as np
import pytest
from parameterized import parameterized
from segq_testing import isotonic_reference
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GroupKFold, KFold

from segq_monai.calibration.recalibration import apply_map, calibrate_dice, cv_folds, fit_map, split_calibration


def reference_cv_mae(x, y, groups, n_folds, seed):
    """Each candidate's out-of-fold MAE with scikit-learn: the groups (first-appearance order) put in the documented
    seeded random order, sklearn's ``KFold`` over them; identity, ``LinearRegression`` clipped to [0, 1], and
    ``IsotonicRegression``'s knots with the hand-pinned tail rule beyond them (``isotonic_reference``)."""
    codes = {}
    case_group = np.array([codes.setdefault(g, len(codes)) for g in groups])
    order = np.random.default_rng(seed).permutation(len(codes))  # position p holds group order[p]
    errors = {m: np.empty(len(x)) for m in ("identity", "linear", "isotonic")}
    for _, test_pos in KFold(n_splits=min(n_folds, len(codes))).split(order):
        held = np.isin(case_group, order[test_pos])
        xt, yt, xh = x[~held], y[~held], x[held]
        errors["identity"][held] = np.abs(y[held] - np.clip(xh, 0, 1))
        errors["linear"][held] = np.abs(y[held] - nonnegative_line(xt, yt)(xh))
        errors["isotonic"][held] = np.abs(y[held] - isotonic_reference(xt, yt)(xh))
    return {m: float(e.mean()) for m, e in errors.items()}


def nonnegative_line(x, y):
    """Least squares under slope >= 0 (sklearn's line, or the mean where its slope is negative), clipped to [0, 1]."""
    lin = LinearRegression().fit(x[:, None], y)
    if lin.coef_[0] <= 0:
        return lambda new: np.clip(np.full(len(new), y.mean()), 0, 1)
    return lambda new: np.clip(lin.predict(np.asarray(new)[:, None]), 0, 1)


def calibrated(rng, n):
    x = rng.uniform(0.3, 0.95, n)
    return x, np.clip(x + rng.normal(0, 0.03, n), 0, 1)


def shrunk(rng, n):  # y = 0.5 x + 0.3 + small noise
    x = rng.uniform(0.1, 0.95, n)
    return x, 0.5 * x + 0.3 + rng.normal(0, 0.01, n)


def step(rng, n):  # strongly monotone, far from a line: a steep sigmoid
    x = rng.uniform(0.1, 0.9, n)
    return x, np.clip(0.2 + 0.7 / (1 + np.exp(-(x - 0.5) * 40)) + rng.normal(0, 0.01, n), 0, 1)


class TestMapChoice(unittest.TestCase):
    @parameterized.expand([("identity", calibrated, 200), ("linear", shrunk, 200), ("isotonic", step, 400)])
    def test_chosen_map_and_cv_mae_against_sklearn(self, expected, cases, n):
        rng = np.random.default_rng(7)
        x, y = cases(rng, n)
        cal = calibrate_dice(x, y, coverage=0.9, seed=2)
        self.assertEqual(cal.map, expected, cal.cv_mae)
        fit, _ = split_calibration(n, 0.5, 2)
        ref = reference_cv_mae(x[fit], y[fit], list(range(len(fit))), 5, 2)
        for m, v in ref.items():
            self.assertAlmostEqual(cal.cv_mae[m], v, places=10, msg=m)
        # the chosen map is refitted on the whole fit part: its predictions against sklearn's fits there
        new = np.linspace(0.0, 1.0, 23)
        if expected == "identity":
            np.testing.assert_allclose(cal.predict(new), new)
        elif expected == "linear":
            np.testing.assert_allclose(cal.predict(new), nonnegative_line(x[fit], y[fit])(new), atol=1e-10)
        else:
            np.testing.assert_allclose(cal.predict(new), isotonic_reference(x[fit], y[fit])(new), atol=1e-12)

    def test_linear_map_never_turns_the_order_round(self):
        """A fit part whose Dice falls as the head's rises gets the constant mean, not a decreasing line."""
        x = np.linspace(0.2, 0.9, 30)
        y = 0.9 - 0.5 * x
        params = fit_map("linear", x, y)
        self.assertEqual(params["coef"], (0.0, float(np.mean(y))))
        np.testing.assert_allclose(apply_map("linear", [0.0, 1.0], params), [np.mean(y)] * 2)

    def test_groups_stay_in_one_fold(self):
        """Four artifact copies per slice: a slice's copies share a fold (the invariant of sklearn's GroupKFold)
        and the CV MAE is sklearn's over those folds."""
        rng = np.random.default_rng(3)
        n = 160
        groups = [f"slice{i // 4}" for i in range(n)]
        x, y = shrunk(rng, n)
        folds = cv_folds(n, groups, 5, seed=1)
        for g in set(groups):
            self.assertEqual(len({folds[i] for i in range(n) if groups[i] == g}), 1)
        for _, test in GroupKFold(n_splits=5).split(x, y, groups):  # the same invariant, sklearn's partition
            self.assertEqual(len({groups[i] for i in test} & {groups[i] for i in range(n) if i not in set(test)}), 0)
        self.assertEqual(sorted(np.bincount(folds)), [32] * 5)  # 40 groups of 4: 8 groups per fold
        cal = calibrate_dice(x, y, coverage=0.9, seed=1, groups=groups)
        fit, _ = split_calibration(n, 0.5, 1)
        ref = reference_cv_mae(x[fit], y[fit], [groups[i] for i in fit], 5, 1)
        for m, v in ref.items():
            self.assertAlmostEqual(cal.cv_mae[m], v, places=10, msg=m)

    def test_identity_is_never_much_worse_than_raw(self):
        """Over many small calibrated sites, the recalibrated MAE on new cases stays near the raw MAE."""
        rng = np.random.default_rng(11)
        gaps = []
        for _ in range(100):
            x, y = calibrated(rng, 40)
            cal = calibrate_dice(x, y, coverage=0.9, seed=0)
            xt, yt = calibrated(rng, 400)
            gaps.append(np.abs(cal.predict(xt) - yt).mean() - np.abs(xt - yt).mean())
        self.assertLess(np.mean(gaps), 0.002)

    def test_too_few_fit_cases_keep_isotonic(self):
        rng = np.random.default_rng(0)
        x, y = shrunk(rng, 18)  # 9 fit cases < 2 x 5 folds: no choice
        cal = calibrate_dice(x, y, coverage=0.9)
        self.assertEqual((cal.map, cal.cv_mae), ("isotonic", None))


def hetero(rng, n):
    """Heteroscedastic cases: y = f(x) + sd * eps with f the identity (a calibrated head, so the map adds no error
    of its own) and the head's spread log-normal around 0.02 (most cases sure, a few not)."""
    x = rng.uniform(0.3, 0.9, n)
    sd = 0.02 * np.exp(rng.normal(0, 1, n))
    return x, x + sd * rng.normal(0, 1, n), sd


class TestNormalisedIntervals(unittest.TestCase):
    def test_quantiles_against_a_direct_computation(self):
        rng = np.random.default_rng(4)
        x, y, sd = hetero(rng, 61)
        sd[0] = 0.0  # floored at 1e-3
        cal = calibrate_dice(x, y, coverage=0.9, seed=5, pred_sd=sd)
        self.assertEqual(cal.interval_kind, "normalised")
        _, score = split_calibration(61, 0.5, 5)
        m = len(score)  # 31
        k = math.ceil((m + 1) * 0.9)  # 29
        residual = np.abs(y[score] - cal.predict(x[score]))
        self.assertAlmostEqual(cal.half_width, np.sort(residual)[k - 1], places=12)
        q_n = np.sort(residual / np.maximum(sd[score], 1e-3))[k - 1]
        self.assertAlmostEqual(cal.half_width_normalised, q_n, places=12)
        lo, hi = cal.interval(x, sd)
        g = cal.predict(x)
        np.testing.assert_allclose(lo, np.clip(g - q_n * np.maximum(sd, 1e-3), 0, 1), atol=1e-12)
        np.testing.assert_allclose(hi, np.clip(g + q_n * np.maximum(sd, 1e-3), 0, 1), atol=1e-12)
        lo_abs, hi_abs = cal.interval(x)  # no spread: the absolute interval
        np.testing.assert_allclose(hi_abs - lo_abs, np.clip(g + cal.half_width, 0, 1) - np.clip(g - cal.half_width, 0, 1))

    @pytest.mark.slow
    def test_coverage_of_both_kinds_and_the_narrower_normalised(self):
        """2000 draws of 40 calibration cases (20 fit, 20 scored) and a new case, coverage 0.9. With continuous
        scores each kind covers with probability k / (m + 1) = 19 / 21 = 0.9048; the realised fraction of 2000
        Bernoulli outcomes lies within 4 standard deviations of it. The normalised half-width follows the spread:
        narrower on average than the absolute one."""
        rng = np.random.default_rng(21)
        draws = 2000
        hits = {"absolute": np.zeros(draws, bool), "normalised": np.zeros(draws, bool)}
        width = {"absolute": np.zeros(draws), "normalised": np.zeros(draws)}
        kinds = []
        for d in range(draws):
            x, y, sd = hetero(rng, 40)
            cal = calibrate_dice(x, y, coverage=0.9, seed=d, pred_sd=sd)
            kinds.append(cal.interval_kind)
            xn, yn, sdn = hetero(rng, 1)
            for kind in hits:
                lo, hi = cal.interval(xn, sdn, kind)
                hits[kind][d] = lo[0] <= yn[0] <= hi[0]
                width[kind][d] = hi[0] - lo[0]
        expected = 19 / 21
        tol = 4 * math.sqrt(expected * (1 - expected) / draws)
        for kind in hits:
            self.assertLess(abs(hits[kind].mean() - expected), tol, (kind, hits[kind].mean()))
        widths = {k: v.mean() for k, v in width.items()}
        self.assertLess(widths["normalised"], 0.9 * widths["absolute"], widths)
        self.assertGreater(kinds.count("normalised"), 0.6 * draws)  # chosen on the fit part: 75 % of draws here

    @parameterized.expand([("constant", lambda n: np.full(n, 0.04)), ("missing", lambda n: None)])
    def test_absolute_without_a_varying_spread(self, _, spread):
        rng = np.random.default_rng(1)
        x, y, _ = hetero(rng, 40)
        cal = calibrate_dice(x, y, coverage=0.9, pred_sd=spread(40))
        self.assertEqual(cal.interval_kind, "absolute")
        if spread(40) is None:
            self.assertIsNone(cal.half_width_normalised)
        else:  # a constant spread only rescales: q_n sd == q
            self.assertAlmostEqual(cal.half_width_normalised * 0.04, cal.half_width, places=12)
        np.testing.assert_allclose(cal.interval(x, spread(40)), cal.interval(x, None, "absolute"))


if __name__ == "__main__":
    unittest.main()
