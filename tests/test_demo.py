"""``python -m segq_monai demo`` end to end, through its real command line, at toy size (1 epoch, T = 2)."""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from command_server import SERVERS
from segq_testing import copy_bundle, read_csv, workflow

from segq_monai.data.columns import read_quality_csv
from segq_monai.calibration.quality_calibration import calibrate_quality_table, head_fingerprint, interval_scores

TOY = ["--num_folds", "2", "--epochs_segmentation", "1", "--epochs_quality", "1", "--num_samples", "2",
       "--variants_per_slice", "1", "--geometric_variants", "1", "--held_out_variants", "2", "--shift_variants", "3",
       "--cross_subject_variants", "1", "--planes", "axial", "coronal", "sagittal",
       "--device", "cpu"]  # fmt: skip


pytestmark = pytest.mark.slow


def run_demo(tmp: Path, *extra: str) -> tuple[tuple[int, str], Path, Path]:
    """``python -m segq_monai demo`` at toy size (``TOY`` + ``extra``) on a copy of the bundle, forked from
    :data:`command_server.SERVERS`: ((exit code, output), its bundle root, its ``--output_dir``)."""
    root = copy_bundle(tmp)
    out = tmp / "out"
    result = SERVERS.run(["-m", "segq_monai", "demo", "--output_dir", str(out), "--bundle_root", str(root), *TOY, *extra],
                         tmp)  # fmt: skip
    return result, root, out


def fmt(value: float | None) -> str:
    """A number as the tables write it; ``–`` for an undefined one (``null`` in the JSON files)."""
    return "–" if value is None else f"{value:.3f}"


def table_rows(text: str, heading: str) -> dict[str, list[str]]:
    """``{method: [cells]}`` of the Markdown table under the ``## heading...`` line of ``comparison.md``."""
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    rows = [line.strip("|").split(" | ") for line in lines]
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows[1:]}


