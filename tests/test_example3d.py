"""``python -m segq_monai example3d`` end to end through its real command line, at toy size, and its report's maths.

Toy size (``segq_testing.EXAMPLE3D_TOY``, run once per test run by conftest's ``example3d_run``): cases of 24³ voxels
(4 mm); 4 host-training, 6 validation (fit), 4 calibration and 3 test cases; 1 epoch per network, T = 2; alpha = 0.9
(3 calibration cases suffice), coverage 0.6 (4 suffice: 2 fit, 2 scored). The numbers checked do not depend on
training: true Dice in the tables against a Dice computed here with numpy from the saved segmentation and the label
file, the per-class columns named from the host's metadata, the grids of the saved outputs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from command_server import SERVERS
from segq_testing import EXAMPLE3D_TOY, REPO, read_csv

from segq_monai.apps.example3d import example3d
from segq_monai.apps.example3d_report import add_true_quality, summary_table

HOST_METADATA = REPO / "examples" / "colin27_regions3d" / "configs" / "metadata.json"


def _numpy_dice(seg: np.ndarray, label: np.ndarray, k: int) -> float:
    s, lab = seg == k, label == k
    total = s.sum() + lab.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(s, lab).sum() / total


def _case(path: str) -> str:
    return Path(path).name.removesuffix(".nii.gz")


@pytest.fixture(scope="class")
def example3d_on_class(request: pytest.FixtureRequest, example3d_run) -> None:
    """The run of ``example3d_run`` (conftest) on the class: ``result``, ``out``, ``classes`` (the host's class names)
    and ``labels`` (``{case: label file}`` of the validation and test cases)."""
    cls = request.cls
    cls.result, cls.out = example3d_run
    channel_def = json.loads(HOST_METADATA.read_text())["network_data_format"]["outputs"]["pred"]["channel_def"]
    cls.classes = [channel_def[str(k)] for k in range(1, len(channel_def))]
    dataset = json.loads((cls.out / "data" / "dataset.json").read_text()) if cls.result[0] == 0 else {}
    cls.labels = {
        _case(i["image"]): cls.out / "data" / i["label"] for split in ("validation", "testing")
        for i in dataset.get(split, [])
    }  # fmt: skip


@pytest.mark.slow
@pytest.mark.usefixtures("example3d_on_class")
class TestExample3dCommand(unittest.TestCase):
    def setUp(self):
        self.assertEqual(self.result[0], 0, self.result[1][-3000:])

    def _check_true_dice(self, table: Path, outputs: Path, n: int) -> None:
        rows = read_csv(table)
        self.assertEqual(len(rows), n)
        for row in rows:
            case = _case(row["image"])
            seg_nii = nib.load(outputs / case / f"{case}_seg.nii.gz")
            label_nii = nib.load(self.labels[case])
            self.assertEqual(seg_nii.shape[:3], label_nii.shape)  # saved on the input grid
            np.testing.assert_allclose(seg_nii.affine, label_nii.affine, atol=1e-4)
            seg = np.asarray(seg_nii.dataobj).reshape(label_nii.shape)
            label = np.asarray(label_nii.dataobj)
            for k, name in enumerate(self.classes, start=1):
                self.assertAlmostEqual(float(row[f"true_dice_{name}"]), _numpy_dice(seg, label, k), places=5)

    def test_fit_sample_true_dice(self):
        self._check_true_dice(self.out / "fit" / "sample" / "quality.csv", self.out / "fit" / "sample", 6)

    def test_deploy_table_and_report_true_dice(self):
        deploy = read_csv(self.out / "deploy" / "quality.csv")
        expected = ["image", *(f"pred_dice_{c}" for c in self.classes), *(f"pred_iou_{c}" for c in self.classes)]
        self.assertEqual(list(deploy[0])[: len(expected)], expected)
        self.assertIn("flagged", deploy[0])
        self.assertTrue({f"pred_dice_{b}_{c}" for b in ("raw", "lo", "hi") for c in self.classes} <= set(deploy[0]))
        self.assertEqual(sorted(_case(r["image"]) for r in deploy), [f"colin3d_testing_{i:03d}" for i in range(3)])
        for row in deploy:
            for c in self.classes:
                self.assertTrue(0.0 <= float(row[f"pred_dice_{c}"]) <= 1.0)
        self._check_true_dice(self.out / "report" / "quality.csv", self.out / "deploy", 3)

    def test_report_files_and_times(self):
        text = (self.out / "report" / "report.md").read_text()
        for name in [*self.classes, "mean over classes"]:
            self.assertIn(f"| {name} | 3 |", text)
        times = json.loads((self.out / "times.json").read_text())
        self.assertEqual(list(times)[0], "data")
        self.assertEqual(len(times), 5)  # data, host training, fit, deploy, report
        for step in times:
            self.assertIn(f"| {step} |", text)
        for png in ("predicted_vs_true.png", "overlay_worst_1.png"):
            self.assertTrue((self.out / "report" / png).is_file(), png)
        fit = json.loads((self.out / "fit" / "fit.json").read_text())
        self.assertEqual(fit["class_names"], self.classes)
        self.assertEqual(fit["spatial_dims"], 3)

    def test_moved_folder_reruns_its_report(self):
        """A copy of the output folder (its tables hold the old absolute paths) reruns: every step but the report is
        skipped, and the report's rows point into the copy with the same true Dice."""
        with tempfile.TemporaryDirectory() as tmp:
            moved = Path(tmp) / "moved"
            shutil.copytree(self.out, moved)
            shutil.rmtree(moved / "report")
            code, output = SERVERS.run(["-m", "segq_monai", "example3d", "--output_dir", str(moved), *EXAMPLE3D_TOY],
                                       Path(tmp), OMP_NUM_THREADS="1")  # fmt: skip
            self.assertEqual(code, 0, output[-3000:])
            self.assertEqual(output.count("done by an earlier run, skipped"), 3, output[-3000:])
            rows, before = read_csv(moved / "report" / "quality.csv"), read_csv(self.out / "report" / "quality.csv")
            self.assertEqual([r["image"] for r in rows],
                             [str(moved / Path(r["image"]).relative_to(self.out)) for r in before])  # fmt: skip
            for row, old in zip(rows, before):
                for name in self.classes:
                    self.assertEqual(row[f"true_dice_{name}"], old[f"true_dice_{name}"])


class TestExample3dBadInput(unittest.TestCase):
    def test_too_few_calibration_cases(self):
        with tempfile.TemporaryDirectory() as tmp:
            args = argparse.Namespace(output_dir=tmp, cases=[4, 6, 10, 3], alpha=0.2, delta=0.1, coverage=0.6)
            with self.assertRaisesRegex(ValueError, "needs at least 32 labelled calibration cases at alpha=0.2, "
                                                    "delta=0.1; --cases gives 10"):
                example3d(args)  # (1 - 0.2) ** n <= 0.1 / 101 from n = 32 on
            args = argparse.Namespace(output_dir=tmp, cases=[4, 6, 10, 3], alpha=0.9, delta=0.1, coverage=0.9)
            with self.assertRaisesRegex(ValueError, "Intervals at coverage 0.9 need at least 17 labelled calibration "
                                                    "cases .*; --cases gives 10"):
                example3d(args)  # 9 scored cases: ceil(1 / 0.1 - 1), and as many again to fit the recalibration
            self.assertFalse((Path(tmp) / "data").exists())


class TestAddTrueQuality(unittest.TestCase):
    def setUp(self):
        """A label with class 1 in 8 voxels and a saved segmentation with 4 of them and 4 others: Dice 2 * 4 / 16 =
        0.5, IoU 4 / 12."""
        self.tmp = Path(tempfile.mkdtemp())
        label, seg = np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8)
        label[0, :2, :4] = 1
        seg[0, 0, :4], seg[1, 0, :4] = 1, 1
        (self.tmp / "deploy" / "case0").mkdir(parents=True)
        nib.save(nib.Nifti1Image(label, np.eye(4)), self.tmp / "label0.nii.gz")
        nib.save(nib.Nifti1Image(seg, np.eye(4)), self.tmp / "deploy" / "case0" / "case0_seg.nii.gz")
        self.labels = {str(self.tmp / "data" / "case0.nii.gz"): str(self.tmp / "label0.nii.gz")}

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_rows_match_by_case_name(self):
        """A table written in another folder (a copied or moved output folder keeps its old absolute paths) matches
        its datalist by case name; the row takes the datalist's image path."""
        rows = [{"image": "/old/out/data/case0.nii.gz", "pred_dice_a": 0.4}]
        (row,) = add_true_quality(rows, self.tmp / "deploy", self.labels, ["a"])
        self.assertEqual(row["image"], str(self.tmp / "data" / "case0.nii.gz"))
        self.assertAlmostEqual(row["true_dice_a"], 0.5, places=6)
        self.assertAlmostEqual(row["true_iou_a"], 1 / 3, places=6)
        self.assertEqual(row["pred_dice_a"], 0.4)

    def test_row_without_label_names_image_table_and_fix(self):
        rows = [{"image": "/old/out/data/case7.nii.gz", "pred_dice_a": 0.5}]
        with self.assertRaisesRegex(ValueError, r"/old/out/data/case7.nii.gz \(a row of .*deploy/quality.csv\) has no "
                                                r"label .*named case7.*deploy on the datalist's testing images"):
            add_true_quality(rows, self.tmp / "deploy", self.labels, ["a"])

    def test_two_images_with_one_case_name(self):
        labels = dict(self.labels, **{"/elsewhere/case0.nii.gz": str(self.tmp / "label0.nii.gz")})
        with self.assertRaisesRegex(ValueError, "share the case name 'case0'.*distinct file name"):
            add_true_quality([], self.tmp / "deploy", labels, ["a"])


class TestSummaryTable(unittest.TestCase):
    def test_summary_table_by_hand(self):
        rows = [{"pred_dice_a": p, "true_dice_a": t} for p, t in ((0.9, 0.95), (0.5, 0.4), (0.7, 0.85), (0.3, 0.2))]
        text = summary_table(rows, ["a"], threshold=0.8, num_resamples=200)
        # MAE = mean(|0.05|, |0.1|, |0.15|, |0.1|) = 0.1; failures: 0.4 and 0.2; AUROC: both failures have the
        # lowest predictions -> 1.0
        line = next(line for line in text.splitlines() if line.startswith("| a |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        self.assertEqual(cells[:5], ["a", "4", "0.600", "0.600", "2"])
        self.assertTrue(cells[5].startswith("0.100 ["), cells[5])
        self.assertTrue(cells[7].startswith("1.000"), cells[7])


if __name__ == "__main__":
    unittest.main()
