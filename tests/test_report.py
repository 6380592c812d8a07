from __future__ import annotations

import json
import math
import os
import tempfile
import unittest
import warnings
from unittest import mock

import numpy as np
import torch
from parameterized import parameterized
from scipy import stats
from sklearn import metrics as skm

from segq_monai.data.columns import (
    QualityColumn,
    class_columns,
    column_name,
    parse_column,
    quality_columns,
    read_quality_csv,
    write_quality_csv,
)
from segq_monai.evaluation.report import evaluate_quality, write_report
from segq_monai.evaluation.tables import comparison_table

THRESHOLD = 0.8


# ---- independent references -------------------------------------------------------------------------------------
def ref_aurc(confidence, risk):
    """Mean selective risk over coverages k/N (no ties in the synthetic data)."""
    order = np.argsort(-np.asarray(confidence))
    r = np.asarray(risk)[order]
    return float(np.mean(np.cumsum(r) / np.arange(1, len(r) + 1)))


def ref_block(score, true, mapped):
    return {
        "n": len(true),
        "mae": skm.mean_absolute_error(true, mapped),
        "rmse": float(np.sqrt(skm.mean_squared_error(true, mapped))),
        "r2": skm.r2_score(true, mapped),
        "pearson": stats.pearsonr(score, true)[0],
        "spearman": stats.spearmanr(score, true)[0],
        "auroc": skm.roc_auc_score(true < THRESHOLD, -score),
        "aurc": ref_aurc(score, 1 - true),
        "eaurc": ref_aurc(score, 1 - true) - ref_aurc(true, 1 - true),
    }


def synthetic(n, classes, seed):
    """Rows with true Dice spread over [0.4, 1], a noisy pred_dice and two baselines; also the arrays."""
    rng = np.random.default_rng(seed)
    true = rng.uniform(0.4, 0.99, size=(n, len(classes)))
    logit = np.log(true / (1 - true)) + rng.normal(0, 0.4, size=true.shape)
    pred = 1 / (1 + np.exp(-logit))  # in (0, 1) without ties (clipping would tie cases at 1)
    ent = -(1 - true.mean(1)) * 0.3 + rng.normal(0, 0.03, n)  # a negated entropy, nats
    pdice = true.mean(1) + rng.normal(0, 0.1, n)
    rows = []
    for i in range(n):
        row = {"image": f"case_{i:02d}.nii.gz"}
        for k, c in enumerate(classes):
            sfx = f"_{c}" if c else ""
            row[f"pred_dice{sfx}"] = pred[i, k]
            row[f"pred_iou{sfx}"] = pred[i, k] / (2 - pred[i, k])
            row[f"true_dice{sfx}"] = true[i, k]
            row[f"true_iou{sfx}"] = true[i, k] / (2 - true[i, k])
        row["flagged"] = int(np.any(pred[i] < THRESHOLD))
        row["baseline_mean_entropy"] = ent[i]
        row["baseline_pairwise_dice"] = pdice[i]
        rows.append(row)
    return rows, pred, true, {"mean_entropy": ent, "pairwise_dice": pdice}


def assert_block(tc, got, want):
    tc.assertEqual(got["n"], want["n"])
    for key in ("mae", "rmse", "r2", "pearson", "spearman", "auroc", "aurc", "eaurc"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-9, atol=1e-12, err_msg=key)


