"""The logic that the configs wire by id, each piece with hand-computed answers: key lists, the inverse activation,
the handlers of a rank under ``torchrun``, the cases a run computes, the quality head's training items and batch."""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import torch
from monai.handlers import CheckpointLoader, StatsHandler

from segq_monai import InverseActivation, QualityWriter, inverted_keys, items_to_run, rank_handlers, scalar_map_keys
from segq_monai.data import load_stage2_items, prepare_quality_batch


class TestKeyLists(unittest.TestCase):
    def test_inverted_keys_once_each_image_last_label_out(self):
        self.assertEqual(inverted_keys(["entropy", "image", "seg", "entropy", "label"]), ["entropy", "seg", "image"])

    def test_inverted_keys_without_image(self):
        self.assertEqual(inverted_keys(["entropy", "mutual_information", "seg"]),
                         ["entropy", "mutual_information", "seg"])  # fmt: skip

    def test_the_overlay_default(self):
        # map keys ["entropy", "mutual_information"], quality keys ["image", "seg", "entropy"], no scalars
        self.assertEqual(inverted_keys(["entropy", "mutual_information", "image", "seg", "entropy"]),
                         ["entropy", "mutual_information", "seg", "image"])  # fmt: skip

    def test_scalar_map_keys(self):
        self.assertEqual(scalar_map_keys(["pairwise_dice", "foreground_entropy", "foreground_volume"]),
                         ["entropy", "seg", "seg"])  # fmt: skip
        self.assertEqual(scalar_map_keys([]), [])

    def test_unknown_scalar_is_named(self):
        with self.assertRaisesRegex(ValueError, "'volume'.*QUALITY_SCALARS"):
            scalar_map_keys(["volume"])


class TestInverseActivation(unittest.TestCase):
    def test_softmax_gives_back_the_probabilities(self):
        p = torch.tensor([[0.25, 0.5], [0.75, 0.5]])  # [C=2, 2]
        logits = InverseActivation("softmax")(p)
        torch.testing.assert_close(logits, torch.log(p))
        torch.testing.assert_close(torch.softmax(logits, dim=0), p)

    def test_softmax_of_zero_is_clamped(self):
        self.assertAlmostEqual(float(InverseActivation("softmax")(torch.tensor([0.0]))), -69.0776, places=3)  # ln 1e-30

    def test_sigmoid(self):
        p = torch.tensor([0.5, 0.8, 1.0], dtype=torch.float64)
        logits = InverseActivation("sigmoid")(p)
        self.assertAlmostEqual(float(logits[0]), 0.0, places=6)
        self.assertAlmostEqual(float(logits[1]), 1.386294, places=5)  # ln(0.8 / 0.2) = ln 4
        self.assertAlmostEqual(float(logits[2]), 13.815510, places=5)  # ln((1 - 1e-6) / 1e-6)

    def test_other_activation_refused(self):
        with self.assertRaisesRegex(ValueError, "'relu'.*segq#activation"):
            InverseActivation("relu")


class TestRankHandlers(unittest.TestCase):
    def setUp(self):
        self.loader = CheckpointLoader(load_path="model.pt", load_dict={"model": torch.nn.Linear(1, 1)})
        self.stats = StatsHandler()
        self.writer = QualityWriter(output_dir=tempfile.mkdtemp(), map_keys=["entropy"])
        self.handlers = [self.stats, self.loader, self.writer]

    def test_without_distributed_all(self):
        self.assertEqual(rank_handlers(self.handlers, [CheckpointLoader]), self.handlers)

    def test_rank_zero_all_other_ranks_only_every_rank_kinds_in_order(self):
        with mock.patch("torch.distributed.is_initialized", return_value=True):
            with mock.patch("torch.distributed.get_rank", return_value=0):
                self.assertEqual(rank_handlers(self.handlers, [CheckpointLoader]), self.handlers)
            with mock.patch("torch.distributed.get_rank", return_value=1):
                self.assertEqual(rank_handlers(self.handlers, [QualityWriter, CheckpointLoader]),
                                 [self.loader, self.writer])  # fmt: skip
                self.assertEqual(rank_handlers(self.handlers, []), [])


class TestItemsToRun(unittest.TestCase):
    def test_all_or_the_pending(self):
        out = Path(tempfile.mkdtemp())
        items = [{"image": f"/data/case{i}.nii.gz"} for i in range(3)]
        (out / "case0").mkdir()
        (out / "case0" / "case0_quality.json").write_text("{}")
        (out / "case0" / "case0_entropy.nii.gz").write_text("")
        self.assertEqual(items_to_run(items, out, ["entropy"], False), items)
        self.assertEqual(items_to_run(items, out, ["entropy"], "false"), items)
        self.assertEqual(items_to_run(items, out, ["entropy"], True), items[1:])
        self.assertEqual(items_to_run(items, out, ["entropy"], "true", batch_size=2), items)  # case1 shares its batch

    def test_bad_flag_names_the_id(self):
        with self.assertRaisesRegex(ValueError, "segq#skip_existing"):
            items_to_run([], ".", [], "yes", name="segq#skip_existing")


class TestQualityHeadTraining(unittest.TestCase):
    def test_stage2_items_cut_to_keys_optional_kept_where_present(self):
        tmp = Path(tempfile.mkdtemp())
        for name in ("a_image.nii.gz", "a_seg.nii.gz", "b_image.nii.gz", "b_seg.nii.gz"):
            (tmp / name).write_text("")
        cases = [{"image": "a_image.nii.gz", "seg": "a_seg.nii.gz", "true_dice": [0.9], "pairwise_dice": 0.8,
                  "label": "x"},
                 {"image": "b_image.nii.gz", "seg": "b_seg.nii.gz", "true_dice": [0.5]}]  # fmt: skip
        (tmp / "one.json").write_text(json.dumps({"training": cases[:1]}))
        (tmp / "two.json").write_text(json.dumps({"training": cases[1:]}))
        items = load_stage2_items([tmp / "one.json", tmp / "two.json"], ["image", "seg", "true_dice"],
                                  ["image", "seg"], ["pairwise_dice"])  # fmt: skip
        self.assertEqual(items, [
            {"image": str(tmp / "a_image.nii.gz"), "seg": str(tmp / "a_seg.nii.gz"), "true_dice": [0.9],
             "pairwise_dice": 0.8},
            {"image": str(tmp / "b_image.nii.gz"), "seg": str(tmp / "b_seg.nii.gz"), "true_dice": [0.5]},
        ])  # fmt: skip
        with self.assertRaisesRegex(ValueError, "two.json"):
            load_stage2_items([tmp / "two.json"], ["image", "seg", "true_dice", "entropy"], ["image"])

    def test_prepare_quality_batch(self):
        batch = {"quality_input": torch.ones(2, 3, 4, 4), "true_dice": torch.tensor([[0.5], [1.0]])}
        x, y = prepare_quality_batch(batch, "cpu")
        self.assertEqual(tuple(x.shape), (2, 3, 4, 4))
        torch.testing.assert_close(y, torch.tensor([[0.5], [1.0]]))
        x, y, args, kwargs = prepare_quality_batch({**batch, "scalars": torch.tensor([[0.1], [0.2]])}, "cpu", False)
        self.assertEqual(args, ())
        torch.testing.assert_close(kwargs["scalars"], torch.tensor([[0.1], [0.2]]))


if __name__ == "__main__":
    unittest.main()
