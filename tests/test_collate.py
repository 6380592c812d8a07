"""``padded_collate`` and ``Untracked``: training batches of cases of several sizes, augmentation without metadata."""

from __future__ import annotations

import unittest

import torch
from monai.data import MetaTensor, get_track_meta
from monai.transforms import RandFlipd

from segq_monai import Untracked
from segq_monai.data import padded_collate


class TestPaddedCollate(unittest.TestCase):
    def test_pads_at_the_end_with_zeros(self):
        a = {"image": torch.ones(1, 2, 3), "true_dice": torch.tensor([0.5]), "name": "a"}
        b = {"image": torch.full((1, 3, 2), 2.0), "true_dice": torch.tensor([0.25]), "name": "b"}
        batch = padded_collate([a, b])
        self.assertEqual(tuple(batch["image"].shape), (2, 1, 3, 3))
        expected = torch.tensor([[[1, 1, 1], [1, 1, 1], [0, 0, 0]], [[2, 2, 0], [2, 2, 0], [2, 2, 0]]], dtype=torch.float)
        torch.testing.assert_close(batch["image"][:, 0], expected)
        torch.testing.assert_close(batch["true_dice"], torch.tensor([[0.5], [0.25]]))
        self.assertEqual(batch["name"], ["a", "b"])

    def test_equal_shapes_as_default_collate(self):
        items = [{"image": torch.rand(2, 4, 4)} for _ in range(3)]
        torch.testing.assert_close(padded_collate(items)["image"], torch.stack([i["image"] for i in items]))


class TestUntracked(unittest.TestCase):
    def test_plain_tensors_out_tracking_restored(self):
        flip = Untracked([RandFlipd("image", prob=1.0, spatial_axis=0)])
        x = MetaTensor(torch.arange(6.0).reshape(1, 2, 3))
        out = flip({"image": x})["image"]
        self.assertNotIsInstance(out, MetaTensor)
        torch.testing.assert_close(out, torch.arange(6.0).reshape(1, 2, 3).flip(1))
        self.assertTrue(get_track_meta())

    def test_tracking_restored_after_an_error(self):
        with self.assertRaises(Exception):
            Untracked([RandFlipd("image", prob=1.0)])({"other": torch.zeros(1, 2, 2)})
        self.assertTrue(get_track_meta())


if __name__ == "__main__":
    unittest.main()