# ---- CSV ----------------------------------------------------------------------------------------------------------
class TestQualityCSV(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.tmp.name, "quality.csv")

    def tearDown(self):
        self.tmp.cleanup()

    def test_round_trip(self):
        rows = [
            {"image": "a/b 1.nii.gz", "pred_dice": 0.1 + 0.2, "true_dice": 1 / 3, "flagged": True, "n": 3},
            {"image": "c,d.nii.gz", "pred_dice": np.float32(0.7), "true_dice": torch.tensor(2 / 3), "flagged": False},
            {"image": "e.nii.gz", "pred_dice": float("nan"), "true_dice": None, "flagged": np.bool_(True)},
        ]
        write_quality_csv(self.path, rows)
        back = read_quality_csv(self.path)
        self.assertEqual(os.listdir(self.tmp.name), ["quality.csv"])
        self.assertEqual([r["image"] for r in back], ["a/b 1.nii.gz", "c,d.nii.gz", "e.nii.gz"])
        self.assertEqual(back[0]["pred_dice"], 0.1 + 0.2)  # bit-exact
        self.assertEqual(back[0]["true_dice"], 1 / 3)
        self.assertEqual(back[1]["pred_dice"], float(np.float32(0.7)))
        self.assertEqual(back[1]["true_dice"], float(torch.tensor(2 / 3)))
        self.assertTrue(math.isnan(back[2]["pred_dice"]))
        self.assertIsNone(back[2]["true_dice"])
        self.assertEqual([r["flagged"] for r in back], [1, 0, 1])
        self.assertEqual(back[0]["n"], 3)
        self.assertIsNone(back[1]["n"])

    def test_columns_order_and_selection(self):
        write_quality_csv(self.path, [{"b": 1, "a": 2.5, "image": "x"}], columns=["image", "a"])
        with open(self.path) as f:
            self.assertEqual(f.read(), "image,a\nx,2.5\n")

    def test_failing_write_keeps_earlier_file(self):
        write_quality_csv(self.path, [{"image": "x", "pred_dice": 0.5}])
        with open(self.path) as f:
            before = f.read()
        with self.assertRaises(ValueError):  # a value that is not one number
            write_quality_csv(self.path, [{"image": "y", "pred_dice": np.zeros(2)}])
        with mock.patch("segq_monai.evaluation.report.os.replace", side_effect=OSError("disk full")):
            with self.assertRaises(OSError):
                write_quality_csv(self.path, [{"image": "z", "pred_dice": 0.9}])
        with open(self.path) as f:
            self.assertEqual(f.read(), before)
        self.assertEqual(os.listdir(self.tmp.name), ["quality.csv"])  # no temporary file left

    def test_missing(self):
        with self.assertRaises(FileNotFoundError):
            read_quality_csv(os.path.join(self.tmp.name, "nope.csv"))
        with self.assertRaises(FileNotFoundError):
            write_quality_csv(os.path.join(self.tmp.name, "no_dir", "q.csv"), [{"a": 1}])


class TestQualityColumns(unittest.TestCase):
    @parameterized.expand(
        [
            ("binary", ["image", "pred_dice", "pred_iou", "true_dice", "flagged"], [""]),
            ("indices", ["pred_dice_1", "pred_iou_1", "pred_dice_2", "true_dice_1", "true_dice_2"], ["1", "2"]),
            ("names", ["pred_dice_left_lobe", "true_dice_left_lobe", "baseline_pairwise_dice"], ["left_lobe"]),
            ("none", ["image", "baseline_mean_entropy"], []),
            ("intervals", ["pred_dice", "pred_dice_lo", "pred_dice_hi", "true_dice"], [""]),
            ("class_intervals", ["pred_dice_lo_brain", "pred_dice_brain", "pred_dice_hi_brain", "true_dice_brain"],
             ["brain"]),
        ]
    )  # fmt: skip
    def test_classes(self, _, names, want):
        self.assertEqual(quality_columns([dict.fromkeys(names, 0.5)]), want)

    @parameterized.expand(
        [
            ("pred_dice", QualityColumn("pred_dice", "", "")),
            ("true_iou_2", QualityColumn("true_iou", "", "2")),
            ("pred_dice_lo", QualityColumn("pred_dice", "lo", "")),
            ("pred_dice_hi_left_lobe", QualityColumn("pred_dice", "hi", "left_lobe")),
            ("pred_dice_low", QualityColumn("pred_dice", "", "low")),
            ("baseline_mean_entropy", None),
            ("flagged", None),
        ]
    )
    def test_parse_column(self, name, want):
        self.assertEqual(parse_column(name), want)
        if want is not None:
            self.assertEqual(column_name(want.kind, want.cls, want.bound), name)

    def test_class_columns(self):
        self.assertEqual(class_columns("true_dice", [0.5], None), {"true_dice": 0.5})
        self.assertEqual(class_columns("pred_iou", [0.5, 0.25], None), {"pred_iou_1": 0.5, "pred_iou_2": 0.25})
        self.assertEqual(class_columns("pred_dice", [0.5], ["brain", "csf"][:1]), {"pred_dice": 0.5})
        for names in (["lo", "hi"], ["mean", "x"]):
            with self.assertRaisesRegex(ValueError, "reserved"):
                class_columns("pred_dice", [0.5, 0.6], names)
        with self.assertRaisesRegex(ValueError, "2 names but pred_dice has 3"):
            class_columns("pred_dice", [0.5, 0.6, 0.7], ["a", "b"])

    def test_mixed_raises(self):
        with self.assertRaises(ValueError):
            quality_columns([{"pred_dice": 1.0, "pred_dice_1": 1.0}])


