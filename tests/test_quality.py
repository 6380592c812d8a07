"""Tests for segq_monai.metrics.quality: Dice/IoU per foreground class against hand-computed masks and sklearn."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from parameterized import parameterized
from sklearn.metrics import f1_score, jaccard_score

from segq_monai.metrics.quality import dice_to_iou, iou_to_dice, segmentation_quality

# (name, seg, label, num_classes, dice, iou); maps are one case [1, *spatial]
HAND_CASES = [
    ("binary_1d_row", [[[0, 1, 1, 0]]], [[[0, 1, 0, 0]]], 2, [2 / 3], [1 / 2]),
    ("identical", [[[0, 1], [1, 1]]], [[[0, 1], [1, 1]]], 2, [1.0], [1.0]),
    ("disjoint", [[[1, 0], [0, 0]]], [[[0, 0], [0, 1]]], 2, [0.0], [0.0]),
    # class 1: seg {1,2}, label {0,1}: inter 1 -> 2/4, 1/3; class 2: seg {3,4,5}, label {2,3}: 2/5, 1/4
    ("three_classes", [[[0, 1, 1, 2, 2, 2]]], [[[1, 1, 2, 2, 0, 0]]], 3, [0.5, 0.4], [1 / 3, 1 / 4]),
    # 2D 3x3: seg has 4 pixels, label 6, overlap 4 -> 8/10, 4/6
    ("square_2d", [[[1, 1, 0], [1, 1, 0], [0, 0, 0]]], [[[1, 1, 1], [1, 1, 1], [0, 0, 0]]], 2, [0.8], [2 / 3]),
    # 3D [1, 2, 2, 2]: seg 2 voxels, label 1 voxel inside it
    ("cube_3d", [[[[1, 1], [0, 0]], [[0, 0], [0, 0]]]], [[[[1, 0], [0, 0]], [[0, 0], [0, 0]]]], 2, [2 / 3], [1 / 2]),
]

# empty-mask convention: both empty -> 1, one empty -> 0 (class 2 here), per class
EMPTY_CASES = [
    ("both_empty", [[[0, 0, 0]]], [[[0, 0, 0]]], 2, [1.0], [1.0]),
    ("seg_empty", [[[0, 0, 0]]], [[[0, 1, 0]]], 2, [0.0], [0.0]),
    ("label_empty", [[[0, 1, 0]]], [[[0, 0, 0]]], 2, [0.0], [0.0]),
    ("class_absent_in_both", [[[0, 1, 1]]], [[[0, 1, 1]]], 3, [1.0, 1.0], [1.0, 1.0]),
    ("class_2_only_in_seg", [[[0, 1, 2]]], [[[0, 1, 1]]], 3, [2 / 3, 0.0], [1 / 2, 0.0]),
]


class TestSegmentationQuality(unittest.TestCase):
    @parameterized.expand(HAND_CASES + EMPTY_CASES)
    def test_hand_computed(self, _, seg, label, num_classes, dice, iou):
        for cast in (torch.tensor, np.array):
            d, j = segmentation_quality(cast(seg), cast(label), num_classes)
            self.assertEqual(tuple(d.shape), (num_classes - 1,))
            self.assertEqual(d.dtype, torch.float32)
            np.testing.assert_allclose(d.numpy(), dice, rtol=1e-6)
            np.testing.assert_allclose(j.numpy(), iou, rtol=1e-6)

    @parameterized.expand([("2d", (4, 1, 9, 7), 4), ("3d", (3, 1, 5, 6, 4), 3)])
    def test_batch_matches_sklearn(self, _, shape, num_classes):
        rng = np.random.default_rng(0)
        seg = rng.integers(0, num_classes, shape)
        label = rng.integers(0, num_classes, shape)
        dice, iou = segmentation_quality(torch.as_tensor(seg), torch.as_tensor(label), num_classes, batched=True)
        self.assertEqual(tuple(dice.shape), (shape[0], num_classes - 1))
        labels = list(range(1, num_classes))
        for b in range(shape[0]):
            y_true, y_pred = label[b].ravel(), seg[b].ravel()
            np.testing.assert_allclose(dice[b], f1_score(y_true, y_pred, labels=labels, average=None), rtol=1e-5)
            np.testing.assert_allclose(iou[b], jaccard_score(y_true, y_pred, labels=labels, average=None), rtol=1e-5)
            one_d, one_j = segmentation_quality(seg[b], label[b], num_classes)
            np.testing.assert_allclose(one_d, dice[b])
            np.testing.assert_allclose(one_j, iou[b])

    def test_float_and_bool_integer_maps_accepted(self):
        d, _ = segmentation_quality(torch.tensor([[[0.0, 1.0, 1.0]]]), torch.tensor([[[False, True, True]]]), 2)
        np.testing.assert_allclose(d, [1.0])

    def test_iou_dice_relation(self):
        rng = np.random.default_rng(1)
        seg, label = rng.integers(0, 3, (1, 12, 12)), rng.integers(0, 3, (1, 12, 12))
        dice, iou = segmentation_quality(seg, label, 3)
        np.testing.assert_allclose(dice_to_iou(dice), iou, rtol=1e-6)
        np.testing.assert_allclose(iou_to_dice(iou), dice, rtol=1e-6)

    @parameterized.expand(
        [
            ("shape_mismatch", [[[0, 1, 1]]], [[[0, 1]]], 2, False, r"\(1, 1, 3\).*\(1, 1, 2\)"),
            ("label_out_of_range", [[[0, 1]]], [[[0, 3]]], 2, False, r"label has values \[3\].*num_classes"),
            ("negative_seg", [[[0, -1]]], [[[0, 1]]], 2, False, r"seg has values \[-1\]"),
            ("non_integer", [[[0.0, 0.4]]], [[[0, 1]]], 2, False, r"non-integer values \[0\.4"),
            ("num_classes_1", [[[0, 1]]], [[[0, 1]]], 1, False, r"num_classes"),
            ("two_channels", [[[0, 1]], [[0, 1]]], [[[0, 1]], [[0, 1]]], 2, False, r"\[1, H, W\[, D\]\]"),
            ("batched_rank_too_low", [[[0, 1]]], [[[0, 1]]], 2, True, r"\[B, 1, H, W\[, D\]\]"),
        ]
    )
    def test_errors(self, _, seg, label, num_classes, batched, pattern):
        with self.assertRaisesRegex(ValueError, pattern):
            segmentation_quality(torch.tensor(seg), torch.tensor(label), num_classes, batched=batched)


class TestDiceIou(unittest.TestCase):
    @parameterized.expand([(0.0, 0.0), (1.0, 1.0), (2 / 3, 1 / 2), (0.8, 2 / 3), (0.4, 0.25)])
    def test_pairs(self, dice, iou):
        self.assertAlmostEqual(dice_to_iou(dice), iou)
        self.assertAlmostEqual(iou_to_dice(iou), dice)

    def test_round_trip_types(self):
        d = np.linspace(0, 1, 11)
        np.testing.assert_allclose(iou_to_dice(dice_to_iou(d)), d)
        t = torch.linspace(0, 1, 11)
        torch.testing.assert_close(iou_to_dice(dice_to_iou(t)), t)


if __name__ == "__main__":
    unittest.main()