class TestDemoDefault(unittest.TestCase):
    """The default run at toy size: 2 folds, 1 epoch per stage, T = 2, the main quality head; Colin27 in three planes
    (the default is the axial plane: three planes give slices of three sizes, the harder path):
    76 development slices x 1 artifact copy (+1 turned), 26 calibration and 14 test slices x 2 copies, the 14 test
    slices x 3 shifted copies, the 26 MNI152 slices x 1 copy."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp())
        cls.result, cls.root, cls.out = run_demo(cls.tmp)
        cls.text = (cls.out / "report" / "comparison.md").read_text() if cls.result[0] == 0 else ""

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.assertEqual(self.result[0], 0, self.result[1][-3000:])

    def assert_same_table(self, got: list[dict], expected: list[dict], tol: float, mean_tol: float | None = None):
        """Same columns in the same order, same images and flags, numbers within ``tol``; with ``mean_tol``, each
        column's mean absolute difference within it too."""
        self.assertEqual([list(r) for r in got], [list(r) for r in expected])
        for g, e in zip(got, expected):
            self.assertEqual((g["image"], g["flagged"]), (e["image"], e["flagged"]))
            for column in e:
                if column not in ("image", "flagged"):
                    self.assertTrue(math.isclose(float(g[column]), float(e[column]), abs_tol=tol), (column, g, e))
        for column in [c for c in expected[0] if c not in ("image", "flagged")] if mean_tol is not None else []:
            mean = np.mean([abs(float(g[column]) - float(e[column])) for g, e in zip(got, expected)])
            self.assertLessEqual(mean, mean_tol, column)

    def test_tables_match_the_reports(self):
        """Every cell of the head's and the baselines' rows is the report's value with its bootstrap interval."""
        for heading, folder, slices in (("Test split", "report", 14), ("Shift split", "report/shift_split", 14),
                                        ("Cross-subject split", "report/cross_subject_split", 26)):
            report = json.loads((self.out / folder / "report.json").read_text())
            boot = json.loads((self.out / folder / "bootstrap.json").read_text())
            rows = table_rows(self.text, heading)
            blocks = {"quality head (image_seg_entropy)": ("quality_head", report["quality_head"]["mean"])}
            blocks.update({name: (name, e["mean"]) for name, e in report["baselines"].items()})
            self.assertEqual(set(rows), set(blocks))
            for label, (key, block) in blocks.items():
                cells = rows[label]
                self.assertEqual(cells[0], str(report["n_cases"]))
                for cell, metric in zip(cells[1:7], ("mae", "pearson", "spearman", "auroc", "aurc", "eaurc")):
                    value, lo, hi = (fmt(v) for v in (block[metric], *boot["methods"][key][metric]))
                    self.assertEqual(cell, f"{value} [{lo}, {hi}]", (heading, label, metric))
                difference = block["aurc"] - report["quality_head"]["mean"]["aurc"]  # the head's is "–"
                lo, hi = boot["against_head"][key]["aurc"] if key != "quality_head" else (None, None)
                paired = "–" if key == "quality_head" else f"{fmt(difference)} [{fmt(lo)}, {fmt(hi)}]"
                self.assertEqual(cells[7], paired, (heading, label))
            flag = report["guaranteed_flag"]
            self.assertEqual(rows["quality head (image_seg_entropy)"][9].split(" = ")[0],
                             f"{flag['failures_accepted']}/{flag['n_accepted']}")  # fmt: skip
            self.assertEqual(boot["n_groups"], slices)  # slices (14 test, 26 cross-subject), not their copies

    def test_recalibration_table(self):
        """The recalibration rows are trust's ``interval_scores`` of each split, recalibrated on the calibration
        split."""
        head = self.out / "models" / "quality_image_seg_entropy" / "model.pt"
        cal_rows = read_quality_csv(self.out / "report" / "calibration_split" / "quality.csv")
        dataset = json.loads((self.out / "data" / "dataset.json").read_text())
        group_of = {item["image"]: item["group"] for item in dataset["calibration"]}
        calibration = calibrate_quality_table(cal_rows, head_fingerprint(head),
                                              groups=[group_of[r["image"]] for r in cal_rows])  # fmt: skip
        rows = table_rows(self.text, "Recalibration to the site")
        for label, folder in (("test (in-distribution)", "report"), ("shift", "report/shift_split"),
                              ("cross-subject", "report/cross_subject_split")):
            scores = interval_scores(calibration.recalibrate_rows(read_quality_csv(self.out / folder / "quality.csv")),
                                     calibration)  # fmt: skip
            s = scores["foreground"]
            cells = rows[label]
            self.assertEqual(cells[0], str(s["n"]))
            for cell, key in zip(cells[1:], ("mae_raw", "mae_recalibrated", "coverage", "mean_width")):
                self.assertTrue(cell.startswith(f"{s[key]:.3f} ["), (label, key, cell))
            self.assertTrue(cells[3].endswith("(0.90)"))
            for cell, (kind, key) in zip(cells[5:], [(k, v) for k in ("absolute", "normalised")
                                                      for v in ("coverage", "mean_width")]):  # fmt: skip
                self.assertTrue(cell.startswith(f"{s[kind][key]:.3f} ["), (label, kind, key, cell))

    def test_splits_apart(self):
        report = json.loads((self.out / "report" / "report.json").read_text())
        self.assertEqual(report["n_cases"], 28)  # 14 test slices x 2
        flag = report["guaranteed_flag"]
        self.assertEqual((flag["alpha"], flag["n_calibration"], flag["n"]), (0.1, 52, 28))
        folders = (("calibration", "calibration_split"), ("testing", "."), ("shift", "shift_split"))
        tables = {s: read_csv(self.out / "report" / d / "quality.csv") for s, d in folders}
        self.assertEqual({s: len(t) for s, t in tables.items()}, {"calibration": 52, "testing": 28, "shift": 42})
        images = {s: {r["image"] for r in t} for s, t in tables.items()}
        self.assertFalse(images["calibration"] & images["testing"] or images["shift"] & images["testing"])
        dataset = json.loads((self.out / "data" / "dataset.json").read_text())
        groups = {s: {item["group"] for item in dataset[s]} for s in ("training", "calibration", "testing", "shift")}
        self.assertEqual(groups["shift"], groups["testing"])  # held-out test slices only: nothing stage 1 or 2 saw
        self.assertFalse(groups["shift"] & (groups["training"] | groups["calibration"]))
        self.assertEqual({item["shift"] for item in dataset["shift"]}, {"rotate90", "zoom_out", "zoom_in"})
        self.assertEqual({item["plane"] for item in dataset["testing"]}, {"axial", "coronal", "sagittal"})
        # the cross-subject split: one copy of each of the 26 MNI152 slices, three planes, none seen by either stage
        cross = read_csv(self.out / "report" / "cross_subject_split" / "quality.csv")
        self.assertEqual(len(cross), 26)
        self.assertEqual({item["plane"] for item in dataset["cross_subject"]}, {"axial", "coronal", "sagittal"})
        self.assertFalse({item["group"] for item in dataset["cross_subject"]} & set().union(*groups.values()))

    def test_time_section(self):
        rows = table_rows(self.text, "Time of each step")
        steps = {k: float(v[0]) for k, v in rows.items() if not k.startswith("**")}
        for step in ("prepare the demo data", "stage 1, fold 2/2: train the segmentation network",
                     "evaluate image_seg_entropy on the shift split (sampling)"):  # fmt: skip
            self.assertIn(step, steps)
        total = float(rows["**total**"][0].split("**")[1])
        self.assertAlmostEqual(total, sum(steps.values()), delta=0.05 * len(steps) + 0.1)
        passes = int(re.search(r"total / reference = (\d+) passes", self.text).group(1))
        self.assertGreater(passes, 0)

    def test_quality_table_pinned(self):
        """The test split's quality.csv equals, at the same seeds, the pinned one (``testing_data/toy_demo_quality.csv``,
        made with these arguments). It was pinned before the package was laid out in rooms by kind (issue #14) and
        held through that move; it was regenerated once, for issue #12's head (random turns and zooms in stage-2
        training, ``--geometric_variants``), which changed ``pred_dice``/``pred_iou`` only: true Dice and the
        baselines are those of before; and again for issue #25 (2026-12-07), whose demo trains both stages on three
        planes, with other slices, artifact plans, shorter stage-1 training and padded training batches; and for the head
        the rule chose in issue #25 (a ranking term in its loss), and for round 2 of that rule, which chose the MSE head
        (2026-12-07), and for its round 3, whose development copies take eight artifact kinds (pred_dice moved by up to
        0.026; true Dice and the baselines within 5.2e-3 of before: the held-out copies did not change). Regenerate it only with a change that means to alter the demo's numbers, and say so in the
        commit. Tolerances: 1e-2 per cell and 3e-3 for a column's mean absolute difference. This
        pipeline trains networks, so machines differ: the same commit (217740a) gave, on another machine of the same
        kind (AMD EPYC, 2026-12-07), cells up to 5.1e-3 apart (baseline_pairwise_dice) and column means up to 1.8e-3
        apart (pred_dice), while a run on one machine repeats within 5e-4; a change of recipe moves them by more than
        1e-2."""
        expected = read_csv(Path(__file__).parent / "testing_data" / "toy_demo_quality.csv")
        got = read_csv(self.out / "report" / "quality.csv")
        # the head's spread (issue #18 item 3, pred_dice_sd) came later: its passes are seeded apart from the pinned
        # values, which stay as they were; the spread itself is a standard deviation
        self.assertTrue(all(float(r.pop("pred_dice_sd")) >= 0 for r in got))
        self.assert_same_table(got, expected, 1e-2, 3e-3)

    def test_head_on_saved_maps_equals_sampling(self):
        """``evaluate_maps.json`` runs the trained head on the test split's saved maps: the same table as sampling."""
        sampled = read_csv(self.out / "report" / "quality.csv")
        again = self.tmp / "again"
        workflow(["inference.json", "evaluate.json", "evaluate_maps.json"], self.root,
                 datalist=str(self.out / "data" / "dataset.json"), datalist_key="testing", output_dir=str(again),
                 maps_dir=str(self.out / "report"), ckpt_dir=str(self.out / "models"), baseline_fit_csvs=[],
                 device="cpu", batch_size=1)  # fmt: skip  (three planes: slices of three sizes, one a batch)
        self.assert_same_table(read_csv(again / "quality.csv"), sampled, 1e-6)


