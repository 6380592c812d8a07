"""The quality head's training augmentation (``train_quality.json`` ``train#random_transforms``): flips, rotations
and zooms that move the image, the segmentation and the uncertainty map together, so that the head learns quality
from how they agree, not from the orientation or the grid of the training slices (issue #12)."""

from __future__ import annotations

import math
import unittest

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor

from segq_monai.utils.resources import bundle_root


def _preprocessing(**overrides):
    parser = ConfigParser()
    parser.read_config(str(bundle_root() / "configs" / "train_quality.json"))
    for key, value in overrides.items():
        parser[key] = value
    return parser


def _case(seed: int = 0) -> dict:
    """An off-centre ellipse: image 1 inside (0 outside), seg = its mask, entropy 0.5 on its rim, Dice 0.7."""
    yy, xx = np.mgrid[:64, :80]
    inside = ((yy - 26) / 14.0) ** 2 + ((xx - 46) / 22.0) ** 2 <= 1
    rim = inside & ~(((yy - 26) / 12.0) ** 2 + ((xx - 46) / 20.0) ** 2 <= 1)
    return {
        "image": MetaTensor(torch.as_tensor(inside[None], dtype=torch.float32)),
        "seg": MetaTensor(torch.as_tensor(inside[None], dtype=torch.float32)),
        "entropy": MetaTensor(torch.as_tensor(rim[None] * 0.5, dtype=torch.float32)),
        "true_dice": torch.tensor([0.7]),
    }


def _augment(parser: ConfigParser, case: dict, seed: int) -> torch.Tensor:
    transforms = parser.get_parsed_content("train#random_transforms") + parser.get_parsed_content(
        "train#stack_transforms"
    )
    out = dict(case)
    for t in transforms:
        if hasattr(t, "set_random_state"):
            t.set_random_state(seed)
        out = t(out)
    return out


class TestQualityAugmentation(unittest.TestCase):
    def test_moves_image_seg_and_map_together(self):
        parser = _preprocessing()
        moved = 0
        for seed in range(12):
            out = _augment(parser, _case(), seed)
            x = out["quality_input"]
            self.assertEqual(tuple(x.shape), (4, 64, 80))  # image, one-hot seg (2), entropy; the grid is kept
            np.testing.assert_allclose(out["true_dice"].numpy(), [0.7])  # the target is not touched
            image, background, foreground, entropy = x
            # the segmentation is resampled by nearest neighbour: still one-hot
            self.assertTrue(torch.all((foreground == 0) | (foreground == 1)))
            torch.testing.assert_close(background + foreground, torch.ones_like(foreground))
            # the image (bilinear) and the segmentation were moved by the same rotation and zoom
            inside = image > 0.5
            iou = (inside & (foreground == 1)).sum() / (inside | (foreground == 1)).sum()
            self.assertGreater(float(iou), 0.9)
            # the rim of the entropy map stays on the border of the segmentation
            self.assertGreater(float(entropy[foreground == 1].sum() + 1e-9), 0.5 * float(entropy.sum()))
            moved += not torch.equal(foreground, _case()["seg"][0].as_tensor())
        self.assertGreaterEqual(moved, 9)  # prob 0.8 of an affine, plus the flips

    def test_rotations_cover_every_angle_in_2d(self):
        grid = _preprocessing().get_parsed_content("train#random_transforms")[2].rand_affine.rand_affine_grid
        grid.set_random_state(0)
        angles, scales = [], []
        for _ in range(400):
            grid.randomize()
            angles.append(grid.rotate_params[0])
            scales.append(grid.scale_params)
        self.assertLess(min(angles), -0.95 * math.pi)  # uniform in [-pi, pi]: 90 degrees either way included
        self.assertGreater(max(angles), 0.95 * math.pi)
        scales = np.asarray(scales)  # one factor per axis, each uniform in [0.6, 1.4]
        self.assertEqual(scales.shape, (400, 2))
        self.assertTrue(np.all((scales >= 0.6) & (scales <= 1.4)))
        self.assertLess(scales.min(), 0.62)
        self.assertGreater(scales.max(), 1.38)
        grid3d = _preprocessing(spatial_dims=3).get_parsed_content("train#random_transforms")[2].rand_affine
        grid3d = grid3d.rand_affine_grid
        grid3d.randomize()
        self.assertEqual(len(grid3d.rotate_params), 3)  # about each axis, at most 30 degrees in 3D
        self.assertTrue(all(abs(a) <= math.pi / 6 for a in grid3d.rotate_params))

    def test_off_keeps_the_case(self):
        parser = _preprocessing(augment_prob=0.0)
        parser["train#random_transforms"] = parser["train#random_transforms"][2:]  # the flips off too
        out = _augment(parser, _case(), 0)
        torch.testing.assert_close(out["quality_input"][2], _case()["seg"][0].as_tensor())


if __name__ == "__main__":
    unittest.main()
