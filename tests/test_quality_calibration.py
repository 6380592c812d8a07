"""The site calibration file, the recalibrating transform, the calibrated columns and the drift check."""

from __future__ import annotations

import json
import math
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine
from segq_testing import isotonic_reference

from segq_monai.data.columns import (
    ITEM_KINDS,
    class_columns,
    class_suffixes,
    column_name,
    parse_column,
    quality_columns,
    read_quality_csv,
    write_quality_csv,
)
from segq_monai.calibration.calibration_file import QualityCalibration, head_fingerprint, load_quality_calibration
from segq_monai.calibration.quality_calibration import calibrate_quality_csvs, calibrate_quality_table, interval_scores
from segq_monai.handlers import CalibrationReport, QualityReport
from segq_monai.calibration.drift import distribution_shift
from segq_monai.calibration.recalibration import split_calibration
from segq_monai.transforms import RecalibrateQualityd


def site_rows(n: int, classes=("",), seed: int = 0, bias: float = 0.14) -> list[dict]:
    """A head that ranks right but under-predicts by ``bias`` at this site; negated mean entropy as a baseline."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        row = {"image": f"case{i}.nii.gz"}
        for c in classes:
            sfx = f"_{c}" if c else ""
            true = rng.uniform(0.3, 1.0)
            row[f"pred_dice{sfx}"] = float(np.clip(true - bias + rng.normal(0, 0.04), 0, 1))
            row[f"true_dice{sfx}"] = true
        row["baseline_mean_entropy"] = -rng.uniform(0.05, 0.1)
        rows.append(row)
    return rows


class TestColumns(unittest.TestCase):
    def test_calibrated_columns_are_not_classes(self):
        binary = [{"image": "a", "pred_dice": 0.8, "pred_dice_raw": 0.7, "pred_dice_lo": 0.6, "pred_dice_hi": 0.9,
                   "true_dice": 0.85}]  # fmt: skip
        self.assertEqual(quality_columns(binary), [""])
        multi = [{"pred_dice_brain": 0.8, "pred_dice_raw_brain": 0.7, "pred_dice_lo_brain": 0.6,
                  "pred_dice_hi_brain": 0.9, "pred_dice_csf": 0.5, "pred_dice_lo_csf": 0.4}]  # fmt: skip
        self.assertEqual(quality_columns(multi), ["brain", "csf"])

    def test_raw_and_interval_columns_parse(self):
        for name, parts in (
            ("pred_dice_raw", ("pred_dice", "raw", "")),
            ("pred_dice_raw_brain", ("pred_dice", "raw", "brain")),
            ("pred_dice_hi_2", ("pred_dice", "hi", "2")),
        ):
            self.assertEqual(tuple(parse_column(name)), parts)
            self.assertEqual(column_name(parts[0], parts[2], parts[1]), name)
        # what the writer makes of a case's calibrated keys (ITEM_KINDS), binary and per class
        self.assertEqual(class_columns("pred_dice", [0.7], None, "raw"), {"pred_dice_raw": 0.7})
        self.assertEqual(
            class_columns("pred_dice", [0.1, 0.2], ["a", "b"], "lo"), {"pred_dice_lo_a": 0.1, "pred_dice_lo_b": 0.2}
        )
        self.assertEqual(ITEM_KINDS["pred_dice_hi"], ("pred_dice", "hi"))

    def test_class_suffixes(self):
        self.assertEqual(class_suffixes(1), [""])
        self.assertEqual(class_suffixes(1, ["brain"]), [""])
        self.assertEqual(class_suffixes(2), ["1", "2"])
        self.assertEqual(class_suffixes(2, ["a", "b"]), ["a", "b"])
        with self.assertRaisesRegex(ValueError, "3 names but the head has 2"):
            class_suffixes(2, ["a", "b", "c"])
        for name in ("lo", "raw", "mean"):
            with self.assertRaisesRegex(ValueError, rf"\['{name}'\] are reserved"):
                class_suffixes(2, [name, "b"])


class TestQualityCalibration(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.ckpt = self.tmp / "model.pt"
        torch.save({"model": {"w": torch.arange(3.0)}}, self.ckpt)

    def test_table_against_sklearn_and_sorted_residuals(self):
        rows = site_rows(60, classes=("brain", "csf"))
        # isotonic only: this head's bias is a shift, so the choice would take the linear map (TestMapChoice)
        cal = calibrate_quality_table(rows, "abc", coverage=0.9, alpha=0.2, delta=0.2, tau=0.7, seed=3,
                                      maps=("isotonic",))  # fmt: skip
        fit, score = split_calibration(60, 0.5, seed=3)
        for i, c in enumerate(("brain", "csf")):
            raw = np.array([r[f"pred_dice_{c}"] for r in rows])
            true = np.array([r[f"true_dice_{c}"] for r in rows])
            ref = isotonic_reference(raw[fit], true[fit])  # sklearn's fit; tails by the hand-pinned rule
            lo, hi = raw[fit].min(), raw[fit].max()
            self.assertTrue(np.any(raw[score] < lo) or np.any(raw[score] > hi))  # the tails are exercised
            np.testing.assert_allclose(cal.recalibrations[i].predict(raw), ref(raw), atol=1e-12)
            residuals = np.sort(np.abs(true[score] - ref(raw[score])))
            k = math.ceil(31 * 0.9)  # 30 scored cases: the 28th smallest
            self.assertAlmostEqual(cal.recalibrations[i].half_width, residuals[k - 1], places=12)
        self.assertEqual(cal.classes, ("brain", "csf"))
        self.assertEqual((cal.flag.alpha, cal.flag.delta, cal.flag.tau, cal.flag.n_calibration), (0.2, 0.2, 0.7, 60))
        self.assertEqual(len(cal.reference["pred_dice_raw"]), 60)
        np.testing.assert_allclose(cal.reference["mean_entropy"], [-r["baseline_mean_entropy"] for r in rows])

    def test_recalibrates_the_raw_columns_of_a_calibrated_table(self):
        rows = site_rows(40)
        relabelled = [dict(r, pred_dice_raw=r["pred_dice"], pred_dice=0.5) for r in rows]  # pred_dice recalibrated
        a = calibrate_quality_table(rows, "abc", coverage=0.8)
        b = calibrate_quality_table(relabelled, "abc", coverage=0.8)
        self.assertEqual(a.recalibrations, b.recalibrations)

    def test_save_load_round_trip_and_transform(self):
        rows = site_rows(40, seed=1)
        cal = calibrate_quality_table(rows, head_fingerprint(self.ckpt), coverage=0.8, alpha=0.3, delta=0.3, tau=0.5)
        self.assertTrue(cal.flag.feasible and 0.3 < cal.flag.acceptance_threshold < 0.7, cal.flag)
        path = self.tmp / "cal" / "quality_calibration.json"
        cal.save(path)
        loaded = load_quality_calibration(path, self.ckpt, [""])
        self.assertEqual(loaded, cal)
        data = json.loads(path.read_text())
        self.assertEqual(data["coverage"], 0.8)
        self.assertIn("probability at least 0.8", data["promise"])
        out = RecalibrateQualityd(loaded)({"pred_dice": torch.tensor([0.61])})
        g = cal.recalibrations[0].predict(0.61)
        q = cal.recalibrations[0].half_width
        self.assertAlmostEqual(float(out["pred_dice"]), g, places=6)
        self.assertAlmostEqual(float(out["pred_dice_raw"]), 0.61, places=6)
        self.assertAlmostEqual(float(out["pred_dice_lo"]), max(0.0, g - q), places=6)
        self.assertAlmostEqual(float(out["pred_dice_hi"]), min(1.0, g + q), places=6)
        self.assertAlmostEqual(float(out["pred_iou"]), g / (2 - g), places=6)
        self.assertEqual(bool(out["flagged"]), 0.61 < cal.flag.acceptance_threshold)
        lam = cal.flag.acceptance_threshold
        self.assertEqual([loaded.flagged([v]) for v in (lam - 1e-6, lam, lam + 0.01)], [True, False, False])
        # a file written before the renames (flag "threshold", reference "pred_dice") still loads as the same
        data["flag"]["threshold"] = data["flag"].pop("acceptance_threshold")
        data["reference"]["pred_dice"] = data["reference"].pop("pred_dice_raw")
        path.write_text(json.dumps(data))
        self.assertEqual(QualityCalibration.load(path), cal)

    def test_recalibrate_rows_and_interval_scores(self):
        cal = calibrate_quality_table(site_rows(200, classes=("a", "b"), seed=4), "abc", coverage=0.8, tau=0.5,
                                      alpha=0.2, delta=0.2)  # fmt: skip
        test = site_rows(400, classes=("a", "b"), seed=5)
        rows = cal.recalibrate_rows(test)
        transform = RecalibrateQualityd(cal)
        for row, case in zip(rows[:5], test):
            out = transform({"pred_dice": torch.tensor([case["pred_dice_a"], case["pred_dice_b"]])})
            np.testing.assert_allclose([row["pred_dice_a"], row["pred_dice_b"]], out["pred_dice"], atol=1e-6)
            np.testing.assert_allclose([row["pred_dice_lo_a"], row["pred_dice_lo_b"]], out["pred_dice_lo"], atol=1e-6)
            self.assertEqual(row["flagged"], int(out["flagged"]))
            self.assertEqual(row["pred_dice_raw_a"], case["pred_dice_a"])
        self.assertEqual(cal.recalibrate_rows(rows), rows)  # reads pred_dice_raw back: idempotent
        scores = interval_scores(rows)
        for c in ("a", "b"):
            kinds = ("pred_dice_lo", "pred_dice_hi", "true_dice")
            lo, hi, true = (np.array([r[f"{k}_{c}"] for r in rows]) for k in kinds)
            self.assertAlmostEqual(scores[c]["coverage"], np.mean((lo <= true) & (true <= hi)))
            self.assertAlmostEqual(scores[c]["mean_width"], np.mean(hi - lo))
            self.assertGreater(scores[c]["mae_raw"], 0.12)  # the head's bias of 0.14 ...
            self.assertLess(scores[c]["mae_recalibrated"], 0.05)  # ... removed
            self.assertGreater(scores[c]["coverage"], 0.7)  # promised 0.8 on average over calibration draws
        self.assertIsNone(interval_scores(test))

    def test_infeasible_flag_flags_everything_and_round_trips(self):
        with self.assertWarnsRegex(UserWarning, "needs at least 918 calibration cases"):
            cal = calibrate_quality_table(site_rows(20), "abc", coverage=0.5, alpha=0.01, delta=0.01)
        self.assertTrue(math.isinf(cal.flag.acceptance_threshold))
        path = self.tmp / "c.json"
        cal.save(path)
        self.assertIsNone(json.loads(path.read_text())["flag"]["acceptance_threshold"])
        self.assertTrue(QualityCalibration.load(path).flagged([1.0]))

    def test_refuses_another_head_or_class_set(self):
        cal = calibrate_quality_table(site_rows(20), head_fingerprint(self.ckpt), coverage=0.5)
        path = self.tmp / "c.json"
        cal.save(path)
        other = self.tmp / "other.pt"
        torch.save({"model": {"w": torch.ones(3)}}, other)
        fp_this, fp_other = head_fingerprint(self.ckpt), head_fingerprint(other)
        self.assertNotEqual(fp_this, fp_other)
        with self.assertRaisesRegex(ValueError, f"{fp_this[:16]}.*'foreground'.*{fp_other[:16]}.*'foreground'"):
            load_quality_calibration(path, other, [""])
        with self.assertRaisesRegex(ValueError, r"classes \['foreground'\].*classes \['brain', 'csf'\]"):
            load_quality_calibration(path, self.ckpt, ["brain", "csf"])

    def test_flag_minimum_named(self):
        # alpha = delta = 0.1 over 101 grid points: (0.9)^n <= 0.1 / 101 needs n >= log(0.1/101) / log(0.9) = 65.7
        rows = [dict(r, true_dice=0.99) for r in site_rows(65)]  # no failure at all, still too few
        with self.assertWarnsRegex(UserWarning, "needs at least 66 calibration cases .* got 65"):
            self.assertTrue(math.isinf(calibrate_quality_table(rows, "abc", coverage=0.8).flag.acceptance_threshold))
        rows = [dict(r, true_dice=0.99) for r in site_rows(66)]
        self.assertEqual(calibrate_quality_table(rows, "abc", coverage=0.8).flag.fraction_accepted, 1.0)

    def test_bad_input_messages(self):
        with self.assertRaisesRegex(ValueError, "needs at least 9 scored calibration cases.*got 8.*16 calibration"):
            calibrate_quality_table(site_rows(16), "abc", coverage=0.9)
        with self.assertRaisesRegex(ValueError, "columns.*true_dice"):
            calibrate_quality_table([{"image": "a", "pred_dice": 0.5}], "abc")
        with self.assertWarnsRegex(UserWarning, "falls back to their mean true Dice"):
            cal = calibrate_quality_table([dict(r, pred_dice=0.4) for r in site_rows(20)], "abc", coverage=0.5)
        self.assertTrue(cal.recalibrations[0].fallback)
        csv = self.tmp / "quality.csv"
        write_quality_csv(csv, site_rows(20, classes=("a", "b")))
        with self.assertRaisesRegex(ValueError, r"hold classes \['a', 'b'\], this pipeline predicts \['foreground'\]"):
            calibrate_quality_csvs([csv], self.ckpt, [""], self.tmp / "x.json")
        with self.assertRaisesRegex(ValueError, "not a quality calibration"):
            (self.tmp / "bad.json").write_text("{}")
            QualityCalibration.load(self.tmp / "bad.json")

    def test_report_refuses_a_second_flag(self):
        cal = calibrate_quality_table(site_rows(20), "abc", coverage=0.5)
        check = CalibrationReport(cal, self.tmp)
        report = QualityReport(writer=None, alpha=0.1, calibration_csvs=[], calibration_report=check)
        with self.assertRaisesRegex(ValueError, "with a calibration_file the flag is the calibrated one"):
            report.attach(None)

    def test_without_a_calibration_the_report_does_nothing(self):
        """A run without a calibration file lists the CalibrationReport all the same (segq_overlay.json): it attaches
        nothing, and a QualityReport given it has no calibration blocks."""
        check = CalibrationReport(None, self.tmp)
        engine = Engine(lambda e, b: None)
        check.attach(engine)
        self.assertFalse(any(engine.has_event_handler(h) for h in (check, check.write, check._reset)))
        report = QualityReport(writer=None, alpha=0.1, calibration_csvs=[], calibration_report=check)
        self.assertIsNone(report.calibration_report)
        self.assertEqual(report._calibration_blocks(), {})

    def test_csvs_step_writes_the_file(self):
        csv = self.tmp / "quality.csv"
        write_quality_csv(csv, site_rows(30))
        out = self.tmp / "deploy" / "quality_calibration.json"
        cal = calibrate_quality_csvs([csv], self.ckpt, [""], out, coverage=0.8)
        self.assertEqual(QualityCalibration.load(out), cal)
        self.assertEqual(cal.n_calibration, len(read_quality_csv(csv)))


class TestCalibrationFileRecords(unittest.TestCase):
    """The map choice and the interval kind in the file; files written before them."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())

    def spread_rows(self, n, seed):
        rng = np.random.default_rng(seed)
        rows = []
        for i, r in enumerate(site_rows(n, seed=seed)):
            sd = 0.02 * np.exp(rng.normal(0, 1))
            rows.append(dict(r, pred_dice_sd=sd, true_dice=float(np.clip(r["pred_dice"] + sd * rng.normal(), 0, 1))))
        return rows

    def test_round_trip_keeps_map_scores_and_interval_kind(self):
        # seed 3: a split whose fit part finds the normalised interval narrower (at seeds 1, 2, 4 the absolute one)
        cal = calibrate_quality_table(self.spread_rows(200, 3), "abc", coverage=0.8, tau=0.5)
        r = cal.recalibrations[0]
        self.assertEqual((r.map, r.interval_kind), ("identity", "normalised"), r)
        path = self.tmp / "c.json"
        cal.save(path)
        saved = json.loads(path.read_text())["recalibration"]["foreground"]
        self.assertEqual((saved["map"], saved["interval"]), ("identity", "normalised"))
        self.assertEqual(set(saved["cv_mae"]), {"identity", "linear", "isotonic"})
        self.assertEqual((saved["half_width"], saved["half_width_normalised"]), (r.half_width, r.half_width_normalised))
        self.assertEqual(QualityCalibration.load(path), cal)
        # the transform: normalised with the case's spread, absolute without it
        g = r.predict(0.6)
        out = RecalibrateQualityd(cal)({"pred_dice": torch.tensor([0.6]), "pred_dice_sd": torch.tensor([0.05])})
        self.assertAlmostEqual(float(out["pred_dice_hi"]), min(1, g + r.half_width_normalised * 0.05), places=6)
        out = RecalibrateQualityd(cal)({"pred_dice": torch.tensor([0.6])})
        self.assertAlmostEqual(float(out["pred_dice_hi"]), min(1, g + r.half_width), places=6)
        # the key it is given is the key it writes (and its _raw, _lo, _hi)
        renamed = RecalibrateQualityd(cal, keys="q", iou_key="qi", flag_key="qf")({"q": torch.tensor([0.6])})
        self.assertEqual(set(renamed), {"q", "q_raw", "q_lo", "q_hi", "qi", "qf"})
        for part in ("", "_raw", "_lo", "_hi"):
            torch.testing.assert_close(renamed["q" + part], out["pred_dice" + part])
        self.assertEqual(RecalibrateQualityd(cal, allow_missing_keys=True)({}), {})
        # interval_scores with the calibration: both kinds, each by hand
        test = cal.recalibrate_rows(self.spread_rows(300, 2))
        scores = interval_scores(test, cal)["foreground"]
        raw, sd, true = (np.array([row[k] for row in test]) for k in ("pred_dice_raw", "pred_dice_sd", "true_dice"))
        for kind, half in (("absolute", r.half_width), ("normalised", r.half_width_normalised * np.maximum(sd, 1e-3))):
            lo, hi = np.clip(r.predict(raw) - half, 0, 1), np.clip(r.predict(raw) + half, 0, 1)
            self.assertAlmostEqual(scores[kind]["coverage"], np.mean((lo <= true) & (true <= hi)))
            self.assertAlmostEqual(scores[kind]["mean_width"], np.mean(hi - lo))
        self.assertEqual(scores["coverage"], scores["normalised"]["coverage"])  # the written kind

    def test_old_format_loads_as_isotonic_absolute(self):
        cal = calibrate_quality_table(site_rows(60, seed=3), "abc", coverage=0.8, maps=("isotonic",))
        path = self.tmp / "old.json"
        cal.save(path)
        data = json.loads(path.read_text())
        old_keys = {"knots_x", "knots_y", "half_width", "coverage", "n_fit", "n_score", "fallback"}
        data["recalibration"]["foreground"] = {k: v for k, v in data["recalibration"]["foreground"].items()
                                               if k in old_keys}  # fmt: skip
        path.write_text(json.dumps(data))
        old = QualityCalibration.load(path)
        r = old.recalibrations[0]
        self.assertEqual((r.map, r.interval_kind, r.cv_mae, r.half_width_normalised), ("isotonic", "absolute", None, None))
        x = np.linspace(0, 1, 11)
        np.testing.assert_allclose(r.predict(x), cal.recalibrations[0].predict(x))
        np.testing.assert_allclose(old.apply([0.6], [0.05]), cal.apply([0.6]))  # a spread does not matter to it