class TestDemoFull(unittest.TestCase):
    """``--full`` at toy size with 2 seeds, two quality variants and the softmax and confidence estimators; without
    the shift split (``TestDemoDefault`` covers it), which saves this class a shift evaluation per head."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp())
        cls.result, cls.root, cls.out = run_demo(
            cls.tmp, "--full", "--seeds", "2", "--quality_variants", "image_seg_entropy", "seg_entropy",
            "--estimators", "softmax", "confidence", "--shift_variants", "0", "--cross_subject_variants", "0",
            "--planes", "axial")  # fmt: skip

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.assertEqual(self.result[0], 0, self.result[1][-3000:])

    def test_mean_and_sd_over_seeds(self):
        text = (self.out / "report" / "comparison.md").read_text()
        reports = [json.loads((self.out / d / "report_seg_entropy" / "report.json").read_text())
                   for d in (".", "seeds/seed1")]  # fmt: skip
        maes = [r["quality_head"]["mean"]["mae"] for r in reports]
        mean, sd = sum(maes) / 2, abs(maes[0] - maes[1]) / math.sqrt(2)  # sample sd of two values
        row = table_rows(text, "Test split")["quality head (seg_entropy)"]
        self.assertEqual(row[1], f"{mean:.3f} ± {sd:.3f}")
        heading = "Uncertainty estimators of stage 1, Test split"
        self.assertEqual(set(table_rows(text, heading)), {"mc dropout, T=2; image_seg_entropy", "softmax, T=1; "
                         "image_seg_entropy", "learned confidence + MC dropout; image_seg_confidence"})  # fmt: skip
        self.assertNotIn("Shift split", text)
        self.assertIn("evaluate seg_entropy on the testing split (saved maps)", text)
        self.assertNotIn("evaluate seg_entropy on the testing split (sampling)", text)

    def test_seed_weights_apart(self):
        models = self.out / "models"
        for fold in range(2):
            self.assertEqual(json.loads((models / f"fold{fold}" / "temperature.json").read_text())["n_cases"], 24)
            self.assertTrue((models / "seeds" / "seed1" / f"fold{fold}" / "model.pt").is_file())

        def last_conv(path: Path) -> torch.Tensor:
            state = torch.load(path, weights_only=True)["model"]
            return [v for k, v in state.items() if k.endswith("conv.weight") and v.ndim == 4][-1]

        self.assertEqual(last_conv(models / "fold1" / "model.pt").shape[0], 2)  # the main UNet: C = 2 logits
        confidence = models / "estimators" / "confidence" / "fold1" / "model.pt"
        self.assertEqual(last_conv(confidence).shape[0], 3)  # C + 1 (the confidence logit)
        self.assertFalse((models / "estimators" / "softmax" / "fold0").exists())  # reuses the main networks
        report = self.out / "estimators" / "confidence" / "report"
        for row in read_csv(report / "quality.csv"):  # every case has a 1 - c map on its segmentation's grid
            case = Path(row["image"]).name.split(".")[0]
            u = nib.load(report / case / f"{case}_confidence.nii.gz")
            self.assertEqual(u.shape, nib.load(report / case / f"{case}_seg.nii.gz").shape, case)
            values = np.asarray(u.dataobj)
            self.assertTrue(((values > 0) & (values < 1)).all() and values.std() > 0, case)


if __name__ == "__main__":
    unittest.main()