# ---- evaluate_quality -----------------------------------------------------------------------------------------------
class TestEvaluateQuality(unittest.TestCase):
    @parameterized.expand([("binary", [""], 14), ("two_class", ["1", "2"], 16)])
    def test_against_references(self, _, classes, n):
        rows, pred, true, base = synthetic(n, classes, seed=3)
        cal_rows, _, cal_true, cal_base = synthetic(10, classes, seed=4)
        report = evaluate_quality(rows, tau=THRESHOLD, baseline_fit_rows=cal_rows)
        self.assertEqual(report["baseline_fit_split"], "held-out")
        self.assertEqual(report["n_baseline_fit"], 10)
        self.assertEqual(report["n_cases"], n)
        names = ["foreground"] if classes == [""] else classes
        self.assertEqual(report["classes"], names)
        targets = {c: (pred[:, k], true[:, k], cal_true[:, k]) for k, c in enumerate(names)}
        targets["mean"] = (pred.mean(1), true.mean(1), cal_true.mean(1))
        for c, (p, t, ct) in targets.items():
            got = report["quality_head"]["mean"] if c == "mean" else report["quality_head"]["per_class"][c]
            assert_block(self, got, ref_block(p, t, p))
            for name, score in base.items():
                slope, intercept = np.polyfit(cal_base[name], ct, 1)
                entry = report["baselines"][name]
                np.testing.assert_allclose(entry["baseline_fit"][c]["slope"], slope, rtol=1e-9)
                np.testing.assert_allclose(entry["baseline_fit"][c]["intercept"], intercept, rtol=1e-9)
                got = entry["mean"] if c == "mean" else entry["per_class"][c]
                assert_block(self, got, ref_block(score, t, slope * score + intercept))

    def test_in_sample_fit(self):
        rows, _, true, base = synthetic(12, [""], seed=5)
        report = evaluate_quality(rows, tau=THRESHOLD)
        self.assertEqual(report["baseline_fit_split"], "in-sample")
        slope, intercept = np.polyfit(base["pairwise_dice"], true[:, 0], 1)
        cal = report["baselines"]["pairwise_dice"]["baseline_fit"]["foreground"]
        np.testing.assert_allclose([cal["slope"], cal["intercept"]], [slope, intercept], rtol=1e-9)
        # in-sample OLS: R² equals the squared Pearson r
        block = report["baselines"]["pairwise_dice"]["mean"]
        np.testing.assert_allclose(block["r2"], block["pearson"] ** 2, rtol=1e-9)

    def test_baseline_fit_by_hand(self):
        # x = 0, 1, 2; y = 0.5, 0.6, 0.8: slope = sum(dx dy) / sum(dx^2) = 0.3 / 2, intercept = mean y - slope = 29/60
        rows = [{"true_dice": y, "baseline_b": x} for x, y in [(0.0, 0.5), (1.0, 0.6), (2.0, 0.8)]]
        fit = evaluate_quality(rows)["baselines"]["b"]["baseline_fit"]["foreground"]
        np.testing.assert_allclose([fit["slope"], fit["intercept"]], [0.15, 29 / 60], rtol=1e-12)
        constant = [dict(row, baseline_b=1.0) for row in rows]
        with self.assertWarnsRegex(UserWarning, "baseline fit of baseline_b.*constant score"):
            fit = evaluate_quality(constant)["baselines"]["b"]["baseline_fit"]["foreground"]
        self.assertTrue(math.isnan(fit["slope"]) and math.isnan(fit["intercept"]))

    def test_flag_counts_by_hand(self):
        # true failure = any class below 0.8; flagged as given
        table = [  # (true_dice_1, true_dice_2, flagged)
            (0.9, 0.9, 0),  # TN
            (0.9, 0.7, 1),  # TP
            (0.5, 0.95, 0),  # FN
            (0.85, 0.85, 1),  # FP
            (0.6, 0.6, 1),  # TP
            (0.81, 0.99, 0),  # TN
        ]
        rows = [
            {"true_dice_1": a, "true_dice_2": b, "pred_dice_1": a, "pred_dice_2": b, "flagged": f} for a, b, f in table
        ]
        flag = evaluate_quality(rows, tau=0.8)["flag"]
        self.assertEqual(
            flag,
            {
                "n": 6,
                "true_failures": 3,
                "true_positives": 2,
                "false_positives": 1,
                "false_negatives": 1,
                "true_negatives": 2,
                "fraction_flagged": 0.5,
            },
        )

    def test_string_cells_and_no_flag(self):
        rows = [{"true_dice": str(t), "pred_dice": str(p)} for t, p in [(0.9, 0.85), (0.5, 0.6), (0.7, 0.9)]]
        report = evaluate_quality(rows)
        self.assertIsNone(report["flag"])
        self.assertEqual(report["baselines"], {})
        np.testing.assert_allclose(report["quality_head"]["mean"]["mae"], (0.05 + 0.1 + 0.2) / 3)

    def test_bad_input(self):
        with self.assertRaises(ValueError):
            evaluate_quality([])
        with self.assertRaises(ValueError):
            evaluate_quality([{"pred_dice": 0.5}, {"pred_dice": 0.7}])
        rows, *_ = synthetic(5, [""], seed=0)
        with self.assertRaises(ValueError):
            evaluate_quality(rows, baseline_fit_rows=[{"true_dice": 0.5}])


