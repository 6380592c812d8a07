"""Tests for segq_monai.networks.QualityRegressor (shapes, range, input checks, that it learns) and quality_strides."""

from __future__ import annotations

import time
import unittest

import pytest
import torch
from parameterized import parameterized

from segq_monai.networks import QualityRegressor, quality_strides

SHAPE_CASES = [
    # (name, constructor kwargs, input shape, output shape)
    ("2d_default", {"spatial_dims": 2, "in_channels": 4, "out_channels": 1}, (2, 4, 32, 32), (2, 1)),
    ("2d_odd_size", {"spatial_dims": 2, "in_channels": 3, "out_channels": 2}, (3, 3, 17, 45), (3, 2)),
    ("2d_min_size_instance", {"spatial_dims": 2, "in_channels": 1, "out_channels": 1}, (2, 1, 16, 17), (2, 1)),
    (
        "2d_min_size_batchnorm",
        {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "norm": "batch"},
        (2, 1, 16, 16),
        (2, 1),
    ),
    (
        "2d_plain_conv_batchnorm",
        {"spatial_dims": 2, "in_channels": 2, "out_channels": 3, "num_res_units": 0, "norm": "batch", "dropout": 0.2},
        (4, 2, 24, 20),
        (4, 3),
    ),
    (
        "3d_small",
        {"spatial_dims": 3, "in_channels": 5, "out_channels": 2, "channels": (8, 16), "strides": (2, 2)},
        (2, 5, 8, 12, 9),
        (2, 2),
    ),
    ("3d_default", {"spatial_dims": 3, "in_channels": 2, "out_channels": 1}, (1, 2, 16, 32, 16), (1, 1)),
    (
        "3d_thin_stack_per_axis",
        {"spatial_dims": 3, "in_channels": 2, "out_channels": 3, "strides": [[2, 2, 1], [2, 2, 1], [2, 2, 2], [2, 2, 1]]},
        (2, 2, 32, 32, 10),
        (2, 3),
    ),
    ("3d_three_slices", {"spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": (4, 8),
                         "strides": [(2, 2, 1), (2, 1, 1)]}, (1, 1, 8, 5, 3), (1, 1)),  # fmt: skip
]

# (name, shape, spacing, levels, expected strides), worked by hand: halve an axis while ceil(size / 2) >= 4 and its
# spacing is <= 2x the finest (spacings double with each halving)
STRIDE_CASES = [
    ("isotropic_big", (512, 512, 120), None, 4, [[2, 2, 2]] * 4),
    ("short_axis", (128, 128, 10), (1.25, 1.25, 8.0), 4, [[2, 2, 1], [2, 2, 1], [2, 2, 2], [2, 2, 1]]),
    ("thin_stack_small", (32, 32, 10), (1.0, 1.0, 1.0), 4, [[2, 2, 2], [2, 2, 1], [2, 2, 1], [1, 1, 1]]),
    ("five_x_coarse", (24, 24, 24), (1.0, 1.0, 5.0), 3, [[2, 2, 1], [2, 2, 1], [1, 1, 2]]),
    ("2d_odd", (17, 45), (1.0, 1.0), 4, [[2, 2], [2, 2], [1, 2], [1, 1]]),
    ("three_slices", (16, 16, 3), None, 2, [[2, 2, 1], [2, 2, 1]]),
]


class TestQualityRegressorShapes(unittest.TestCase):
    @parameterized.expand(SHAPE_CASES)
    def test_shape_and_range(self, _, kwargs, in_shape, out_shape):
        net = QualityRegressor(**kwargs)
        net.eval()
        with torch.no_grad():
            out = net(torch.randn(in_shape) * 10)
        self.assertEqual(tuple(out.shape), out_shape)
        self.assertTrue(((out >= 0) & (out <= 1)).all())

    @parameterized.expand(
        [
            ("rank_too_low", (4, 32, 32), "rank 4"),
            ("rank_3d_for_2d", (1, 4, 16, 16, 16), "rank 4"),
            ("wrong_channels", (1, 3, 32, 32), "expects 4 input channels, got 3"),
            ("too_small", (1, 4, 8, 32), r"product of its axis' strides = \(16, 16\)"),
            ("instance_norm_single_element", (1, 4, 16, 16), r"shrinks to \(1, 1\)"),
        ]
    )
    def test_bad_input(self, _, in_shape, pattern):
        net = QualityRegressor(2, 4, 1)
        with self.assertRaisesRegex(ValueError, pattern):
            net(torch.zeros(in_shape))

    @parameterized.expand(
        [
            ("spatial_dims", {"spatial_dims": 1}),
            ("in_channels", {"in_channels": 0}),
            ("lengths", {"channels": (8, 16), "strides": (2,)}),
            ("res_units", {"num_res_units": -1}),
            ("stride_axes", {"channels": (8,), "strides": [[2, 2, 2]]}),
            ("stride_zero", {"channels": (8,), "strides": [0]}),
            ("dropout", {"dropout": 1.0}),
            ("num_scalars", {"num_scalars": -1}),
        ]
    )
    def test_bad_arguments(self, _, override):
        kwargs = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, **override}
        with self.assertRaises(ValueError):
            QualityRegressor(**kwargs)


