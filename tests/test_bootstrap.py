"""The bootstrap (segq_monai.evaluation.bootstrap): whole groups are resampled, intervals on known answers."""

from __future__ import annotations

import json
import math
import tempfile
import unittest
from pathlib import Path

import numpy as np

from segq_monai.evaluation.bootstrap import (
    bootstrap_interval,
    grouped_resamples,
    percentile_interval,
    report_intervals,
    write_intervals,
)
from segq_monai.evaluation.report import evaluate_quality


class TestGroupedResamples(unittest.TestCase):
    def test_whole_groups_only(self):
        # group "a" has 1 case, "b" 3 cases: a resample is (a, a), (a, b), (b, a) or (b, b), so the mean of the
        # values 0 (a) and 1 (b) takes only the values 0, 3/4 and 1; resampling cases would give 1/4 and 1/2 too
        values = np.array([0.0, 1.0, 1.0, 1.0])
        resamples = grouped_resamples(["a", "b", "b", "b"], n_resamples=400, seed=1)
        means = {round(float(values[i].mean()), 6) for i in resamples}
        self.assertEqual(means, {0.0, 0.75, 1.0})
        for idx in resamples:
            self.assertEqual(int(np.sum(idx > 0)) % 3, 0)  # b's three copies always travel together
            self.assertEqual(len(set(idx[idx > 0].tolist())), int(np.sum(idx > 0) > 0) * 3)

    def test_frequencies(self):
        # two groups of equal size: the resampled mean is 0, 1/2 or 1 with probability 1/4, 1/2, 1/4
        values = np.array([0.0, 0.0, 1.0, 1.0])
        means = np.array([values[i].mean() for i in grouped_resamples([0, 0, 1, 1], n_resamples=4000, seed=0)])
        np.testing.assert_allclose([np.mean(means == v) for v in (0.0, 0.5, 1.0)], [0.25, 0.5, 0.25], atol=0.03)
        self.assertEqual(percentile_interval(means, 0.95), (0.0, 1.0))  # P(0) = 1/4 > 2.5 %

    def test_reproducible_and_bad_input(self):
        a = grouped_resamples(list("xxyz"), 5, seed=3)
        b = grouped_resamples(list("xxyz"), 5, seed=3)
        self.assertTrue(all(np.array_equal(x, y) for x, y in zip(a, b)))
        with self.assertRaises(ValueError):
            grouped_resamples([], 10)

    def test_percentile_interval(self):
        np.testing.assert_allclose(percentile_interval(np.arange(101.0), 0.9), (5.0, 95.0))
        self.assertTrue(all(math.isnan(v) for v in percentile_interval([float("nan")])))


class TestBootstrapInterval(unittest.TestCase):
    def test_mean_interval_matches_normal_theory(self):
        """Over cases (no groups), the interval of a mean is the normal one: +- 1.96 sd / sqrt(n)."""
        rng = np.random.default_rng(1)
        x = rng.normal(0.0, 1.0, 400)
        value, low, high = bootstrap_interval(lambda p, t: float(np.mean(p - t)), x, np.zeros_like(x),
                                              n_resamples=4000)  # fmt: skip
        half = 1.96 * x.std() / np.sqrt(len(x))
        self.assertAlmostEqual(value, x.mean())
        self.assertAlmostEqual(high - value, half, delta=0.12 * half)
        self.assertAlmostEqual(value - low, half, delta=0.12 * half)

    def test_groups_travel_together(self):
        """Values 0 (group a, 1 case) and 1 (group b, 3 cases): a grouped resample's mean is 0, 3/4 or 1 with
        probability 1/4, 1/2, 1/4, so the 95 % interval is [0, 1]; over cases it is narrower."""
        pred = np.array([0.0, 1.0, 1.0, 1.0])

        def mean(p, t):
            return float(np.mean(p))

        self.assertEqual(bootstrap_interval(mean, pred, pred, groups=list("abbb"), n_resamples=2000), (0.75, 0.0, 1.0))
        _, low, _ = bootstrap_interval(mean, pred, pred, n_resamples=2000)
        self.assertGreater(low, 0.0)  # resampling cases: P(mean = 0) = (1/4)^4 < 2.5 %

    def test_undefined_statistic(self):
        """Resamples where the statistic is NaN are left out; NaN only when none gives a value."""
        pred, true = np.array([0.5, 0.5, 0.5]), np.array([0.1, 0.2, 0.3])
        value, low, high = bootstrap_interval(lambda p, t: float("nan"), pred, true, n_resamples=100)
        self.assertTrue(np.isnan(value) and np.isnan(low) and np.isnan(high))

        def first(p, t):  # defined when the resample starts with case 0
            return float(p[0]) if t[0] == 0.1 else float("nan")

        self.assertEqual(bootstrap_interval(first, pred, true, n_resamples=100), (0.5, 0.5, 0.5))


