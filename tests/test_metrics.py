from __future__ import annotations

import itertools
import unittest
import warnings

import numpy as np
import torch
from parameterized import parameterized
from scipy import stats
from sklearn import metrics as skm

from segq_monai.metrics import (
    AURCMetric,
    FailureAUROCMetric,
    QualityRegressionMetric,
    aurc,
    excess_aurc,
    failure_auroc,
    mean_absolute_error,
    pearson_correlation,
    r2_score,
    risk_coverage_curve,
    root_mean_squared_error,
    spearman_correlation,
)


# ---- independent references, one column at a time -------------------------------------------------------------
def ref_mae(p, t):
    return skm.mean_absolute_error(t, p)


def ref_rmse(p, t):
    return float(np.sqrt(skm.mean_squared_error(t, p)))


def ref_pearson(p, t):
    return stats.pearsonr(p, t)[0]


def ref_spearman(p, t):
    return stats.spearmanr(p, t)[0]


def ref_r2(p, t):
    return skm.r2_score(y_true=t, y_pred=p)


def ref_auroc(c, q, threshold=0.8):
    return skm.roc_auc_score((q < threshold).astype(int), -c)


def ref_aurc(c, r):
    """Plain loop, valid without ties: accept cases most confident first, average the running mean risk."""
    order = np.argsort(-c)
    return np.mean([r[order[:k]].mean() for k in range(1, len(c) + 1)])


def ref_aurc_ties(c, r):
    """Mean AURC over every order of the tied cases (brute force), the expected value the library must return."""
    values = []
    for perm in itertools.permutations(range(len(c))):
        perm = np.array(perm)
        order = perm[np.argsort(-c[perm], kind="stable")]  # ties broken by the permutation
        values.append(np.mean([r[order[:k]].mean() for k in range(1, len(c) + 1)]))
    return np.mean(values)


FUNCTIONS = {
    "mae": (mean_absolute_error, ref_mae),
    "rmse": (root_mean_squared_error, ref_rmse),
    "pearson": (pearson_correlation, ref_pearson),
    "spearman": (spearman_correlation, ref_spearman),
    "r2": (r2_score, ref_r2),
    "auroc": (failure_auroc, ref_auroc),
}


def random_pair(seed, n, k, decimals=None):
    rng = np.random.default_rng(seed)
    shape = (n,) if k is None else (n, k)
    true = rng.uniform(0.3, 1.0, shape)
    pred = true + rng.normal(0, 0.15, shape)  # not clipped: no ties unless rounded
    if decimals is not None:  # rounding creates ties
        pred, true = np.round(pred, decimals), np.round(true, decimals)
    return pred, true


# name, seed, N, K (None: [N] input), decimals (None: no ties)
RANDOM_CASES = [
    (f"{name}_{seed}_{n}_{k}_{dec}", name, seed, n, k, dec)
    for name in FUNCTIONS
    for seed, n, k, dec in [(0, 30, None, None), (1, 50, 3, None), (2, 40, None, 1), (3, 25, 2, 1)]
]

# hand-computed values, arithmetic in the comments
HAND_CASES = [
    # |0.1| + |0.1| + 0 = 0.2, / 3
    ("mae", [0.9, 0.5, 0.7], [1.0, 0.4, 0.7], 0.2 / 3),
    # sqrt((0.01 + 0.01 + 0) / 3)
    ("rmse", [0.9, 0.5, 0.7], [1.0, 0.4, 0.7], np.sqrt(0.02 / 3)),
    # dp = [-1, 0, 1], dt = [-7/3, -1/3, 8/3]; dp.dt = 5, |dp|^2 = 2, |dt|^2 = 114/9 -> 5 / sqrt(228/9)
    ("pearson", [1.0, 2.0, 3.0], [2.0, 4.0, 7.0], 15 / np.sqrt(228)),
    # ranks p = [1, 2.5, 2.5, 4], t = [1, 3, 2, 4]; centred dot 4.5, |dp|^2 = 4.5, |dt|^2 = 5 -> sqrt(0.9)
    ("spearman", [1.0, 2.0, 2.0, 3.0], [1.0, 3.0, 2.0, 4.0], np.sqrt(0.9)),
    # mean(t) = 0.5, SS_tot = 0.5, SS_res = 0.25 -> 1 - 0.5
    ("r2", [0.5, 0.5, 1.0], [0.0, 0.5, 1.0], 0.5),
    # constant pred is fine for R2: SS_res = 0.25 + 0 + 0.25 = SS_tot -> 0
    ("r2", [0.5, 0.5, 0.5], [0.0, 0.5, 1.0], 0.0),
    # failures (q < 0.8): idx 1 (c .6), 3 (c .3); non-failures idx 0 (c .9), 2 (c .6)
    # pairs: (.6<.9)=1, (.6==.6)=.5, (.3<.9)=1, (.3<.6)=1 -> 3.5 / 4
    ("auroc", [0.9, 0.6, 0.6, 0.3], [0.95, 0.7, 0.85, 0.5], 0.875),
    # q == threshold is not a failure: failure idx 2 only; 0.5 < 0.9, 0.5 < 0.7 -> 1
    ("auroc", [0.9, 0.7, 0.5], [0.8, 0.9, 0.1], 1.0),
    # confidence says the failure (idx 0) is the safest -> 0
    ("auroc", [0.9, 0.7, 0.5], [0.1, 0.9, 0.85], 0.0),
]

