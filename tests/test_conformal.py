from __future__ import annotations

import math
import unittest
import warnings

import numpy as np
import torch
from parameterized import parameterized
from scipy import optimize, special, stats

from segq_monai.calibration.flag import (
    ConformalFlagger,
    acceptance_counts,
    calibrate_crc_threshold,
    calibrate_selective_threshold,
)

TAU = 0.8

# ---- a hand-checkable calibration table: 13 cases, failures (true < 0.8) are the cases with confidence 0.65, 0.55
CONF = np.array([0.98, 0.96, 0.95, 0.93, 0.92, 0.91, 0.90, 0.85, 0.80, 0.70, 0.65, 0.55, 0.30])
TRUE = np.array([0.95, 0.90, 0.91, 0.85, 0.88, 0.83, 0.86, 0.86, 0.82, 0.81, 0.60, 0.50, 0.85])
GRID = (0.9, 0.7, 0.5)

# Selective (LTT, Bonferroni over m = 3 grid points), p_λ = P(Binom(n_λ, alpha) <= k_λ), reject when <= delta / 3:
#   λ = 0.9: n = 7,  k = 0: alpha 0.3 -> p = 0.7^7  = 0.08235;  alpha 0.5 -> p = 0.5^7 = 0.0078
#   λ = 0.7: n = 10, k = 0: alpha 0.3 -> p = 0.7^10 = 0.02825   (">=": the case at exactly 0.70 is accepted)
#   λ = 0.5: n = 12, k = 2: alpha 0.3 -> p = 0.7^12 + 12*0.3*0.7^11 + 66*0.09*0.7^10 = 0.25282
#                           alpha 0.5 -> p = (1 + 12 + 66) / 4096 = 0.01929
# Returned: the smallest rejected λ; bound = Clopper-Pearson upper bound at level 1 - delta / 3
#   (k = 0: 1 - (delta / 3)^(1 / n)).
#   alpha 0.3, delta 0.3 (delta/3 = 0.1):  rejects 0.9, 0.7 -> λ = 0.7, bound = 1 - 0.1^(1/10)  = 0.205672
#   alpha 0.3, delta 0.15 (delta/3 = 0.05): rejects 0.7 only (not the stricter 0.9: too few cases there)
#                                           -> λ = 0.7, bound = 1 - 0.05^(1/10) = 0.258866
#   alpha 0.5, delta 0.6 (delta/3 = 0.2):  rejects all -> λ = 0.5, 12 accepted, 2 failures,
#                                           bound = p solving P(Binom(12, p) <= 2) = 0.2 (root-found below)
#   alpha 0.1, delta 0.1 (delta/3 = 1/30):  p = 0.9^10 = 0.349 at best -> none: λ = +inf, bound 1, infeasible


def cp_upper_by_root(k, n, level):
    """Independent reference: the p at which P(Binom(n, p) <= k) = 1 - level."""
    return optimize.brentq(lambda p: stats.binom.cdf(k, n, p) - (1 - level), 1e-12, 1 - 1e-12, xtol=1e-14)


SELECTIVE_CASES = [
    ("two_rejected", 0.3, 0.3, 0.7, 10, 0, 1 - 0.1 ** (1 / 10), True),
    ("strict_not_rejected", 0.3, 0.15, 0.7, 10, 0, 1 - 0.05 ** (1 / 10), True),
    ("with_failures", 0.5, 0.6, 0.5, 12, 2, cp_upper_by_root(2, 12, 0.8), True),
    ("infeasible", 0.1, 0.1, math.inf, 0, 0, 1.0, False),
]

# CRC, n = 13: r = floor(alpha * 14); accept C > f_(r), f = (0.65, 0.55); bound (accepted failures + 1) / 14.
#   alpha 0.3:  r = 4 > 2 failures     -> accept everything (λ = -inf), 13 accepted, 2 failures, bound 3/14
#   alpha 0.2:  r = 2 -> C > 0.55      -> 11 accepted (all but 0.55 and 0.30), 1 failure, bound 2/14
#   alpha 0.1:  r = 1 -> C > 0.65      -> 10 accepted, 0 failures, bound 1/14
#   alpha 0.05: r = 0 (n + 1 < 1/alpha) -> λ = +inf, nothing accepted, bound 1/14 > alpha, infeasible
CRC_CASES = [
    ("accept_all", 0.3, -math.inf, 13, 2, 3 / 14, True),
    ("second_failure", 0.2, float(np.nextafter(0.55, 1)), 11, 1, 2 / 14, True),
    ("first_failure", 0.1, float(np.nextafter(0.65, 1)), 10, 0, 1 / 14, True),
    ("infeasible", 0.05, math.inf, 0, 0, 1 / 14, False),
]