class TestReportIntervals(unittest.TestCase):
    def rows(self):
        # 6 slices x 2 identical copies; the head predicts true + 0.05 on slices 0-2 and true - 0.05 on 3-5
        true = np.repeat([0.2, 0.5, 0.7, 0.85, 0.9, 0.95], 2)
        pred = true + np.repeat([0.05, 0.05, 0.05, -0.05, -0.05, -0.05], 2)
        score = -np.repeat([3.0, 2.0, 2.5, 1.0, 0.5, 0.2], 2)
        return [{"image": f"c{i}", "pred_dice": p, "true_dice": t, "baseline_mean_entropy": s}
                for i, (p, t, s) in enumerate(zip(pred, true, score))], [f"s{i // 2}" for i in range(12)]  # fmt: skip

    def test_intervals_contain_the_point_and_exact_mae(self):
        rows, groups = self.rows()
        report = evaluate_quality(rows, tau=0.8)
        out = report_intervals(rows, report, groups, n_resamples=300, seed=0)
        self.assertEqual((out["n_groups"], out["n_resamples"], out["level"]), (6, 300, 0.95))
        head = out["methods"]["quality_head"]
        np.testing.assert_allclose(head["mae"], [0.05, 0.05], atol=1e-12)  # every case is off by 0.05: no spread
        for method, block in (("quality_head", report["quality_head"]["mean"]),
                              ("mean_entropy", report["baselines"]["mean_entropy"]["mean"])):  # fmt: skip
            for key in ("pearson", "spearman", "aurc"):
                lo, hi = out["methods"][method][key]
                self.assertLessEqual(lo, block[key] + 1e-12, (method, key))
                self.assertGreaterEqual(hi, block[key] - 1e-12, (method, key))
        with tempfile.TemporaryDirectory() as tmp:
            write_intervals(out, Path(tmp) / "bootstrap.json")
            written = json.loads((Path(tmp) / "bootstrap.json").read_text())
        self.assertEqual(written["methods"]["quality_head"]["mae"], head["mae"])

    def test_against_head_is_paired(self):
        """With the head at the oracle (pred = true), a baseline's AURC minus the head's is, resample by resample, its
        e-AURC (AURC minus the oracle's AURC, by definition): the paired interval equals its e-AURC interval, and lies
        at or above 0. A baseline that orders the cases as the head does is level on every resample: [0, 0]."""
        rows, groups = self.rows()
        for row in rows:
            row["pred_dice"] = row["true_dice"]
            row["baseline_pairwise_dice"] = 2.0 * row["true_dice"] - 1.0  # any increasing map of the true Dice
        out = report_intervals(rows, evaluate_quality(rows, tau=0.8), groups, n_resamples=200, seed=1)
        self.assertEqual(set(out["against_head"]), {"mean_entropy", "pairwise_dice"})
        entropy = out["against_head"]["mean_entropy"]["aurc"]
        np.testing.assert_allclose(entropy, out["methods"]["mean_entropy"]["eaurc"], atol=1e-12)
        self.assertGreater(entropy[1], 0.0)
        self.assertGreaterEqual(entropy[0], -1e-12)
        np.testing.assert_allclose(out["against_head"]["pairwise_dice"]["aurc"], [0.0, 0.0], atol=1e-12)

    def test_baseline_without_a_map_onto_dice(self):
        """A baseline whose line onto Dice is undefined (constant on the fitting cases: pairwise Dice at T = 1) has
        no MAE interval; its rank metrics keep theirs."""
        rows, groups = self.rows()
        report = evaluate_quality(rows, tau=0.8)
        report["baselines"]["mean_entropy"]["baseline_fit"]["mean"] = {"slope": None, "intercept": None}
        block = report_intervals(rows, report, groups, n_resamples=50, seed=0)["methods"]["mean_entropy"]
        self.assertTrue(np.isnan(block["mae"]).all())
        self.assertTrue(np.isfinite(block["spearman"]).all())

    def test_groups_must_match_rows(self):
        rows, groups = self.rows()
        with self.assertRaises(ValueError):
            report_intervals(rows, evaluate_quality(rows), groups[:-1])


if __name__ == "__main__":
    unittest.main()
