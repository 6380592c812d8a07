"""Shifted slices of the demo's shift split (segq_monai.data.shift): shapes, areas and image-label alignment."""

from __future__ import annotations

import unittest

import numpy as np

from segq_monai.data.shift import SHIFT_KINDS, random_geometry, shift_slice


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

    def test_random_geometry_moves_image_and_label_together(self):
        image, label = box()
        rng = np.random.default_rng(5)
        angles = []
        for _ in range(6):
            turned, turned_label, angle, zoom = random_geometry(image, label, rng)
            angles.append(angle)
            self.assertEqual(turned.shape, image.shape)
            self.assertEqual(turned_label.dtype, np.uint8)
            self.assertTrue(-180 <= angle <= 180 and 0.6 <= zoom <= 1.4)
            # the box stays inside the grid at these zooms: its area scales by zoom² (within its rim of pixels)
            expected = 30 * 40 * zoom**2
            self.assertLess(abs(int(turned_label.sum()) - expected), 2 * (30 + 40) * zoom + 4, (angle, zoom))
            self.assertGreater(turned[turned_label == 1].mean(), 85.0)
            self.assertLess(turned[turned_label == 0].mean(), 5.0)
        self.assertGreater(np.ptp(angles), 90)  # the angles vary
        again = random_geometry(image, label, np.random.default_rng(5))
        np.testing.assert_array_equal(again[1], random_geometry(image, label, np.random.default_rng(5))[1])

    def test_bad_input(self):
        image, label = box()
        with self.assertRaises(ValueError):
            shift_slice(image, label, "shear")
        with self.assertRaises(ValueError):
            shift_slice(image, label[:, :50], SHIFT_KINDS[0])
        with self.assertRaises(ValueError):
            random_geometry(image, label[:, :50], np.random.default_rng(0))


if __name__ == "__main__":
    unittest.main()