UNDEFINED_CASES = [
    # name, pred/confidence, true, words expected in the warning
    ("pearson", [0.5, 0.5, 0.5], [0.1, 0.2, 0.3], "`pred` is constant"),
    ("pearson", [0.1, 0.2, 0.3], [0.7, 0.7, 0.7], "`true` is constant"),
    ("pearson", [0.1], [0.2], "fewer than two cases"),
    ("spearman", [0.5, 0.5, 0.5], [0.1, 0.2, 0.3], "`pred` is constant"),
    ("spearman", [0.1, 0.2, 0.3], [0.7, 0.7, 0.7], "`true` is constant"),
    ("spearman", [0.1], [0.2], "fewer than two cases"),
    ("r2", [0.1, 0.2, 0.3], [0.7, 0.7, 0.7], "`true` is constant"),
    ("r2", [0.1], [0.2], "fewer than two cases"),
    ("auroc", [0.1, 0.2, 0.3], [0.9, 0.95, 0.8], "no failures"),
    ("auroc", [0.1, 0.2, 0.3], [0.1, 0.5, 0.79], "only failures"),
    ("auroc", [0.1], [0.2], "fewer than two cases"),
]

ALL_PUBLIC = [mean_absolute_error, root_mean_squared_error, pearson_correlation, spearman_correlation, r2_score]
ALL_PUBLIC += [failure_auroc, aurc, excess_aurc, risk_coverage_curve]

MALFORMED_CASES = [
    (f"{fn.__name__}_{why}", fn, a, b, match)
    for fn in ALL_PUBLIC
    for why, a, b, match in [
        ("shape", np.zeros(3), np.zeros(4), "same shape"),
        ("nan", np.array([0.1, np.nan, 0.3]), np.array([0.1, 0.2, 0.3]), "NaN"),
        ("nan_true", np.array([0.1, 0.2, 0.3]), np.array([0.1, 0.2, np.nan]), "NaN"),
        ("empty", np.zeros(0), np.zeros(0), "no values"),
        ("3d", np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), r"\[N\] or \[N, K\]"),
    ]
]


def as_array(value):
    return np.atleast_1d(value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value))


class TestFunctionsAgainstReferences(unittest.TestCase):
    @parameterized.expand(RANDOM_CASES)
    def test_random(self, _, name, seed, n, k, decimals):
        fn, ref = FUNCTIONS[name]
        pred, true = random_pair(seed, n, k, decimals)
        result = fn(torch.as_tensor(pred), torch.as_tensor(true))
        if k is None:
            self.assertIsInstance(result, float)
            expected = ref(pred, true)
        else:
            self.assertEqual(tuple(result.shape), (k,))
            expected = [ref(pred[:, j], true[:, j]) for j in range(k)]
        np.testing.assert_allclose(as_array(result), np.atleast_1d(expected), rtol=1e-10, atol=1e-12)

    @parameterized.expand(HAND_CASES)
    def test_hand_computed(self, name, pred, true, expected):
        fn, ref = FUNCTIONS[name]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a defined value must not warn
            result = fn(pred, true)
        np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(result, ref(np.array(pred), np.array(true)), rtol=1e-12, atol=1e-12)

    @parameterized.expand(UNDEFINED_CASES)
    def test_undefined_is_nan_with_warning(self, name, pred, true, cause):
        fn, _ = FUNCTIONS[name]
        with self.assertWarnsRegex(UserWarning, cause):
            result = fn(pred, true)
        self.assertIsInstance(result, float)
        self.assertTrue(np.isnan(result))

    def test_multiclass_undefined_class_named(self):
        pred = np.array([[0.1, 0.5], [0.2, 0.5], [0.4, 0.5]])
        true = np.array([[0.2, 0.1], [0.1, 0.2], [0.5, 0.3]])
        with self.assertWarnsRegex(UserWarning, "class 1: `pred` is constant"):
            result = pearson_correlation(pred, true)
        self.assertEqual(result.dtype, torch.float64)
        np.testing.assert_allclose(result[0], stats.pearsonr(pred[:, 0], true[:, 0])[0])
        self.assertTrue(torch.isnan(result[1]))

    def test_auroc_threshold(self):
        conf, quality = np.array([0.2, 0.4, 0.6, 0.8]), np.array([0.3, 0.9, 0.5, 0.95])
        for threshold in (0.4, 0.6, 0.92):
            np.testing.assert_allclose(
                failure_auroc(conf, quality, tau=threshold), ref_auroc(conf, quality, threshold)
            )

    @parameterized.expand(MALFORMED_CASES)
    def test_malformed_raises(self, _, fn, a, b, match):
        with self.assertRaisesRegex(ValueError, match):
            fn(a, b)


