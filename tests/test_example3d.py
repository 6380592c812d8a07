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
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from segq_testing import REPO, read_csv

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
    def test_row_without_label_names_image_table_and_fix(self):
        """A deploy table of another folder (a copied output folder keeps its absolute paths) is refused by name."""
        rows = [{"image": "/old/out/data/imagesTs/case0.nii.gz", "pred_dice_a": 0.5}]
        labels = {"/new/out/data/imagesTs/case0.nii.gz": "/new/out/data/labelsTs/case0.nii.gz"}
        with self.assertRaisesRegex(ValueError, r"/old/out/data/imagesTs/case0.nii.gz \(a row of /new/out/deploy/"
                                                r"quality.csv\) has no label .* run into a new --output_dir"):
            add_true_quality(rows, "/new/out/deploy", labels, ["a"])


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
