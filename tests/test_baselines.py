"""Tests for segq_monai.metrics.baselines: scalar confidences on hand-made maps with known values."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from parameterized import parameterized

from segq_monai.metrics.baselines import (
    BASELINES,
    boundary_band,
    foreground_entropy,
    mean_entropy,
    mean_mutual_information,
    non_boundary_entropy,
    pairwise_dice,
)
from segq_monai.transforms.baselines import ScalarBaselinesd


def _square(size: int, lo: int, hi: int) -> np.ndarray:
    """[size, size] bool, True on rows and columns lo..hi-1."""
    m = np.zeros((size, size), dtype=bool)
    m[lo:hi, lo:hi] = True
    return m


# 10x10 image, predicted square on rows/cols 3..6 (4x4 = 16 px)
SEG10 = _square(10, 3, 7).astype(np.int64)[None]
INNER1 = _square(10, 3, 7) & ~_square(10, 4, 6)  # 16 - 4 = 12 px
OUTER1 = _square(10, 2, 8) & ~_square(10, 3, 7)  # 36 - 16 = 20 px
OUTER2 = _square(10, 1, 9) & ~_square(10, 3, 7)  # 64 - 16 = 48 px


class TestBoundaryBand(unittest.TestCase):
    @parameterized.expand(
        [
            ("width_1", 1, INNER1 | OUTER1, 32),
            ("width_2", 2, _square(10, 3, 7) | OUTER2, 64),  # the 4x4 square is all within 2 px of its edge
        ]
    )
    def test_square(self, _, width, expected, count):
        band = boundary_band(SEG10, width)
        self.assertEqual(int(band.sum()), count)
        np.testing.assert_array_equal(band, expected)

    def test_image_edge_is_not_a_boundary(self):
        seg = np.zeros((1, 6, 6), dtype=np.int64)
        seg[0, :, :3] = 1  # left half; the only boundary is between columns 2 and 3
        expected = np.zeros((6, 6), dtype=bool)
        expected[:, 2:4] = True
        np.testing.assert_array_equal(boundary_band(seg, 1), expected)

    def test_boundary_between_foreground_classes(self):
        seg = np.ones((1, 4, 6), dtype=np.int64)
        seg[0, :, 3:] = 2  # no background at all
        expected = np.zeros((4, 6), dtype=bool)
        expected[:, 2:4] = True
        np.testing.assert_array_equal(boundary_band(torch.as_tensor(seg), 1), expected)

    def test_multi_channel_seg_is_union(self):
        two = np.stack([SEG10[0], np.zeros((10, 10), dtype=np.int64)])
        np.testing.assert_array_equal(boundary_band(two, 1), INNER1 | OUTER1)

    def test_bad_width(self):
        with self.assertRaisesRegex(ValueError, "width"):
            boundary_band(SEG10, 0)


class TestBaselines(unittest.TestCase):
    def setUp(self):
        # entropy: 2 on the width-1 band, 1 in the 2x2 centre, 0.5 everywhere else
        h = np.full((10, 10), 0.5)
        h[INNER1 | OUTER1] = 2.0
        h[4:6, 4:6] = 1.0
        self.entropy = h[None]

    def test_mean_entropy(self):
        expected = (32 * 2.0 + 4 * 1.0 + 64 * 0.5) / 100
        self.assertAlmostEqual(mean_entropy(self.entropy), -expected)
        self.assertAlmostEqual(mean_entropy(torch.as_tensor(self.entropy)), -expected)

    @parameterized.expand(
        [
            ("plain_foreground", 0, (12 * 2.0 + 4 * 1.0) / 16),
            ("dilated_by_one", 1, (32 * 2.0 + 4 * 1.0) / 36),
            ("dilated_by_two", 2, (32 * 2.0 + 4 * 1.0 + 28 * 0.5) / 64),
        ]
    )
    def test_foreground_entropy(self, _, dilation, expected):
        self.assertAlmostEqual(foreground_entropy(self.entropy, SEG10, dilation=dilation), -expected)

    def test_foreground_entropy_empty_uses_whole_image(self):
        empty = np.zeros_like(SEG10)
        self.assertAlmostEqual(foreground_entropy(self.entropy, empty), mean_entropy(self.entropy))

    @parameterized.expand(
        [
            ("width_1", 1, (4 * 1.0 + 64 * 0.5) / 68),  # keeps the centre and everything outside the 6x6 square
            ("width_2", 2, 0.5),  # keeps only what lies outside the 8x8 square
        ]
    )
    def test_non_boundary_entropy(self, _, width, expected):
        self.assertAlmostEqual(non_boundary_entropy(self.entropy, SEG10, width=width), -expected)

    def test_non_boundary_entropy_fallbacks(self):
        # no boundary at all -> whole image
        self.assertAlmostEqual(
            non_boundary_entropy(self.entropy, np.zeros_like(SEG10)), mean_entropy(self.entropy)
        )
        # band covers the whole (small) image -> whole image
        seg = _square(4, 1, 3).astype(np.int64)[None]
        h = np.arange(16, dtype=float).reshape(1, 4, 4)
        self.assertAlmostEqual(non_boundary_entropy(h, seg, width=2), -7.5)

    def test_mean_mutual_information(self):
        mi = np.zeros((1, 4, 4, 4))
        mi[0, 0] = 0.8  # a quarter of the volume
        self.assertAlmostEqual(mean_mutual_information(mi), -0.2)

    @parameterized.expand(
        [("binary", [0.9], 0.9), ("two_classes", [0.9, 0.7], 0.8), ("tensor", torch.tensor([0.5, 1.0, 0.0]), 0.5)]
    )
    def test_pairwise_dice(self, _, values, expected):
        self.assertAlmostEqual(pairwise_dice(values), expected)

    def test_higher_is_better(self):
        calm, noisy = self.entropy * 0.1, self.entropy
        for fn in (mean_entropy, mean_mutual_information):
            self.assertGreater(fn(calm), fn(noisy))
        for fn in (foreground_entropy, non_boundary_entropy):
            self.assertGreater(fn(calm, SEG10), fn(noisy, SEG10))

    @parameterized.expand(
        [
            ("entropy_two_channels", lambda: mean_entropy(np.zeros((2, 4, 4))), "one-channel"),
            ("seg_grid_mismatch", lambda: foreground_entropy(np.zeros((1, 4, 4)), np.zeros((1, 4, 5))), r"\(1, 4, 5\)"),
            ("empty_pairwise", lambda: pairwise_dice([]), "empty"),
            ("negative_dilation", lambda: foreground_entropy(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), -1), "dilation"),
        ]
    )
    def test_errors(self, _, call, pattern):
        with self.assertRaisesRegex(ValueError, pattern):
            call()


class TestScalarBaselinesd(unittest.TestCase):
    def setUp(self):
        rng = np.random.default_rng(0)
        seg = np.zeros((1, 12, 12), dtype=np.int64)
        seg[0, 3:9, 2:8] = 1
        self.data = {
            "entropy": torch.as_tensor(rng.random((1, 12, 12))),
            "mutual_information": torch.as_tensor(rng.random((1, 12, 12)) * 0.1),
            "seg": torch.as_tensor(seg),
            "pairwise_dice": torch.tensor([0.7, 0.9]),
        }

    def test_all(self):
        out = ScalarBaselinesd()(self.data)["baselines"]
        self.assertEqual(tuple(out), BASELINES)
        d = self.data
        expected = {
            "mean_entropy": mean_entropy(d["entropy"]),
            "foreground_entropy": foreground_entropy(d["entropy"], d["seg"]),
            "non_boundary_entropy": non_boundary_entropy(d["entropy"], d["seg"]),
            "mean_mutual_information": mean_mutual_information(d["mutual_information"]),
            "pairwise_dice": 0.8,
        }
        for name, value in expected.items():
            self.assertIsInstance(out[name], float)
            self.assertAlmostEqual(out[name], value)

    @parameterized.expand(
        [
            ("no_mi_no_pairwise", ["mutual_information", "pairwise_dice"], BASELINES[:3]),
            ("no_seg", ["seg"], ("mean_entropy", "mean_mutual_information", "pairwise_dice")),
            ("only_pairwise", ["entropy", "mutual_information", "seg"], ("pairwise_dice",)),
        ]
    )
    def test_skips_absent_keys(self, _, drop, names):
        data = {k: v for k, v in self.data.items() if k not in drop}
        self.assertEqual(tuple(ScalarBaselinesd()(data)["baselines"]), names)

    def test_options_and_keys(self):
        data = {"h": self.data["entropy"], "s": self.data["seg"]}
        out = ScalarBaselinesd(entropy_key="h", seg_key="s", output_key="b", width=1, dilation=0)(data)["b"]
        self.assertAlmostEqual(out["foreground_entropy"], foreground_entropy(data["h"], data["s"], dilation=0))
        self.assertAlmostEqual(out["non_boundary_entropy"], non_boundary_entropy(data["h"], data["s"], width=1))


if __name__ == "__main__":
    unittest.main()