class TestHandComputed(unittest.TestCase):
    @parameterized.expand(SELECTIVE_CASES)
    def test_selective(self, _, alpha, delta, lam, n_acc, k, bound, feasible):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = calibrate_selective_threshold(CONF, TRUE, tau=TAU, alpha=alpha, delta=delta, grid=GRID)
        self.assertEqual(got.acceptance_threshold, lam)
        self.assertEqual((got.n_accepted, got.failures_accepted, got.feasible), (n_acc, k, feasible))
        np.testing.assert_allclose(got.fraction_accepted, n_acc / 13, rtol=1e-12)
        np.testing.assert_allclose(got.bound, bound, rtol=1e-9)
        self.assertEqual(got.feasible, got.bound <= alpha)
        self.assertEqual(any("accept nothing" in str(w.message) for w in caught), not feasible)

    @parameterized.expand(CRC_CASES)
    def test_crc(self, _, alpha, lam, n_acc, k, bound, feasible):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = calibrate_crc_threshold(torch.tensor(CONF), torch.tensor(TRUE), tau=TAU, alpha=alpha)
        self.assertEqual(got.acceptance_threshold, lam)
        self.assertEqual((got.n_accepted, got.failures_accepted, got.feasible), (n_acc, k, feasible))
        np.testing.assert_allclose((got.fraction_accepted, got.bound), (n_acc / 13, bound), rtol=1e-12)
        self.assertIsNone(got.delta)
        self.assertEqual(any("accept nothing" in str(w.message) for w in caught), not feasible)

    def test_default_grid_and_order_invariance(self):
        rng = np.random.default_rng(3)
        c, q = draw(rng, 1, 400)
        c, q = c[0], q[0]
        got = calibrate_selective_threshold(c, q, alpha=0.1, delta=0.1)
        perm = rng.permutation(400)
        self.assertEqual(got, calibrate_selective_threshold(c[perm], q[perm], alpha=0.1, delta=0.1))
        self.assertIn(round(got.acceptance_threshold * 100), range(101))
        # brute force over the 101-point grid, Bonferroni level 0.1 / 101
        ok = [
            lam
            for lam in np.arange(101) / 100
            if (c >= lam).any() and stats.binom.cdf(((c >= lam) & (q < TAU)).sum(), (c >= lam).sum(), 0.1) <= 0.1 / 101
        ]
        self.assertEqual(got.acceptance_threshold, min(ok))

    def test_acceptance_counts(self):
        # accepted: confidence >= 0.7 (0.9, 0.7, 0.75); failures among them: true < 0.8 (0.6, 0.79)
        conf, true = [0.9, 0.5, 0.7, 0.75, 0.2], [0.6, 0.9, 0.85, 0.79, 0.1]
        self.assertEqual(acceptance_counts(conf, true, threshold=0.7, tau=0.8), (3, 2))
        self.assertEqual(acceptance_counts(torch.tensor(conf), torch.tensor(true), math.inf, 0.8), (0, 0))

    def test_flagger(self):
        flagger = ConformalFlagger(alpha=0.3, delta=0.3, tau=TAU, grid=GRID)
        with self.assertRaises(RuntimeError):
            flagger.flag([0.5])
        self.assertIs(flagger.fit(CONF, TRUE), flagger)
        self.assertEqual(flagger.acceptance_threshold, 0.7)
        np.testing.assert_array_equal(flagger.flag([0.71, 0.7, 0.69, np.nan]), [False, False, True, True])
        flags = flagger.flag(torch.tensor([0.95, 0.2]))
        self.assertTrue(torch.equal(flags, torch.tensor([False, True])))
        crc = ConformalFlagger(alpha=0.1, tau=TAU, method="crc").fit(CONF, TRUE)
        np.testing.assert_array_equal(crc.flag(CONF), CONF <= 0.65)

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, "method"):
            ConformalFlagger(method="bonferroni")
        bad = [
            ((CONF, TRUE[:-1]), {}, "same|\\[N\\]"),
            ((CONF[:, None], TRUE[:, None]), {}, "\\[N\\]"),
            (([], []), {}, "no calibration"),
            ((np.where(CONF > 0.9, np.nan, CONF), TRUE), {}, "NaN"),
            ((CONF, TRUE), {"alpha": 1.0}, "alpha"),
            ((CONF, TRUE), {"delta": 0.0}, "delta"),
            ((CONF, TRUE), {"grid": []}, "grid"),
            ((CONF, TRUE), {"grid": [0.5, np.inf]}, "grid"),
        ]
        for args, kwargs, msg in bad:
            with self.subTest(msg=msg, kwargs=kwargs), self.assertRaisesRegex(ValueError, msg):
                calibrate_selective_threshold(*args, **kwargs)
        with self.assertRaisesRegex(ValueError, "tau"):
            calibrate_crc_threshold(CONF, TRUE, tau=math.nan)