# ---- report.json and the table --------------------------------------------------------------------------------------
def _raise_on_constant(name):
    raise AssertionError(f"report.json holds the non-JSON constant {name}")


class TestWriteReport(unittest.TestCase):
    def test_nan_written_as_null(self):
        # every true Dice above the threshold: no failures, so AUROC is undefined (NaN -> null)
        rows = [
            {"image": f"c{i}", "true_dice": t, "pred_dice": p, "flagged": 0, "baseline_mean_entropy": -0.1 * i}
            for i, (t, p) in enumerate([(0.9, 0.88), (0.95, 0.9), (0.85, 0.92), (0.99, 0.97)])
        ]
        with tempfile.TemporaryDirectory() as d, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = write_report(rows, d, tau=0.8)
            with open(os.path.join(d, "report.json")) as f:
                on_disk = json.loads(f.read(), parse_constant=_raise_on_constant)
            files = sorted(os.listdir(d))
        self.assertTrue(any("AUROC" in str(w.message) for w in caught))
        self.assertEqual(on_disk, report)
        self.assertIsNone(on_disk["quality_head"]["mean"]["auroc"])
        self.assertIsNone(on_disk["baselines"]["mean_entropy"]["mean"]["auroc"])
        self.assertIsNotNone(on_disk["quality_head"]["mean"]["mae"])
        self.assertEqual(on_disk["baseline_fit_split"], "in-sample")
        self.assertEqual(files, ["predicted_vs_true.png", "report.json", "risk_coverage.png"])
        self.assertEqual(on_disk["figures"], ["predicted_vs_true.png", "risk_coverage.png"])

    def test_comparison_table(self):
        rows, *_ = synthetic(12, ["1", "2"], seed=1)
        report_a = evaluate_quality(rows)
        rows_b = [dict(r, pred_dice_1=0.9, pred_dice_2=0.9) for r in rows]  # a constant head: Pearson undefined
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            report_b = evaluate_quality(rows_b)
        single = comparison_table(report_a)
        self.assertIn("| quality head | 12 |", single)
        self.assertIn("| mean_entropy |", single)
        both = comparison_table({"image+seg+uncertainty": report_a, "image": report_b})
        lines = [l for l in both.splitlines() if l.startswith("| ")]
        labels = [l.split("|")[1].strip() for l in lines[2:]]
        self.assertEqual(
            labels, ["quality head (image+seg+uncertainty)", "quality head (image)", "mean_entropy", "pairwise_dice"]
        )
        self.assertIn("–", lines[3])  # undefined Pearson of the constant head
        mae = report_a["quality_head"]["mean"]["mae"]
        self.assertIn(f"| {mae:.3f} |", lines[2])
        self.assertIn("| quality head | 12 |", comparison_table(report_a, summary="2"))
        with self.assertRaises(ValueError):
            comparison_table(report_a, summary="3")