# confidence, risk, AURC, e-AURC, selective risks
AURC_CASES = [
    # no ties. selective risk: k=1: 0/1 = 0; k=2: (0+.4)/2 = .2; k=3: (.6)/3 = .2; k=4: 1.2/4 = .3
    # AURC = (0 + .2 + .2 + .3) / 4 = .175
    # optimal order of risks [0, .2, .4, .6]: 0, .1, .2, .3 -> .6 / 4 = .15; e-AURC = .175 - .15 = .025
    ([0.9, 0.8, 0.7, 0.6], [0.0, 0.4, 0.2, 0.6], 0.175, 0.025, [0.0, 0.2, 0.2, 0.3]),
    # tie between cases 1 and 2 (confidence .5): both carry their mean risk (1 + 0) / 2 = .5
    # shared risks in order [0, .5, .5, 1]: running means 0/1, .5/2, 1/3, 2/4
    # -> AURC = (0 + 1/4 + 1/3 + 1/2) / 4 = 13/48
    # optimal: risks [0, 0, 1, 1]: 0, 0, 1/3, 2/4 -> 5/6 / 4 = 10/48; e-AURC = 3/48
    ([0.9, 0.5, 0.5, 0.1], [0.0, 1.0, 0.0, 1.0], 13 / 48, 3 / 48, [0.0, 0.25, 1 / 3, 0.5]),
    # same cases, tied pair given in the other order: same answer
    ([0.9, 0.5, 0.5, 0.1], [0.0, 0.0, 1.0, 1.0], 13 / 48, 3 / 48, [0.0, 0.25, 1 / 3, 0.5]),
    # all tied: every k gets the overall mean risk .5; optimal [0, 1]: 0, .5 -> .25
    ([0.3, 0.3], [1.0, 0.0], 0.5, 0.25, [0.5, 0.5]),
    # one case
    ([0.7], [0.4], 0.4, 0.0, [0.4]),
]


class TestRiskCoverage(unittest.TestCase):
    @parameterized.expand(AURC_CASES)
    def test_hand_computed(self, confidence, risk, expected_aurc, expected_eaurc, expected_curve):
        fraction_accepted, selective = risk_coverage_curve(confidence, risk)
        n = len(confidence)
        np.testing.assert_allclose(fraction_accepted, np.arange(1, n + 1) / n)
        np.testing.assert_allclose(selective, expected_curve, atol=1e-12)
        np.testing.assert_allclose(aurc(confidence, risk), expected_aurc, atol=1e-12)
        np.testing.assert_allclose(excess_aurc(confidence, risk), expected_eaurc, atol=1e-12)

    @parameterized.expand([(0, None), (1, 3)])
    def test_random_against_loop(self, seed, k):
        pred, true = random_pair(seed, 40, k)
        risk = 1 - true
        result = as_array(aurc(pred, risk))
        cols = [(pred, risk)] if k is None else [(pred[:, j], risk[:, j]) for j in range(k)]
        np.testing.assert_allclose(result, [ref_aurc(c, r) for c, r in cols], rtol=1e-12)
        _, curve = risk_coverage_curve(pred, risk)
        self.assertEqual(curve.shape, pred.shape)

    @parameterized.expand([(seed,) for seed in range(5)])
    def test_ties_are_expected_over_orders(self, seed):
        rng = np.random.default_rng(seed)
        confidence = rng.integers(0, 3, 7).astype(float)  # 7 cases, 3 distinct confidences: many ties
        risk = rng.uniform(0, 1, 7)
        np.testing.assert_allclose(aurc(confidence, risk), ref_aurc_ties(confidence, risk), rtol=1e-12)
        perm = rng.permutation(7)
        np.testing.assert_allclose(aurc(confidence[perm], risk[perm]), aurc(confidence, risk), rtol=1e-12)

    @parameterized.expand([(seed,) for seed in range(4)])
    def test_excess_optimal_is_zero_and_nonnegative(self, seed):
        pred, true = random_pair(seed, 30, 2, decimals=1)
        risk = 1 - true
        np.testing.assert_allclose(excess_aurc(-risk, risk), [0.0, 0.0], atol=1e-12)
        np.testing.assert_allclose(excess_aurc(true, risk), [0.0, 0.0], atol=1e-12)  # confidence = true Dice
        self.assertTrue(torch.all(excess_aurc(pred, risk) >= -1e-12))