class TestQualityRegressorScalars(unittest.TestCase):
    """``num_scalars``: a per-case vector joined to the pooled features before the head's first layer."""

    def test_default_weights_unchanged(self):
        torch.manual_seed(0)
        net = QualityRegressor(2, 4, 1)
        names = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        self.assertEqual(names["head.1.weight"], (128, 128))
        torch.manual_seed(0)
        again = QualityRegressor(2, 4, 1, num_scalars=0)
        for k, v in again.state_dict().items():
            torch.testing.assert_close(v, net.state_dict()[k])

    def test_scalars_join_the_pooled_features(self):
        torch.manual_seed(0)
        net = QualityRegressor(2, 4, 2, channels=(4, 8), strides=(2, 2), num_scalars=3).eval()
        self.assertEqual(tuple(net.head[1].weight.shape), (8, 11))
        x, s = torch.rand(2, 4, 16, 16), torch.rand(2, 3)
        with torch.no_grad():
            pooled = net.pool(net.encoder(x)).flatten(1)
            by_hand = net.head[1:](torch.cat([pooled, s], dim=1))
            torch.testing.assert_close(net(x, s), by_hand)
            self.assertFalse(torch.allclose(net(x, s), net(x, s + 1)))
            net.head[1].weight[:, 8:] = 0  # the scalars' columns: without them the output ignores the scalars
            torch.testing.assert_close(net(x, s), net(x, s + 1))

    def test_scalars_checked(self):
        net = QualityRegressor(2, 4, 1, channels=(4, 8), strides=(2, 2), num_scalars=2)
        with self.assertRaisesRegex(ValueError, r"needs scalars \[B, 2\] = \[1, 2\], got None"):
            net(torch.rand(1, 4, 16, 16))
        with self.assertRaisesRegex(ValueError, r"got \(1, 3\)"):
            net(torch.rand(1, 4, 16, 16), torch.rand(1, 3))
        with self.assertRaisesRegex(ValueError, "built with num_scalars=0"):
            QualityRegressor(2, 4, 1, channels=(4, 8), strides=(2, 2))(torch.rand(1, 4, 16, 16), torch.rand(1, 2))


class TestQualityStrides(unittest.TestCase):
    @parameterized.expand(STRIDE_CASES)
    def test_strides(self, _, shape, spacing, levels, expected):
        strides = quality_strides(shape, spacing, levels=levels)
        self.assertEqual(strides, expected)
        net = QualityRegressor(len(shape), 1, 1, channels=[4] * levels, strides=strides).eval()
        with torch.no_grad():  # the head takes the shape it was chosen for
            self.assertEqual(tuple(net(torch.zeros(1, 1, *shape)).shape), (1, 1))

    @parameterized.expand([("one_slice", (16, 16, 1)), ("below_kernel", (2, 40))])
    def test_shape_refused(self, _, shape):
        with self.assertRaisesRegex(ValueError, rf"cannot read spatial shape \({shape[0]}, .*at least 3 voxels.*2D files"):
            quality_strides(shape)


def _corrupted_discs(n: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic stage-2 set: channel 0 a predicted disc, channel 1 its corrupted part (an uncertainty-like map).

    The corrupted part is the disc beyond a vertical chord cutting off a fraction ``f`` in [0, 0.7] of the disc;
    the true label is the disc without it, so the target Dice is ``2 (1 - f) / (2 - f)`` (monotone in ``f``).
    Returns ``[n, 2, size, size]`` inputs and ``[n, 1]`` targets.
    """
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    x, y = torch.zeros(n, 2, size, size), torch.zeros(n, 1)
    for i in range(n):
        r = 6 + 6 * torch.rand(1, generator=generator).item()
        cy, cx = (r + (size - 2 * r) * torch.rand(2, generator=generator)).tolist()
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        cols = xx[disc].sort(descending=True).values
        k = int(round(0.7 * torch.rand(1, generator=generator).item() * len(cols)))
        corrupt = disc & (xx >= cols[k - 1]) if k > 0 else torch.zeros_like(disc)
        f = corrupt.sum() / disc.sum()
        x[i, 0], x[i, 1] = disc.float(), corrupt.float()
        y[i, 0] = 2 * (1 - f) / (2 - f)
    return x, y


@pytest.mark.slow
class TestQualityRegressorLearns(unittest.TestCase):
    def test_learns_dice_of_corrupted_discs(self):
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        x, y = _corrupted_discs(260, 32, g)
        x_train, y_train, x_test, y_test = x[:200], y[:200], x[200:], y[200:]
        net = QualityRegressor(spatial_dims=2, in_channels=2, out_channels=1, channels=(8, 16, 32, 64))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        start = time.perf_counter()
        net.train()
        for _ in range(400):
            idx = torch.randint(0, len(x_train), (32,), generator=g)
            loss = torch.nn.functional.l1_loss(net(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            mae = (net(x_test) - y_test).abs().mean().item()
        trivial = (y_test - y_train.mean()).abs().mean().item()
        print(f"QualityRegressor held-out MAE {mae:.4f} (predict-the-mean {trivial:.4f}), "
              f"{time.perf_counter() - start:.1f} s")
        self.assertLess(mae, 0.05)
        self.assertGreater(trivial, 0.1)  # the targets really spread


if __name__ == "__main__":
    unittest.main()