# ---- guaranteed flag (alpha) ---------------------------------------------------------------------------------------
# Calibration: 40 cases with predicted Dice 0.95 (true 0.9, fine), 10 with 0.5 (true 0.6, failures); tau = 0.8,
# alpha = 0.2, delta = 0.1, default grid 0.00..1.00 (m = 101, Bonferroni level delta / m = 0.1 / 101 = 9.9e-4):
#   0.5 < λ <= 0.95: 40 accepted, 0 failures, p = 0.8^40 = 1.3e-4 <= 9.9e-4  -> rejected (certified)
#   λ <= 0.5: 50 accepted, 10 failures, p = P(Binom(50, 0.2) <= 10) = 0.58    -> not
#   λ > 0.95: nothing accepted, p = 1                                          -> not
#   -> λ = 0.51, calibration fraction 0.8, bound 1 - (0.1 / 101)^(1 / 40) = 0.1587.
# Evaluated (pred, true): (0.9, 0.85) accepted; (0.6, 0.7) accepted failure; (0.51, 0.9) accepted (>=);
#   (0.5, 0.3) and (0.3, 0.9) flagged -> 3 of 5 accepted, 1 failure among them: rate 1/3.
GF_CAL = [(0.95, 0.9)] * 40 + [(0.5, 0.6)] * 10
GF_EVAL = [(0.9, 0.85), (0.6, 0.7), (0.51, 0.9), (0.5, 0.3), (0.3, 0.9)]
GF_WANT = {
    "alpha": 0.2,
    "delta": 0.1,
    "acceptance_threshold": 0.51,
    "feasible": True,
    "n_calibration": 50,
    "calibration_fraction_accepted": 0.8,
    "calibration_bound": 1 - (0.1 / 101) ** (1 / 40),
    "n": 5,
    "n_accepted": 3,
    "fraction_accepted": 0.6,
    "failures_accepted": 1,
    "failure_rate_accepted": 1 / 3,
}


def gf_rows(pairs, classes):
    """Rows whose worst class has the given (pred, true); the other class (if any) is better by 0.05."""
    rows = []
    for p, t in pairs:
        row = {}
        for k, c in enumerate(classes):
            sfx = f"_{c}" if c else ""
            row[f"pred_dice{sfx}"], row[f"true_dice{sfx}"] = p + 0.05 * k, t + 0.05 * k
        rows.append(row)
    if len(classes) == 2:  # one case whose second class is the worst one: still accepted as a failure
        rows[1]["pred_dice_1"], rows[1]["true_dice_2"] = 0.99, rows[1]["true_dice_1"]
        rows[1]["true_dice_1"], rows[1]["pred_dice_2"] = 0.95, 0.6
    return rows


