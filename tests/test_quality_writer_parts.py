"""The jobs QualityWriter composes, one at a time: the table's row, the sidecars, the cohort order."""

from __future__ import annotations

import shutil
import tempfile
import unittest
from pathlib import Path

import torch

from segq_monai.handlers.cohort_order import CohortOrder
from segq_monai.handlers.quality_table import QualityTable
from segq_monai.handlers.sidecars import Sidecars


class TestQualityTable(unittest.TestCase):
    def test_row_and_entry(self):
        item = {"pred_dice": torch.tensor([0.5, 0.75]), "true_dice": torch.tensor([0.25, 1.0]),
                "flagged": torch.tensor(True), "baselines": {"mean_entropy": 0.3}}  # fmt: skip
        entry = {"image": "/d/a.nii.gz"}
        row = QualityTable(class_names=["x", "y"]).row(item, "a", "/d/a.nii.gz", entry)
        self.assertEqual(row, {"case": "a", "image": "/d/a.nii.gz", "pred_dice_x": 0.5, "pred_dice_y": 0.75,
                               "true_dice_x": 0.25, "true_dice_y": 1.0, "flagged": 1,
                               "baseline_mean_entropy": 0.3})  # fmt: skip
        self.assertEqual(entry["true_dice"], [0.25, 1.0])  # the stage-2 target travels with the entry


class TestSidecarsAndOrder(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def test_round_trip_and_order(self):
        sidecars = Sidecars(self.tmp)
        (self.tmp / "b").mkdir()
        sidecars.write("b", {"case": "b", "pred_dice": 0.4}, {"image": "/d/b.nii.gz"})
        self.assertEqual(sidecars.read("/d/b.nii.gz"), ({"case": "b", "pred_dice": 0.4}, {"image": "/d/b.nii.gz"}))
        with self.assertRaisesRegex(FileNotFoundError, "has no result"):
            sidecars.read("/d/c.nii.gz")
        order = CohortOrder(sidecars.read)
        rows = [{"case": "c"}, {"case": "a"}, {"case": "a"}]  # a repeated (padded sampler): kept once
        entries = [{"image": "/d/c.nii.gz"}, {"image": "/d/a.nii.gz"}, {"image": "/d/a.nii.gz"}]
        items = [{"image": "/d/a.nii.gz"}, {"image": "/d/b.nii.gz"}]
        got, _ = order(rows, entries, items, resume=True)
        self.assertEqual([r["case"] for r in got], ["a", "b", "c"])  # items first (b restored), then the rest
        got, _ = order(rows, entries, items, resume=False)
        self.assertEqual([r["case"] for r in got], ["a", "c"])
        with self.assertRaisesRegex(ValueError, "share the case name"):
            order([{"case": "a"}, {"case": "a"}], [{"image": "/d/a.nii.gz"}, {"image": "/e/a.nii.gz"}], [], False)


if __name__ == "__main__":
    unittest.main()
