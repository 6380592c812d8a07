"""QualityScalars(d): per-case aggregates of stage 1's outputs for the quality head, on small maps worked by hand."""

from __future__ import annotations

import unittest

import torch
from parameterized import parameterized

from segq_monai.transforms import QUALITY_SCALARS, QualityScalars, QualityScalarsD, QualityScalarsd, foreground_fraction

# a 4 x 4 case: one foreground voxel at (0, 0); dilated by one voxel (Chebyshev) it covers (0..1, 0..1)
SEG = torch.zeros(1, 4, 4, dtype=torch.int64)
SEG[0, 0, 0] = 1
ENTROPY = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4) / 16  # nats
MI = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4) * 0.01  # nats, mean 0.075
PAIRWISE = torch.tensor([0.6, 0.8])  # two foreground classes


def _case() -> dict:
    return {"seg": SEG, "entropy": ENTROPY, "mutual_information": MI, "pairwise_dice": PAIRWISE}


class TestQualityScalars(unittest.TestCase):
    @parameterized.expand(
        [
            ("pairwise_dice", 0.7),  # mean of 0.6 and 0.8
            ("foreground_entropy", (0 + 1 + 4 + 5) / 16 / 4),  # voxels (0,0), (0,1), (1,0), (1,1)
            ("mutual_information", 0.075),  # 0.01 * mean(0..15)
            ("foreground_volume", 1 / 16),
        ]
    )
    def test_each_by_hand(self, name, expected):
        out = QualityScalars([name])(**_case())
        self.assertEqual(out.dtype, torch.float32)
        self.assertEqual(tuple(out.shape), (1,))
        self.assertAlmostEqual(float(out[0]), expected, places=6)

    def test_order_follows_names(self):
        out = QualityScalars(["foreground_volume", "pairwise_dice"])(**_case())
        torch.testing.assert_close(out, torch.tensor([1 / 16, 0.7]))

    def test_empty_prediction_uses_the_whole_image(self):
        seg = torch.zeros(1, 4, 4, dtype=torch.int64)
        out = QualityScalars(["foreground_entropy", "foreground_volume"])(seg=seg, entropy=ENTROPY)
        torch.testing.assert_close(out, torch.tensor([7.5 / 16, 0.0]))

    def test_multi_label_masks(self):
        seg = torch.zeros(2, 2, 2, dtype=torch.int64)
        seg[0, 0, 0] = seg[1, 0, 0] = seg[1, 1, 1] = 1  # two voxels in either mask
        self.assertEqual(foreground_fraction(seg), 0.5)

    def test_inputs_and_bad_input(self):
        self.assertEqual(QualityScalars(["foreground_entropy", "foreground_volume"]).inputs, ("entropy", "seg"))
        with self.assertRaisesRegex(ValueError, "names must be some of"):
            QualityScalars(["volume"])
        with self.assertRaisesRegex(ValueError, "names must be some of"):
            QualityScalars([])
        with self.assertRaisesRegex(ValueError, r"need \['pairwise_dice'\] too"):
            QualityScalars(["pairwise_dice"])(seg=SEG)
        self.assertEqual(set(QUALITY_SCALARS), {"pairwise_dice", "foreground_entropy", "mutual_information",
                                                "foreground_volume"})  # fmt: skip


class TestQualityScalarsd(unittest.TestCase):
    def test_writes_the_vector(self):
        out = QualityScalarsd(list(QUALITY_SCALARS))(_case())
        torch.testing.assert_close(out["scalars"], torch.tensor([0.7, 10 / 64, 0.075, 1 / 16]))
        self.assertIs(QualityScalarsD, QualityScalarsd)

    def test_custom_keys(self):
        d = {"s": SEG, "p": PAIRWISE}
        out = QualityScalarsd(["foreground_volume", "pairwise_dice"], output_key="v", seg_key="s", pairwise_key="p")(d)
        torch.testing.assert_close(out["v"], torch.tensor([1 / 16, 0.7]))

    def test_missing_key_names_it(self):
        case = _case()
        del case["pairwise_dice"]
        with self.assertRaisesRegex(ValueError, r"needs the keys \['pairwise_dice'\].*sample the cases again"):
            QualityScalarsd(["pairwise_dice"])(case)


if __name__ == "__main__":
    unittest.main()
