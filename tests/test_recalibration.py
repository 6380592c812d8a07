from __future__ import annotations

import math
import unittest
import warnings

import numpy as np
import pytest
from parameterized import parameterized
from sklearn.isotonic import IsotonicRegression

from segq_monai.calibration.maps import isotonic_regression, recalibrate
from segq_monai.calibration.recalibration import (
    DiceRecalibration,
    calibrate_dice,
    conformal_quantile,
    min_interval_cases,
    min_interval_scores,
    split_calibration,
)


class TestIsotonic(unittest.TestCase):
    @parameterized.expand(
        [
            # PAV by hand: 0.6 > 0.4 pool to 0.5 (then 0.5 <= 0.5 stays); 0.9 > 0.8 pool to 0.85
            ([1, 2, 3, 4, 5, 6], [0.2, 0.6, 0.4, 0.5, 0.9, 0.8], [1, 2, 3, 4, 5, 6], [0.2, 0.5, 0.5, 0.5, 0.85, 0.85]),
            # ties in x first pool to their mean (0.5, weight 2), then violate 0.2: (2 * 0.5 + 0.2) / 3 = 0.4
            ([1, 1, 2], [0.0, 1.0, 0.2], [1, 2], [0.4, 0.4]),
            # a decreasing sequence pools into one block, its mean
            ([0.1, 0.2, 0.3], [0.9, 0.6, 0.3], [0.1, 0.2, 0.3], [0.6, 0.6, 0.6]),
            # clipped to [0, 1]
            ([0.1, 0.9], [-0.2, 1.3], [0.1, 0.9], [0.0, 1.0]),
        ]
    )
    def test_hand_computed(self, x, y, knots_x, knots_y):
        kx, ky = isotonic_regression(x, y)
        np.testing.assert_allclose(kx, knots_x)
        np.testing.assert_allclose(ky, knots_y, atol=1e-12)

    def test_matches_sklearn(self):
        rng = np.random.default_rng(3)
        for n in (5, 40, 300):
            x = np.round(rng.uniform(0, 1, n), 2)  # rounding makes ties
            y = np.clip(x + rng.normal(0, 0.25, n), -0.1, 1.1)
            w = rng.uniform(0.5, 2.0, n)
            kx, ky = isotonic_regression(x, y, w)
            ref = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y, sample_weight=w)
            x_new = np.linspace(-0.2, 1.2, 97)
            x_in = x_new[(x_new >= kx[0]) & (x_new <= kx[-1])]  # sklearn's clip tail is flat; ours is tested below
            np.testing.assert_allclose(recalibrate(x_in, kx, ky), ref.predict(x_in), atol=1e-12)


class TestRecalibrate(unittest.TestCase):
    def test_linear_inside_slope_one_outside(self):
        kx, ky = (0.5, 0.7, 0.9), (0.6, 0.8, 0.85)
        raw = np.array([0.133, 0.5, 0.6, 0.8, 0.9, 0.95, 0.0, 1.2])
        # inside: interpolation (0.6 -> 0.7, 0.8 -> 0.825); below 0.5: 0.6 + (x - 0.5) (0.133 -> 0.233, 0 -> 0.1);
        # above 0.9: 0.85 + (x - 0.9) (0.95 -> 0.9, 1.2 -> 1.15 clipped to 1)
        np.testing.assert_allclose(
            recalibrate(raw, kx, ky), [0.233, 0.6, 0.7, 0.825, 0.85, 0.9, 0.1, 1.0], atol=1e-12
        )

    def test_keeps_the_order_of_cases_below_every_fit_case(self):
        """The 3D example's worst case: raw 0.133 below a lowest knot at 0.5 was lifted to that knot's value by a
        flat tail; with the head's own slope, worse raw stays worse."""
        g = DiceRecalibration((0.5, 0.9), (0.587, 0.9), 0.1, 0.1, 8, 9, False)
        low = g.predict([0.05, 0.133, 0.3])
        self.assertTrue(np.all(np.diff(low) > 0))
        self.assertLess(low[1], 0.25)

    def test_single_knot_is_constant(self):
        np.testing.assert_allclose(recalibrate([0.0, 0.4, 1.0], (0.4,), (0.7,)), [0.7, 0.7, 0.7])


