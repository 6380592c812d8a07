"""Aleatoric uncertainty: AleatoricNet, the sampled-logit loss, AleatoricSampler and the variance map."""

from __future__ import annotations

import unittest

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import SimpleInferer, SlidingWindowInferer
from monai.networks.nets import UNet
from parameterized import parameterized
from segq_testing import train_on_noisy_half
from torch import nn

from segq_monai.inferers.aleatoric import AleatoricSampler, aleatoric_variance
from segq_monai.inferers.inferer import UncertaintyInferer
from segq_monai.inferers.streaming import MAPS, StreamingUncertainty
from segq_monai.losses.aleatoric import SampledLogitLoss, sampled_logit_loss
from segq_monai.networks.aleatoric import AleatoricNet


def _net(spatial_dims: int = 2, num_classes: int = 3, dropout: float = 0.3) -> AleatoricNet:
    torch.manual_seed(0)
    backbone = UNet(spatial_dims, 1, 2 * num_classes, channels=(4, 8), strides=(2,), dropout=dropout, norm="batch")
    return AleatoricNet(backbone, num_classes)


class _Fixed(nn.Module):
    """An 'aleatoric network' with given mean logits and log-variances, constant over space and batch."""

    def __init__(self, mean: list[float], log_var: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("log_var", torch.tensor(log_var).view(1, -1, 1, 1))

    def forward_with_variance(self, x):
        shape = (x.shape[0], self.mean.shape[1], *x.shape[2:])
        return self.mean.expand(shape), self.log_var.expand(shape)

    def forward(self, x):
        return self.forward_with_variance(x)[0]


def _maps(sampler, net, x):
    acc = StreamingUncertainty()
    for prob in sampler(x, net, SimpleInferer()):
        acc.update(prob)
    return acc.compute()


class TestAleatoricNet(unittest.TestCase):
    @parameterized.expand([("2d", 2, (1, 1, 16, 16)), ("3d", 3, (1, 1, 8, 8, 8))])
    def test_shapes_by_mode(self, _, dims, shape):
        net = _net(dims)
        x = torch.rand(shape)
        net.train()
        self.assertEqual(tuple(net(x).shape), (1, 6, *shape[2:]))
        net.eval()
        self.assertEqual(tuple(net(x).shape), (1, 3, *shape[2:]))
        mean, log_var = net.forward_with_variance(x)
        torch.testing.assert_close(mean, net(x))
        self.assertEqual(tuple(log_var.shape), (1, 3, *shape[2:]))
        self.assertEqual(tuple(aleatoric_variance(net, x).shape), (1, 1, *shape[2:]))

    def test_drop_in_for_monai_inferers(self):
        net = _net().eval()
        x = torch.rand(2, 1, 16, 16)
        with torch.no_grad():
            out = SlidingWindowInferer((8, 8), sw_batch_size=2)(x, net)
        self.assertEqual(tuple(out.shape), (2, 3, 16, 16))

    def test_wrong_backbone_channels(self):
        net = AleatoricNet(nn.Conv2d(1, 3, 1), num_classes=3)
        with self.assertRaisesRegex(ValueError, "out_channels = 2 \\* num_classes = 6"):
            net(torch.rand(1, 1, 4, 4))


class TestSampledLogitLoss(unittest.TestCase):
    @parameterized.expand([("2d", (2, 3, 5, 4)), ("3d", (2, 4, 3, 3, 2))])
    def test_zero_sigma_is_cross_entropy(self, _, shape):
        g = torch.Generator().manual_seed(0)
        mean = torch.randn(shape, generator=g) * 3
        target = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]), generator=g)
        log_var = torch.full(shape, -80.0)  # σ = exp(-40)
        noise = torch.randn((7, *shape), generator=g)
        expected = F.cross_entropy(mean, target[:, 0])
        torch.testing.assert_close(sampled_logit_loss(mean, log_var, target, noise), expected)
        torch.testing.assert_close(SampledLogitLoss(5)(torch.cat([mean, log_var], 1), target), expected)
        torch.testing.assert_close(SampledLogitLoss(5)((mean, log_var), target.float()), expected)

    def test_hand_computed_two_classes_one_voxel(self):
        f = np.array([1.0, -0.5])
        sigma = np.array([2.0, 0.5])
        eps = np.array([[0.3, -1.2], [-0.7, 0.4], [1.5, 0.1]])  # T = 3
        y = 1
        logits = f + sigma * eps
        p_y = np.exp(logits[:, y]) / np.exp(logits).sum(axis=1)
        expected = -np.log(p_y.mean())
        mean = torch.tensor(f).view(1, 2, 1, 1)
        log_var = torch.tensor(np.log(sigma**2)).view(1, 2, 1, 1)
        noise = torch.tensor(eps).view(3, 1, 2, 1, 1)
        target = torch.tensor([[[[y]]]])
        loss = sampled_logit_loss(mean, log_var, target, noise)
        np.testing.assert_allclose(loss.item(), expected, rtol=1e-6)

    def test_stable_for_large_logits(self):
        mean = torch.tensor([[[[500.0]], [[-500.0]]]])
        log_var = torch.zeros_like(mean)
        loss = sampled_logit_loss(mean, log_var, torch.ones(1, 1, 1, 1), torch.randn(4, 1, 2, 1, 1))
        self.assertTrue(torch.isfinite(loss))
        self.assertGreater(loss.item(), 900.0)

    def test_reduction_none_shape(self):
        out = torch.randn(2, 6, 4, 4)
        self.assertEqual(tuple(SampledLogitLoss(3, reduction="none")(out, torch.zeros(2, 1, 4, 4)).shape), (2, 1, 4, 4))

    @parameterized.expand([("odd_channels", torch.randn(1, 3, 4, 4)), ("one_hot_target", torch.randn(1, 4, 4, 4))])
    def test_bad_input(self, _, output):
        target = torch.zeros(1, 2, 4, 4)
        with self.assertRaises(ValueError):
            SampledLogitLoss(2)(output, target)


