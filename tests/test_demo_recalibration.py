"""The site half of the demo's recalibration row and the benchmark that repeats it over many halves."""

from __future__ import annotations

import math
import unittest

from benchmarks.site_halves import summary

from segq_monai.apps.demo_recalibration import site_half

#: 5 slices, 2 artifact copies each
GROUPS = {f"{s}_v{v}.nii.gz": s for s in ("s0", "s1", "s2", "s3", "s4") for v in (0, 1)}


class TestSiteHalf(unittest.TestCase):
    def test_slices_of_a_seeded_permutation(self):
        # numpy.random.RandomState(0).permutation(["s0", ..., "s4"]) is [s2, s0, s1, s3, s4]; seed 1: [s2, s1, s4,
        # s0, s3]: the first 5 // 2 = 2 slices, with both copies of each
        self.assertEqual(site_half(GROUPS, 0), {"s2_v0.nii.gz", "s2_v1.nii.gz", "s0_v0.nii.gz", "s0_v1.nii.gz"})
        self.assertEqual(site_half(GROUPS, 1), {"s2_v0.nii.gz", "s2_v1.nii.gz", "s1_v0.nii.gz", "s1_v1.nii.gz"})

    def test_order_of_the_mapping_does_not_matter(self):
        reordered = dict(reversed(list(GROUPS.items())))
        self.assertEqual(site_half(reordered, 0), site_half(GROUPS, 0))


class TestHalvesSummary(unittest.TestCase):
    def test_by_hand(self):
        records = [{"coverage": c, "mean_width": w} for c, w in ((0.8, 0.2), (0.9, 0.3), (1.0, 0.4))]
        s = summary(records, target=0.88)
        self.assertAlmostEqual(s["coverage"]["mean"], 0.9)
        self.assertAlmostEqual(s["coverage"]["sd"], 0.1)  # sqrt((0.01 + 0 + 0.01) / 2)
        self.assertAlmostEqual(s["coverage"]["at_target"], 2 / 3)  # 0.9 and 1.0
        self.assertAlmostEqual(s["coverage"]["p5"], 0.81)  # numpy's linear percentile: 0.8 + 0.05 * 2 * 0.1
        self.assertAlmostEqual(s["mean_width"]["p95"], 0.39)
        self.assertNotIn("at_target", s["mean_width"])
        self.assertNotIn("coverage_normalised", s)  # absent from every record
        self.assertTrue(math.isclose(s["mean_width"]["mean"], 0.3))


if __name__ == "__main__":
    unittest.main()
