"""Shifted slices of the demo's shift split (segq_monai.data.shift): shapes, areas and image-label alignment."""

from __future__ import annotations

import unittest

import numpy as np

from segq_monai.data.shift import SHIFT_KINDS, shift_slice


def box() -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((96, 112), np.float32)
    image[30:60, 40:80] = 100.0  # a 30 x 40 box off the centre
    return image, (image > 0).astype(np.uint8)


class TestShiftSlice(unittest.TestCase):
    def test_rotate90_is_exact(self):
        image, label = box()
        turned, turned_label = shift_slice(image, label, "rotate90")
        self.assertEqual(turned.shape, (112, 96))
        np.testing.assert_array_equal(turned_label, np.rot90(label))
        self.assertEqual(turned[112 - 80, 30], 100.0)  # pixel (30, 79) moves to (112 - 1 - 79, 30)

    def test_zoom_areas_and_alignment(self):
        image, label = box()
        for kind, factor in (("zoom_out", 2 / 3), ("zoom_in", 4 / 3)):
            shifted, shifted_label = shift_slice(image, label, kind)
            self.assertEqual(shifted.shape, image.shape)
            self.assertEqual(shifted_label.dtype, np.uint8)
            # the box's area scales by factor² (within a pixel row/column of the 30 x 40 box)
            expected = 30 * 40 * factor**2
            self.assertLess(abs(int(shifted_label.sum()) - expected), (30 + 40) * factor + 2, kind)
            # the label covers the bright pixels: image and label moved together
            self.assertGreater(shifted[shifted_label == 1].mean(), 90.0, kind)
            self.assertLess(shifted[shifted_label == 0].mean(), 5.0, kind)

    def test_bad_input(self):
        image, label = box()
        with self.assertRaises(ValueError):
            shift_slice(image, label, "shear")
        with self.assertRaises(ValueError):
            shift_slice(image, label[:, :50], SHIFT_KINDS[0])


if __name__ == "__main__":
    unittest.main()
