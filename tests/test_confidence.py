"""Learned confidence: ConfidenceNet, the hinted loss and its budget rule, the confidence map."""

from __future__ import annotations

import math
import unittest

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import SimpleInferer, SlidingWindowInferer
from monai.networks.nets import UNet
from parameterized import parameterized
from segq_testing import train_on_noisy_half
from torch import nn

from segq_monai.inferers.confidence import confidence_map
from segq_monai.inferers.inferer import UncertaintyInferer
from segq_monai.inferers.samplers import MCDropoutSampler
from segq_monai.losses.confidence import ConfidenceLoss, confidence_loss
from segq_monai.networks.confidence import ConfidenceNet


def _net(spatial_dims: int = 2, num_classes: int = 3) -> ConfidenceNet:
    torch.manual_seed(0)
    backbone = UNet(spatial_dims, 1, num_classes + 1, channels=(4, 8), strides=(2,), dropout=0.3, norm="batch")
    return ConfidenceNet(backbone, num_classes)


def _raw(logits: torch.Tensor, s: float) -> torch.Tensor:
    """Raw ConfidenceNet output: ``logits`` then a constant confidence logit ``s``."""
    return torch.cat([logits, torch.full_like(logits[:, :1], s)], 1)


class TestConfidenceNet(unittest.TestCase):
    @parameterized.expand([("2d", 2, (2, 1, 16, 16)), ("3d", 3, (1, 1, 8, 8, 8))])
    def test_shapes_by_mode(self, _, dims, shape):
        net = _net(dims)
        x = torch.rand(shape)
        net.train()
        self.assertEqual(tuple(net(x).shape), (shape[0], 4, *shape[2:]))
        net.eval()
        self.assertEqual(tuple(net(x).shape), (shape[0], 3, *shape[2:]))
        logits, c = net.forward_with_confidence(x)
        torch.testing.assert_close(logits, net(x))
        self.assertEqual(tuple(c.shape), (shape[0], 1, *shape[2:]))
        self.assertTrue(((c > 0) & (c < 1)).all())

    def test_confidence_map(self):
        net = _net().train()
        x = torch.rand(2, 1, 16, 16)
        u = confidence_map(net, x)
        self.assertTrue(net.training)  # modes restored
        net.eval()
        with torch.no_grad():
            expected = 1 - net.forward_with_confidence(x)[1]
        torch.testing.assert_close(u, expected)
        windows = confidence_map(net, x, SlidingWindowInferer((8, 8)))
        self.assertEqual(tuple(windows.shape), (2, 1, 16, 16))
        self.assertTrue(((windows > 0) & (windows < 1)).all())
        with self.assertRaisesRegex(ValueError, "forward_with_confidence"):
            confidence_map(nn.Conv2d(1, 2, 1), x)

    def test_extra_map_of_the_inferer(self):
        net = _net()
        x = torch.rand(2, 1, 16, 16)
        inferer = UncertaintyInferer(MCDropoutSampler(4), extra_maps={"confidence": confidence_map})
        out = inferer(x, net)
        torch.testing.assert_close(out["confidence"], confidence_map(net, x))
        without = UncertaintyInferer(MCDropoutSampler(4))(x, net)
        self.assertEqual(set(out) - set(without), {"confidence"})
        for key, value in without.items():  # the confidence pass changes no sampled map
            torch.testing.assert_close(out[key], value)
        with self.assertRaisesRegex(ValueError, "clash"):
            UncertaintyInferer(MCDropoutSampler(4), extra_maps={"entropy": confidence_map})

    def test_drop_in_for_samplers(self):
        out = UncertaintyInferer(MCDropoutSampler(3), SimpleInferer())(torch.rand(1, 1, 16, 16), _net())
        self.assertEqual(tuple(out["prob"].shape), (1, 3, 16, 16))

    def test_wrong_backbone_channels(self):
        with self.assertRaisesRegex(ValueError, "num_classes \\+ 1 = 4"):
            ConfidenceNet(nn.Conv2d(1, 3, 1), num_classes=3)(torch.rand(1, 1, 4, 4))