class TestMetricClasses(unittest.TestCase):
    def setUp(self):
        self.pred, self.true = random_pair(7, 24, 3)

    def _feed(self, metric, pred=None, true=None):
        pred = self.pred if pred is None else pred
        true = self.true if true is None else true
        for start in range(0, len(pred), 8):  # three iterations of B = 8
            metric(y_pred=torch.as_tensor(pred[start : start + 8]), y=torch.as_tensor(true[start : start + 8]))
        return metric.aggregate()

    @parameterized.expand([(name,) for name in ("mae", "rmse", "pearson", "spearman", "r2")])
    def test_regression(self, name):
        fn, ref = FUNCTIONS[name]
        expected = [ref(self.pred[:, j], self.true[:, j]) for j in range(3)]
        per_class = self._feed(QualityRegressionMetric(metric_name=name, reduction="none"))
        np.testing.assert_allclose(per_class, expected, rtol=1e-10)
        mean = self._feed(QualityRegressionMetric(metric_name=name))
        self.assertEqual(mean.ndim, 0)
        np.testing.assert_allclose(mean.item(), np.mean(expected), rtol=1e-10)

    def test_auroc_and_aurc(self):
        auroc = self._feed(FailureAUROCMetric(tau=0.7, reduction="none"))
        np.testing.assert_allclose(auroc, [ref_auroc(self.pred[:, j], self.true[:, j], 0.7) for j in range(3)])
        risk = 1 - self.true
        got = self._feed(AURCMetric(reduction="none"))
        np.testing.assert_allclose(got, [ref_aurc(self.pred[:, j], risk[:, j]) for j in range(3)], rtol=1e-10)
        np.testing.assert_allclose(self._feed(AURCMetric(excess=True)), excess_aurc(self.pred, risk).mean())

    def test_list_input_and_1d_batches(self):
        metric = QualityRegressionMetric("mae")
        metric(y_pred=[torch.tensor([0.5]), torch.tensor([0.9])], y=[torch.tensor([1.0]), torch.tensor([0.8])])
        metric(y_pred=torch.tensor([0.2]), y=torch.tensor([0.2]))  # [B] taken as [B, 1]
        np.testing.assert_allclose(metric.aggregate().item(), (0.5 + 0.1 + 0.0) / 3)

    def test_mean_ignores_nan_class(self):
        pred = self.pred.copy()
        pred[:, 1] = 0.5  # constant: Pearson undefined for class 1
        with self.assertWarnsRegex(UserWarning, "class 1"):
            mean = self._feed(QualityRegressionMetric("pearson"), pred=pred)
        expected = np.mean([ref_pearson(pred[:, j], self.true[:, j]) for j in (0, 2)])
        np.testing.assert_allclose(mean.item(), expected, rtol=1e-10)

    def test_mean_all_nan_warns(self):
        metric = FailureAUROCMetric(tau=0.1)  # no case below 0.1: no failures in any class
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = self._feed(metric)
        self.assertTrue(torch.isnan(result))
        messages = " ".join(str(w.message) for w in caught)
        self.assertIn("no failures", messages)
        self.assertIn("every class is NaN", messages)

    @parameterized.expand(
        [
            ("name", lambda: QualityRegressionMetric(metric_name="mse"), "metric_name"),
            ("reduction", lambda: AURCMetric(reduction="sum"), "reduction"),
        ]
    )
    def test_bad_config(self, _, build, match):
        with self.assertRaisesRegex(ValueError, match):
            build()

    def test_bad_batches(self):
        metric = AURCMetric()
        with self.assertRaisesRegex(ValueError, "no cases"):
            metric.aggregate()
        with self.assertRaisesRegex(ValueError, "same shape"):
            metric(y_pred=torch.zeros(4, 2), y=torch.zeros(4, 3))
        with self.assertRaisesRegex(ValueError, r"\[B, K\]"):
            metric(y_pred=torch.zeros(4, 2, 2), y=torch.zeros(4, 2, 2))
        metric(y_pred=torch.tensor([[0.5], [float("nan")]]), y=torch.ones(2, 1))
        with self.assertRaisesRegex(ValueError, "NaN"):
            metric.aggregate()

    def test_reset(self):
        metric = QualityRegressionMetric("mae")
        metric(y_pred=torch.zeros(2, 1), y=torch.ones(2, 1))
        metric.reset()
        metric(y_pred=torch.zeros(2, 1), y=torch.full((2, 1), 0.25))
        np.testing.assert_allclose(metric.aggregate().item(), 0.25)


if __name__ == "__main__":
    unittest.main()