class TestConformal(unittest.TestCase):
    def test_quantile_rank(self):
        # m = 9, coverage 0.9: k = ceil(10 * 0.9) = 9, the largest; m = 19: k = ceil(20 * 0.9) = 18
        self.assertEqual(conformal_quantile(np.arange(9.0), 0.9), 8.0)
        self.assertEqual(conformal_quantile(np.arange(19.0), 0.9), 17.0)
        self.assertEqual(conformal_quantile(np.arange(4.0), 0.8), 3.0)  # k = ceil(5 * 0.8) = 4

    @parameterized.expand([(0.9, 9), (0.8, 4), (0.95, 19), (0.7, 3), (0.5, 1)])
    def test_minimum_size(self, coverage, minimum):
        self.assertEqual(min_interval_scores(coverage), minimum)
        conformal_quantile(np.ones(minimum), coverage)  # enough
        if minimum > 1:
            with self.assertRaisesRegex(ValueError, f"at least {minimum} scored calibration cases"):
                conformal_quantile(np.ones(minimum - 1), coverage)

    @parameterized.expand([(0.9, 0.5, 17), (0.8, 0.5, 7), (0.9, 0.25, 11)])
    def test_min_interval_cases(self, coverage, fit_fraction, n):
        # n cases: floor(fit_fraction * n) >= 1 fit, and n - that >= min_interval_scores(coverage) scored
        self.assertEqual(min_interval_cases(coverage, fit_fraction), n)

    def test_too_small_calibration_names_the_minimum(self):
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 1, 16)  # 8 to fit, 8 to score: an interval at 0.9 needs 9 scores
        with self.assertRaisesRegex(ValueError, r"needs at least 9 scored .* got 8.*16 calibration cases, 8 of them"):
            calibrate_dice(x, x, coverage=0.9)
        self.assertEqual(calibrate_dice(np.r_[x, 0.5, 0.5], np.r_[x, 0.5, 0.5], coverage=0.9).n_score, 9)

    def test_split_ignores_values(self):
        fit, score = split_calibration(11, 0.5, seed=4)
        self.assertEqual((len(fit), len(score)), (5, 6))
        self.assertEqual(sorted(np.r_[fit, score].tolist()), list(range(11)))
        np.testing.assert_array_equal(split_calibration(11, 0.5, seed=4)[0], fit)

    @pytest.mark.slow
    def test_coverage_on_exchangeable_data(self):
        """2000 calibration draws of n = 40 (20 fit, 20 scored), one new case each, coverage 0.9.

        With continuous scores the coverage averaged over draws is exactly k / (m + 1) = 19 / 21 = 0.9048
        (k = ceil(21 * 0.9) = 19), between the promise coverage = 0.9 and coverage + 1 / (m + 1) = 0.9476.
        The realised fraction of 2000 independent Bernoulli(0.9048) outcomes lies within 4 standard deviations
        (4 * 0.0066) of it unless the method is wrong.
        """
        rng = np.random.default_rng(12)
        coverage, n, draws = 0.9, 40, 2000

        def cases(size):  # a head that under-predicts, with heteroscedastic noise; true Dice in (0.1, 0.9)
            true = rng.uniform(0.1, 0.9, size)
            return np.clip(true - 0.14 + rng.normal(0, 0.05 + 0.1 * (1 - true), size), 0, 1), true

        covered, widths = np.zeros(draws, bool), np.zeros(draws)
        for d in range(draws):
            cal = calibrate_dice(*cases(n), coverage=coverage, seed=d)
            x, y = cases(1)
            lo, hi = cal.interval(x)
            covered[d] = lo[0] <= y[0] <= hi[0]
            widths[d] = hi[0] - lo[0]
        expected = 19 / 21
        sd = math.sqrt(expected * (1 - expected) / draws)
        self.assertGreaterEqual(expected, coverage)
        self.assertLessEqual(expected, coverage + 1 / 21)
        self.assertLess(abs(covered.mean() - expected), 4 * sd, covered.mean())
        self.assertTrue(np.all(widths < 1.0))  # informative, not the trivial [0, 1]

    def test_recalibration_removes_a_bias(self):
        rng = np.random.default_rng(5)
        true = rng.uniform(0.3, 1.0, 400)
        raw = np.clip(true - 0.14 + rng.normal(0, 0.03, 400), 0, 1)  # ranks right, level 0.14 too low
        cal = calibrate_dice(raw[:200], true[:200], coverage=0.9)
        mae_raw = np.abs(raw[200:] - true[200:]).mean()
        mae_cal = np.abs(cal.predict(raw[200:]) - true[200:]).mean()
        self.assertGreater(mae_raw, 0.13)
        self.assertLess(mae_cal, 0.04)

    def test_constant_predictions_fall_back(self):
        """A constant head far below every true Dice (0.4; at 0.7, the middle of the true Dice, the identity wins the
        map choice and nothing falls back): linear and isotonic both give the fit part's mean, the first wins."""
        true = np.linspace(0.5, 0.9, 30)
        with self.assertWarnsRegex(UserWarning, "falls back to their mean true Dice"):
            cal = calibrate_dice(np.full(30, 0.4), true, coverage=0.8)
        fit, score = split_calibration(30, 0.5, 0)
        self.assertTrue(cal.fallback)
        self.assertEqual(cal.map, "linear")
        np.testing.assert_allclose(cal.predict([0.1, 0.7, 0.99]), true[fit].mean())
        # the half-width is the k-th smallest |true - mean|, k = ceil(16 * 0.8) = 13 of the 15 scores
        np.testing.assert_allclose(cal.half_width, np.sort(np.abs(true[score] - true[fit].mean()))[12])

    def test_no_warning_for_a_varying_head(self):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            cal = calibrate_dice(np.linspace(0, 1, 20), np.linspace(0, 1, 20), coverage=0.9)
        self.assertIsInstance(cal, DiceRecalibration)
        self.assertEqual(cal.map, "identity")  # a perfect head stays the identity (it ties linear: the simpler wins)
        x = np.linspace(0, 1, 7)
        np.testing.assert_allclose(cal.predict(x), x, atol=1e-12)


if __name__ == "__main__":
    unittest.main()