class TestConfidenceLoss(unittest.TestCase):
    @parameterized.expand([("2d", (2, 3, 5, 4)), ("3d", (1, 2, 3, 3, 2))])
    def test_full_confidence_is_nll(self, _, shape):
        g = torch.Generator().manual_seed(0)
        logits = torch.randn(shape, generator=g) * 3
        target = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]), generator=g)
        loss = ConfidenceLoss(lmbda=0.5, hint_prob=1.0)(_raw(logits, 100.0), target)
        torch.testing.assert_close(loss, F.cross_entropy(logits, target[:, 0]))

    def test_no_confidence_with_hints_gives_label(self):
        """c -> 0 with every voxel hinted: p' -> y, so the NLL vanishes and only the penalty is left."""
        logits = torch.randn(2, 3, 4, 4) * 5
        target = torch.randint(0, 3, (2, 1, 4, 4))
        loss = ConfidenceLoss(lmbda=0.0, hint_prob=1.0)(_raw(logits, -30.0), target)
        self.assertLess(loss.item(), 1e-6)
        loss = ConfidenceLoss(lmbda=0.1, hint_prob=1.0)(_raw(logits, -30.0), target)
        np.testing.assert_allclose(loss.item(), 0.1 * 30.0, rtol=1e-5)  # λ (-log sigmoid(-30))

    def test_hand_computed(self):
        z = np.array([0.4, -1.1, 2.0])
        y, s = 1, 0.5
        p = np.exp(z) / np.exp(z).sum()
        c = 1 / (1 + np.exp(-s))
        p_hint = c * p + (1 - c) * np.eye(3)[y]
        for hinted, p_used in ((True, p_hint), (False, p)):
            expected = -np.log(p_used[y]) + 0.2 * -np.log(c)
            total, penalty = confidence_loss(
                torch.tensor(z).view(1, 3, 1, 1),
                torch.tensor([[[[s]]]]),
                torch.tensor([[[[y]]]]),
                torch.tensor([[[[hinted]]]]),
                0.2,
            )
            np.testing.assert_allclose(total.item(), expected, rtol=1e-6)
            np.testing.assert_allclose(penalty.item(), -np.log(c), rtol=1e-6)

    def test_hints_on_a_random_fraction(self):
        """Uniform logits (NLL log 2 unhinted), c -> 0 (NLL 0 hinted): the loss is the unhinted fraction × log 2."""
        logits = torch.zeros(1, 2, 100, 100)
        target = torch.zeros(1, 1, 100, 100)
        torch.manual_seed(0)
        for hint_prob in (0.5, 0.8):
            loss = ConfidenceLoss(lmbda=0.0, hint_prob=hint_prob)(_raw(logits, -30.0), target)
            np.testing.assert_allclose(loss.item(), (1 - hint_prob) * math.log(2), rtol=0.05)

    def test_finite_gradients_when_saturated(self):
        out = _raw(torch.randn(1, 2, 4, 4), 0.0)
        out[:, -1, :2] = 60.0
        out[:, -1, 2:] = -60.0
        out.requires_grad_(True)
        ConfidenceLoss(hint_prob=1.0)(out, torch.randint(0, 2, (1, 1, 4, 4))).backward()
        self.assertTrue(torch.isfinite(out.grad).all())

    @parameterized.expand([("over_budget", -3.0, 1 / 0.99), ("under_budget", 3.0, 1 / 1.01)])
    def test_lambda_budget_rule(self, _, s, factor):
        """mean(-log c) above the budget: hints get dearer (λ up); below: λ down."""
        loss_fn = ConfidenceLoss(lmbda=0.1, budget=0.3)
        out = _raw(torch.randn(1, 2, 4, 4), s)
        target = torch.zeros(1, 1, 4, 4)
        loss_fn(out, target)
        loss_fn(out, target)
        np.testing.assert_allclose(loss_fn.lmbda.item(), 0.1 * factor**2, rtol=1e-12)
        with torch.no_grad():
            loss_fn(out, target)  # evaluation leaves λ alone
        np.testing.assert_allclose(loss_fn.state_dict()["lmbda"].item(), 0.1 * factor**2, rtol=1e-12)

    @parameterized.expand(
        [
            ("eval_output", torch.randn(1, 2, 4, 4), torch.zeros(1, 1, 4, 4)),
            ("one_hot", torch.randn(1, 3, 4, 4), torch.zeros(1, 2, 4, 4)),
        ]
    )
    def test_bad_input(self, _, output, target):
        with self.assertRaises(ValueError):
            ConfidenceLoss()(output, target)


class TestLearnsConfidence(unittest.TestCase):
    def test_confidence_lower_where_labels_are_noisy(self):
        """Labels are ``x > 0``, flipped with probability 0.3 in the left half (the second input channel says which
        half): the learned confidence is lower there."""
        torch.manual_seed(0)
        backbone = nn.Sequential(nn.Conv2d(2, 16, 1), nn.ReLU(), nn.Conv2d(16, 16, 1), nn.ReLU(), nn.Conv2d(16, 3, 1))
        net = ConfidenceNet(backbone, num_classes=2)
        x, noisy = train_on_noisy_half(net, ConfidenceLoss())
        u = confidence_map(net, x)
        self.assertGreater(u[noisy].mean().item(), u[~noisy].mean().item() + 0.2)


if __name__ == "__main__":
    unittest.main()
