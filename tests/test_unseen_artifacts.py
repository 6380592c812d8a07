"""The leave-one-artifact-family-out benchmark's bookkeeping (benchmarks/unseen_artifacts.py), by hand: which cases
each head trains on, which head predicts which case, and the table's figures."""

from __future__ import annotations

import json
import tempfile
import unittest
import warnings
from pathlib import Path

import numpy as np
import torch

from benchmarks.unseen_artifacts import artifacts, head_plans, per_kind, pooled, rule_scores, summary
from segq_monai.metrics.regression import aurc

#: 10 out-of-fold cases, two of each family; ``c9`` is clean (severity 0)
TABLE = {f"c{i}.nii.gz": (("noise", "gibbs", "spikes", "contrast", "bias_field")[i % 5], 0.0 if i == 9 else 0.5)
         for i in range(10)}  # fmt: skip
NAMES = sorted(TABLE)


class TestPlans(unittest.TestCase):
    def test_artifacts_reads_every_section(self):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "data").mkdir()
            (Path(tmp) / "data" / "dataset.json").write_text(json.dumps({
                "numTraining": 1, "training": [{"image": "images/a.nii.gz", "artifact": "noise", "severity": 0.25}],
                "cross_subject": [{"image": "images/b.nii.gz", "artifact": "gibbs", "severity": 1}],
            }))  # fmt: skip
            self.assertEqual(artifacts(Path(tmp)), {"a.nii.gz": ("noise", 0.25), "b.nii.gz": ("gibbs", 1.0)})

    def test_who_trains_on_what(self):
        families = ("bias_field", "contrast", "gibbs", "noise", "spikes")
        plans = head_plans(NAMES, seed=3, table=TABLE, families=list(families))
        self.assertEqual(sorted(plans), sorted([("all", ""), *((c, f) for c in ("fewer", "unseen") for f in families)]))
        self.assertEqual([n for n in NAMES if plans[("all", "")](n)], NAMES)
        self.assertEqual([n for n in NAMES if not plans[("unseen", "gibbs")](n)], ["c1.nii.gz", "c6.nii.gz"])
        dropped = {f: [n for n in NAMES if not plans[("fewer", f)](n)] for f in families}
        self.assertEqual({len(d) for d in dropped.values()}, {2})  # as many as the family has
        self.assertGreater(len({tuple(d) for d in dropped.values()}), 1)  # a draw per family
        again = head_plans(NAMES, 3, TABLE, list(families))
        self.assertEqual(dropped, {f: [n for n in NAMES if not again[("fewer", f)](n)] for f in families})


class TestPooledAndSummary(unittest.TestCase):
    def records(self):
        """Seed 0: the ``all`` head predicts 0.9 everywhere; each ``fewer`` head 0.8; the head that left out family F
        predicts its cases' true Dice (0.1 * index) and -1 elsewhere; so pooled ``unseen`` is exact."""
        true = {n: 0.1 * int(n[1]) for n in NAMES}
        records = [{"condition": "all", "family": "", "seed": 0, "pred": {"test": {n: 0.9 for n in NAMES}}}]
        for f in {v[0] for v in TABLE.values()}:
            pred = {n: true[n] if TABLE[n][0] == f else -1.0 for n in NAMES}
            records.append({"condition": "unseen", "family": f, "seed": 0, "pred": {"test": pred}})
            records.append({"condition": "fewer", "family": f, "seed": 0, "pred": {"test": {n: 0.8 for n in NAMES}}})
        return records, true

    def test_each_case_from_the_head_that_left_out_its_family(self):
        records, true = self.records()
        out = pooled(records, "test", 0, TABLE, NAMES)
        np.testing.assert_allclose(out["unseen"], [true[n] for n in NAMES])
        np.testing.assert_allclose(out["all"], 0.9)
        np.testing.assert_allclose(out["fewer"], 0.8)

    def test_table_on_the_corrupted_cases(self):
        records, true = self.records()
        cases = [{"name": n, "pairwise_dice": torch.tensor([true[n]])} for n in NAMES]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the constant heads' correlations are undefined
            text = summary(records, {"test": (cases, np.array([true[n] for n in NAMES]))}, TABLE)
        rows = {line.split(" | ")[2]: line.strip("| ").split(" | ") for line in text.splitlines()[2:]}
        self.assertEqual(rows["unseen (1 seeds)"][1], "9")  # c9 is clean: left out
        self.assertEqual(rows["unseen (1 seeds)"][3:5], ["1.000", "0.000"])  # exact: Spearman 1, MAE 0
        # the all head: |0.9 - 0.1 i| over i = 0..8 = (0.9 + 0.8 + ... + 0.1 + 0) / 9 = 0.5
        self.assertEqual(rows["all (1 seeds)"][3:5], ["–", "0.500"])
        self.assertEqual(rows["pairwise_dice"][3], "1.000")
        self.assertEqual(rows["unseen (1 seeds)"][5], rows["pairwise_dice"][5])  # same order, same AURC

    def test_round3_scores_and_kinds(self):
        """The same predictions on the two choosing splits: the pooled ``unseen`` ranking is exact (Spearman 1, AURC
        the oracle's); within each kind the ``all`` head is constant (no Spearman, MAE |0.9 - true|)."""
        records, true = self.records()
        for r in records:
            r["pred"] = {"cross_subject": r["pred"]["test"], "shift": r["pred"]["test"]}
        cases = [{"name": n} for n in NAMES]
        values = np.array([true[n] for n in NAMES])
        splits = {"cross_subject": (cases, values), "shift": (cases, values)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the constant heads' correlations are undefined
            scores = rule_scores(records, splits, TABLE)
            kinds = per_kind(records, splits, TABLE)
        corrupted_true = values[:9]  # c9 is clean
        self.assertAlmostEqual(scores["spearman_mean"], 1.0)
        self.assertAlmostEqual(scores["aurc_mean"], float(aurc(corrupted_true, 1.0 - corrupted_true)))
        self.assertEqual((scores["spearman_sd"], scores["aurc_sd"]), (0.0, 0.0))  # one seed
        gibbs = next(line for line in kinds.splitlines() if line.startswith("| shift | gibbs |"))
        # gibbs: c1 (0.1) and c6 (0.6); the all head's MAE = (0.8 + 0.3) / 2 = 0.55; the unseen head is exact
        self.assertEqual(gibbs.strip("| ").split(" | ")[2:], ["2", "–", "1.000", "0.550", "0.000"])


if __name__ == "__main__":
    unittest.main()