class TestGuaranteedFlag(unittest.TestCase):
    @parameterized.expand([("binary", [""]), ("two_class", ["1", "2"])])
    def test_by_hand(self, _, classes):
        report = evaluate_quality(
            gf_rows(GF_EVAL, classes), tau=0.8, calibration_rows=gf_rows(GF_CAL, classes), alpha=0.2, delta=0.1
        )
        got = report["guaranteed_flag"]
        self.assertEqual(list(got), list(GF_WANT))
        for key, want in GF_WANT.items():
            np.testing.assert_allclose(got[key], want, rtol=1e-12, err_msg=key)

    def test_baseline_by_hand(self):
        # baseline x = pred + 0.002; its line, fitted on other cases where true = 2 x - 0.5 exactly, maps it to
        # 2 pred - 0.496 (0.004 off the grid of λ, so rounding in the fit cannot move λ): calibration (1.404, 0.9)
        # x 40 and (0.504, 0.6) x 10 certify the same λ = 0.51 as above; evaluated mapped 1.304, 0.704, 0.524 accepted
        # (one failure), 0.504, 0.104 flagged: the same numbers as the head's.
        def with_x(rows):
            return [dict(r, baseline_x=r["pred_dice"] + 0.002) for r in rows]

        line_rows = [{"true_dice": 2 * x - 0.5, "baseline_x": x} for x in (0.3, 0.4, 0.6, 0.7)]
        report = evaluate_quality(
            with_x(gf_rows(GF_EVAL, [""])), baseline_fit_rows=line_rows, calibration_rows=with_x(gf_rows(GF_CAL, [""])),
            alpha=0.2, delta=0.1,
        )  # fmt: skip
        got = report["baselines"]["x"]["guaranteed_flag"]
        for key, want in GF_WANT.items():
            np.testing.assert_allclose(got[key], want, rtol=1e-12, err_msg=key)
        table = comparison_table(report).splitlines()
        self.assertIn("| accepted | failures among accepted |", table[0])
        self.assertTrue(table[2].startswith("| quality head | 5 |") and table[2].endswith("| 0.600 | 1/3 = 0.333 |"))
        self.assertTrue(table[3].startswith("| x | 5 |") and table[3].endswith("| 0.600 | 1/3 = 0.333 |"))
        self.assertIn("α = 0.2", table[-1])
        self.assertNotIn("| x |", comparison_table(report, baselines=False))

    def test_default_unchanged(self):
        rows, *_ = synthetic(12, [""], seed=6)
        cal, *_ = synthetic(10, [""], seed=7)
        base = evaluate_quality(rows, baseline_fit_rows=cal)
        self.assertNotIn("guaranteed_flag", base)
        self.assertNotIn("guaranteed_flag", evaluate_quality(rows, baseline_fit_rows=cal, alpha=None))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # 10 calibration cases certify nothing
            with_alpha = evaluate_quality(rows, baseline_fit_rows=cal, alpha=0.2, calibration_rows=cal)
        del with_alpha["guaranteed_flag"]
        for entry in with_alpha["baselines"].values():
            del entry["guaranteed_flag"]
        self.assertEqual(json.dumps(with_alpha, sort_keys=True), json.dumps(base, sort_keys=True))

    def test_infeasible_written_as_null(self):
        with tempfile.TemporaryDirectory() as d, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = write_report(
                gf_rows(GF_EVAL, [""]), d, calibration_rows=gf_rows(GF_CAL[:20], [""]), alpha=0.2, delta=0.1
            )
            with open(os.path.join(d, "report.json")) as f:
                on_disk = json.loads(f.read(), parse_constant=_raise_on_constant)
        self.assertTrue(any("accept nothing" in str(w.message) for w in caught))
        got = on_disk["guaranteed_flag"]
        self.assertEqual(got, report["guaranteed_flag"])
        self.assertIsNone(got["acceptance_threshold"])  # +inf: nothing certified, every case flagged
        self.assertIsNone(got["failure_rate_accepted"])  # no accepted case
        self.assertEqual((got["feasible"], got["n_accepted"], got["calibration_bound"]), (False, 0, 1.0))

    def test_bad_input(self):
        rows = gf_rows(GF_EVAL, [""])
        with self.assertRaisesRegex(ValueError, "calibration_rows"):
            evaluate_quality(rows, alpha=0.1)
        with self.assertRaisesRegex(ValueError, "calibration_rows"):  # the stage-2 tables are no calibration split
            evaluate_quality(rows, baseline_fit_rows=gf_rows(GF_CAL, [""]), alpha=0.1)
        cal = [{"true_dice": t, "baseline_x": p} for p, t in GF_CAL]
        with self.assertRaisesRegex(ValueError, "pred_dice"):
            evaluate_quality([dict(r, baseline_x=r["pred_dice"]) for r in rows], calibration_rows=cal, alpha=0.1)
        with self.assertRaisesRegex(ValueError, "baseline_x"):
            evaluate_quality([dict(r, baseline_x=r["pred_dice"]) for r in rows], calibration_rows=gf_rows(GF_CAL, [""]),
                             alpha=0.2)
        with self.assertRaisesRegex(ValueError, "alpha"):
            evaluate_quality(rows, calibration_rows=gf_rows(GF_CAL, [""]), alpha=1.5)

    def test_handler_checks_calibration_tables(self):
        from segq_monai.handlers import QualityReport

        with self.assertRaisesRegex(ValueError, "calibration_csvs"):
            QualityReport(writer=None, alpha=0.1).attach(None)
        with self.assertRaisesRegex(FileNotFoundError, "calibration_csvs"):
            QualityReport(writer=None, alpha=0.1, calibration_csvs=["/nonexistent/quality.csv"]).attach(None)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "quality.csv")
            write_quality_csv(path, [{"image": "a", "true_dice": 0.9, "baseline_x": 0.1}])
            with self.assertRaisesRegex(ValueError, "pred_dice"):
                QualityReport(writer=None, calibration_csvs=[path], alpha=0.1).attach(None)


if __name__ == "__main__":
    unittest.main()