class TestDrift(unittest.TestCase):
    def test_ks_by_hand(self):
        # disjoint samples of 3 and 3: D = 1; exact two-sided p = 2 / C(6, 3) = 0.1
        s = distribution_shift([0.1, 0.2, 0.3], [0.4, 0.5, 0.6])
        self.assertEqual((s["n"], s["n_reference"]), (3, 3))
        self.assertAlmostEqual(s["ks_statistic"], 1.0)
        self.assertAlmostEqual(s["p_value"], 0.1, places=12)
        self.assertAlmostEqual(s["fraction_outside"], 1.0)
        self.assertAlmostEqual(s["median"], 0.2)
        s = distribution_shift([0.45, 0.5, 0.7], [0.4, 0.5, 0.6])  # F differ by 1/3 at most
        self.assertAlmostEqual(s["ks_statistic"], 1 / 3)
        self.assertAlmostEqual(s["fraction_outside"], 1 / 3)

    def test_warning_names_the_numbers(self):
        cal = calibrate_quality_table(site_rows(60, seed=2), "abc", coverage=0.8)
        report = CalibrationReport(cal, tempfile.mkdtemp(), p_value=0.01)
        rng = np.random.default_rng(0)
        shifted = [(float(v), 0.3) for v in rng.uniform(0.0, 0.3, 30)]  # low predictions, 4x the entropy
        with self.assertLogs("segq_monai.handlers.calibration_report", "WARNING") as logs:
            result = report.check(shifted)
        self.assertTrue(result["drifted"])
        stats = result["statistics"]
        self.assertAlmostEqual(stats["mean_entropy"]["ks_statistic"], 1.0)
        self.assertAlmostEqual(stats["mean_entropy"]["fraction_outside"], 1.0)
        self.assertIn("cohort of 30 cases: median raw predicted Dice", logs.output[0])
        self.assertIn(f"KS D = {stats['pred_dice_raw']['ks_statistic']:.2f}", logs.output[0])
        alike = [(r["pred_dice"], -r["baseline_mean_entropy"]) for r in site_rows(60, seed=2)]
        self.assertFalse(report.check(alike)["drifted"])  # the calibration split itself: D = 0, p = 1


if __name__ == "__main__":
    unittest.main()