class TestAleatoricSampler(unittest.TestCase):
    def test_zero_sigma_gives_identical_softmax_samples(self):
        net = _Fixed([2.0, -1.0, 0.5], [-80.0, -80.0, -80.0])
        x = torch.rand(2, 1, 4, 4)
        samples = list(AleatoricSampler(4)(x, net, SimpleInferer()))
        self.assertEqual(len(samples), 4)
        expected = torch.softmax(net(x), dim=1)
        for s in samples:
            torch.testing.assert_close(s, expected)
        maps = _maps(AleatoricSampler(4), net, x)
        torch.testing.assert_close(maps["mutual_information"], torch.zeros(2, 1, 4, 4))

    def test_large_sigma_raises_entropy(self):
        x = torch.rand(1, 1, 4, 4)
        entropies = [
            _maps(AleatoricSampler(30), _Fixed([3.0, 0.0], [2 * np.log(s)] * 2), x)["entropy"].mean().item()
            for s in (1e-3, 1.0, 5.0)
        ]
        self.assertLess(entropies[0], entropies[1])
        self.assertLess(entropies[1], entropies[2])
        self.assertLess(entropies[2], np.log(2))

    def test_seeded_and_global_rng_untouched(self):
        net = _net()
        x = torch.rand(1, 1, 16, 16)
        torch.manual_seed(123)
        state = torch.get_rng_state()
        a = list(AleatoricSampler(3, mc_dropout=True, seed=7)(x, net, SimpleInferer()))
        torch.testing.assert_close(torch.get_rng_state(), state)
        b = list(AleatoricSampler(3, mc_dropout=True, seed=7)(x, net, SimpleInferer()))
        c = list(AleatoricSampler(3, mc_dropout=True, seed=8)(x, net, SimpleInferer()))
        for s, t in zip(a, b, strict=True):
            torch.testing.assert_close(s, t)
        self.assertFalse(torch.allclose(a[0], c[0]))

    def test_mc_dropout_modes_and_batchnorm(self):
        net = _net()
        net.train()
        net(torch.rand(4, 1, 16, 16) * 3)  # non-trivial running statistics
        before = {k: v.clone() for k, v in net.state_dict().items()}
        seen = []

        def inferer(x, network):
            seen.append({type(m).__name__: m.training for m in net.modules()})
            return network(x)

        samples = list(AleatoricSampler(3, mc_dropout=True)(torch.rand(2, 1, 16, 16), net, inferer))
        self.assertEqual(len(seen), 3)  # one pass per sample with dropout
        for modes in seen:
            self.assertTrue(modes["Dropout"])
            self.assertFalse(modes["BatchNorm2d"])
            self.assertFalse(modes["AleatoricNet"])
        self.assertFalse(torch.allclose(samples[0], samples[1]))
        self.assertTrue(all(m.training for m in net.modules()))
        for k, v in net.state_dict().items():
            torch.testing.assert_close(v, before[k], msg=k)

    def test_without_dropout_one_pass(self):
        calls = []

        def inferer(x, network):
            calls.append(1)
            return network(x)

        list(AleatoricSampler(5)(torch.rand(1, 1, 16, 16), _net(), inferer))
        self.assertEqual(len(calls), 1)

    def test_errors(self):
        x = torch.rand(1, 1, 8, 8)
        with self.assertRaisesRegex(ValueError, "forward_with_variance"):
            list(AleatoricSampler(2)(x, nn.Conv2d(1, 2, 1), SimpleInferer()))
        with self.assertRaisesRegex(ValueError, "no dropout"):
            list(AleatoricSampler(2, mc_dropout=True)(x, _net(dropout=0.0), SimpleInferer()))

    @parameterized.expand([("sliding_window", False, SlidingWindowInferer((8, 8))), ("mc_dropout", True, None)])
    def test_uncertainty_inferer_2d(self, _, mc_dropout, base):
        net = _net()
        x = torch.rand(2, 1, 16, 16)
        out = UncertaintyInferer(AleatoricSampler(4, mc_dropout=mc_dropout), base)(x, net)
        self.assertEqual(set(out), set(MAPS))
        self.assertEqual(tuple(out["prob"].shape), (2, 3, 16, 16))
        self.assertEqual(tuple(out["entropy"].shape), (2, 1, 16, 16))
        torch.testing.assert_close(out["prob"].sum(1), torch.ones(2, 16, 16))


class TestLearnsLabelNoise(unittest.TestCase):
    def test_variance_higher_where_labels_are_noisy(self):
        """Labels are ``x > 0``, flipped with probability 0.3 in the left half (the second input channel says which
        half): the learned σ² is larger there."""
        torch.manual_seed(0)
        backbone = nn.Sequential(nn.Conv2d(2, 16, 1), nn.ReLU(), nn.Conv2d(16, 16, 1), nn.ReLU(), nn.Conv2d(16, 4, 1))
        net = AleatoricNet(backbone, num_classes=2)
        x, noisy = train_on_noisy_half(net, SampledLogitLoss(10))
        var = aleatoric_variance(net, x)
        self.assertTrue(net.training)  # aleatoric_variance ran in eval mode and restored train mode
        noisy_var, clean_var = var[noisy].mean().item(), var[~noisy].mean().item()
        self.assertGreater(noisy_var, 3 * clean_var)


if __name__ == "__main__":
    unittest.main()