# ---- the guarantees, on a population whose risk is known exactly -------------------------------------------------
# True Dice Q ~ Beta(10, 1.5) (20.6 % failures); confidence C = Q + N(0, SIGMA^2). Risks of a threshold λ by Gauss-Legendre quadrature
# over q of f_Q(q) * P(C >= λ | q) (200 nodes on each of [0, TAU] and [TAU, 1]: within ~1e-8 of scipy.integrate.quad).
BETA_A, BETA_B, SIGMA = 10.0, 1.5, 0.05
_X, _W = np.polynomial.legendre.leggauss(200)


def _integral(lam, lo, hi):
    q, w = (hi - lo) / 2 * _X + (hi + lo) / 2, (hi - lo) / 2 * _W
    dens = stats.beta.pdf(q, BETA_A, BETA_B) * w
    return (dens * special.ndtr((q - np.asarray(lam, dtype=np.float64)[:, None]) / SIGMA)).sum(axis=1)


def population_risks(lam):
    """``(joint P(C >= λ, Q < TAU), selective P(Q < TAU | C >= λ))`` for thresholds ``λ`` ``[L]``."""
    lam = np.asarray(lam, dtype=np.float64)
    finite = np.where(np.isfinite(lam), lam, 0.0)
    joint, ok = _integral(finite, 0.0, TAU), _integral(finite, TAU, 1.0)
    joint = np.where(lam == np.inf, 0.0, np.where(lam == -np.inf, stats.beta.cdf(TAU, BETA_A, BETA_B), joint))
    accepted = np.where(lam == np.inf, 0.0, np.where(lam == -np.inf, 1.0, joint + ok))
    return joint, np.divide(joint, accepted, out=np.zeros_like(joint), where=accepted > 0)


def draw(rng, splits, n):
    q = rng.beta(BETA_A, BETA_B, size=(splits, n))
    return q + rng.normal(0.0, SIGMA, size=q.shape), q


class TestGuarantee(unittest.TestCase):
    SPLITS = 600

    def test_population_risk_by_monte_carlo(self):
        c, q = draw(np.random.default_rng(0), 1, 400_000)
        joint, sel = population_risks([0.85])
        np.testing.assert_allclose(np.mean((c >= 0.85) & (q < TAU)), joint[0], atol=3e-3)
        np.testing.assert_allclose(np.mean(q[c >= 0.85] < TAU), sel[0], atol=3e-3)

    def test_selective(self):
        """P_cal(R(λ̂) <= alpha) >= 1 - delta; over S independent splits the success count is >= Binom(S, 1 - delta).

        Slack: fail only below the 1e-6 quantile of Binom(S, 1 - delta) (S = 600, delta = 0.1: 502 of 600, i.e.
        slack 0.063), so a correct method fails this test with probability < 1e-6 for any seed.
        """
        alpha, delta, n = 0.1, 0.1, 300
        c, q = draw(np.random.default_rng(1), self.SPLITS, n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            fits = [calibrate_selective_threshold(c[s], q[s], TAU, alpha, delta) for s in range(self.SPLITS)]
        lam = np.array([f.acceptance_threshold for f in fits])
        risk = population_risks(lam)[1]
        min_ok = stats.binom.ppf(1e-6, self.SPLITS, 1 - delta)
        self.assertGreaterEqual(np.sum(risk <= alpha), min_ok)
        self.assertGreater(np.mean([f.fraction_accepted for f in fits]), 0.25)  # not vacuous: accepts cases

        # the test has teeth: the plug-in threshold (empirical rate among accepted <= alpha, no bound) fails it
        grid = np.arange(100, -1, -1) / 100
        acc = c[:, :, None] >= grid
        n_acc = acc.sum(1)
        emp = np.divide((acc & (q < TAU)[:, :, None]).sum(1), n_acc, out=np.ones(n_acc.shape), where=n_acc > 0)
        plug_in = np.array([grid[np.flatnonzero(row <= alpha)[-1]] for row in emp])
        self.assertLess(np.sum(population_risks(plug_in)[1] <= alpha), min_ok)

    def test_crc(self):
        """E[P(C >= λ̂, Q < TAU)] <= alpha; exactly E[min(r, M)] / (n + 1), M ~ Binom(n + 1, P(Q < TAU)).

        Slack: 5 standard errors of the mean over splits (normal approximation).
        """
        alpha, n = 0.1, 150
        c, q = draw(np.random.default_rng(2), self.SPLITS, n)
        lam = np.array([calibrate_crc_threshold(c[s], q[s], TAU, alpha).acceptance_threshold for s in range(self.SPLITS)])
        joint = population_risks(lam)[0]
        slack = 5 * joint.std(ddof=1) / math.sqrt(self.SPLITS)
        r = math.floor(alpha * (n + 1))
        m = np.arange(n + 2)
        exact = np.sum(np.minimum(r, m) * stats.binom.pmf(m, n + 1, stats.beta.cdf(TAU, BETA_A, BETA_B))) / (n + 1)
        self.assertLessEqual(exact, alpha)
        self.assertLessEqual(joint.mean(), alpha + slack)
        self.assertLess(abs(joint.mean() - exact), slack)


if __name__ == "__main__":
    unittest.main()
