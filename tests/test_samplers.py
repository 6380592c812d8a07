"""Samplers: modes, seeding, exact TTA inverses, ensembles, bad input."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.inferers import SimpleInferer
from monai.networks.nets import UNet
from parameterized import parameterized
from torch import nn

from segq_monai import SAMPLERS, AleatoricSampler, build_sampler
from segq_monai.inferers.ensemble import EnsembleSampler
from segq_monai.inferers.modes import mc_dropout_masks
from segq_monai.inferers.samplers import MCDropoutSampler, SinglePassSampler, TTASampler


def _unet(dropout: float = 0.3, norm: str = "batch") -> UNet:
    torch.manual_seed(0)
    return UNet(2, 1, 3, channels=(4, 8, 16), strides=(2, 2), dropout=dropout, norm=norm)


def _pointwise() -> nn.Module:
    """A 1×1 convolution: equivariant to every flip and rotation."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 1), nn.Dropout(0.0))


class _Failing(SimpleInferer):
    def __call__(self, inputs, network, *args, **kwargs):
        network(inputs)
        raise RuntimeError("boom")


class TestMCDropoutSampler(unittest.TestCase):
    def test_only_dropout_in_train_mode_during_sampling(self):
        net = _unet()
        seen = []

        def inferer(x, network):
            seen.append({type(m).__name__: m.training for m in network.modules() if type(m) is not UNet})
            return network(x)

        list(MCDropoutSampler(2)(torch.rand(1, 1, 16, 16), net, inferer))
        for modes in seen:
            self.assertTrue(modes["Dropout"])
            self.assertFalse(modes["BatchNorm2d"])
            self.assertFalse(modes["Conv2d"])

    def test_batchnorm_statistics_unchanged(self):
        net = _unet()
        net.train()
        net(torch.rand(4, 1, 16, 16) * 3)  # non-trivial running statistics
        before = {k: v.clone() for k, v in net.state_dict().items()}
        list(MCDropoutSampler(5, chunk_size=2)(torch.rand(2, 1, 16, 16), net, SimpleInferer()))
        for k, v in net.state_dict().items():
            torch.testing.assert_close(v, before[k], msg=k)

    @parameterized.expand([("train", True), ("eval", False)])
    def test_modes_restored_after_exception(self, _, training):
        net = _unet()
        net.train(training)
        modes = [m.training for m in net.modules()]
        with self.assertRaisesRegex(RuntimeError, "boom"):
            list(MCDropoutSampler(3)(torch.rand(1, 1, 16, 16), net, _Failing()))
        self.assertEqual([m.training for m in net.modules()], modes)

    def test_same_seed_same_samples_other_seed_other_samples(self):
        net, x = _unet(), torch.rand(2, 1, 16, 16)
        a = torch.stack(list(MCDropoutSampler(4, seed=3)(x, net, SimpleInferer())))
        b = torch.stack(list(MCDropoutSampler(4, seed=3)(x, net, SimpleInferer())))
        c = torch.stack(list(MCDropoutSampler(4, seed=4)(x, net, SimpleInferer())))
        torch.testing.assert_close(a, b)
        self.assertGreater(float((a - c).abs().max()), 1e-3)

    def test_global_random_state_untouched(self):
        net = _unet()
        torch.manual_seed(123)
        list(MCDropoutSampler(3, seed=0)(torch.rand(1, 1, 16, 16), net, SimpleInferer()))
        after_sampling = torch.rand(3)
        torch.manual_seed(123)
        torch.rand(1, 1, 16, 16)
        torch.testing.assert_close(after_sampling, torch.rand(3))

    @parameterized.expand([(1,), (3,), (7,)])
    def test_chunking_yields_num_samples_per_batch_item(self, chunk):
        samples = list(MCDropoutSampler(7, chunk_size=chunk)(torch.rand(2, 1, 16, 16), _unet(), SimpleInferer()))
        self.assertEqual(len(samples), 7)
        for s in samples:
            self.assertEqual(tuple(s.shape), (2, 3, 16, 16))
            torch.testing.assert_close(s.sum(1), torch.ones(2, 16, 16))

    def test_chunked_samples_keep_batch_items_apart(self):
        # two different images in one batch: each chunk's split must return each image's own prediction
        net, x = _unet(dropout=0.0), torch.rand(2, 1, 16, 16)
        net.eval()
        with torch.no_grad():
            plain = torch.softmax(net(x), 1)
        net.model[0].adn.D = nn.Dropout(1e-9)  # dropout that keeps every activation
        for s in MCDropoutSampler(4, chunk_size=4)(x, net, SimpleInferer()):
            torch.testing.assert_close(s, plain, atol=1e-5, rtol=1e-5)

    def test_sigmoid_of_the_sampled_logits(self):
        # the same seed draws the same dropout masks, hence the same logits z, for either activation: the sigmoid
        # samples q = sigmoid(z) and the softmax samples p = softmax(z) then satisfy logit(q_i) - logit(q_0) =
        # log p_i - log p_0 = z_i - z_0 for every sample, channel and voxel
        net, x = _unet(), torch.rand(2, 1, 16, 16)
        sig = list(MCDropoutSampler(3, seed=5, activation="sigmoid")(x, net, SimpleInferer()))
        soft = list(MCDropoutSampler(3, seed=5, activation="softmax")(x, net, SimpleInferer()))
        self.assertFalse(torch.allclose(sig[0], sig[1]))  # the masks differ between samples
        for q, p in zip(sig, soft):
            z = torch.logit(q.double())
            torch.testing.assert_close(z - z[:, :1], torch.log(p.double()) - torch.log(p[:, :1].double()),
                                       atol=1e-4, rtol=1e-4)

    def test_no_dropout_is_a_clear_error(self):
        with self.assertRaisesRegex(ValueError, "no dropout module"):
            list(MCDropoutSampler(3)(torch.rand(1, 1, 16, 16), _unet(dropout=0.0), SimpleInferer()))

    @parameterized.expand([(0,), (-2,)])
    def test_bad_num_samples(self, t):
        with self.assertRaisesRegex(ValueError, "num_samples"):
            MCDropoutSampler(t)

    def test_bad_chunk_and_activation(self):
        with self.assertRaisesRegex(ValueError, "chunk_size"):
            MCDropoutSampler(3, chunk_size=0)
        with self.assertRaisesRegex(ValueError, "activation"):
            MCDropoutSampler(3, activation="softplus")


class TestMCDropoutMasks(unittest.TestCase):
    """``mc_dropout_masks``: nn.Dropout's element-wise masks from uniform numbers, only inside the block."""

    def test_distribution_and_scale(self):
        drop = nn.Dropout(0.3).train()
        x = torch.ones(1_000_000)
        with mc_dropout_masks([drop]):
            y = drop(x)
        kept = y != 0
        # binomial: mean 0.7, standard deviation sqrt(0.7 * 0.3 / 1e6) = 4.6e-4; 5 standard deviations
        self.assertAlmostEqual(kept.float().mean().item(), 0.7, delta=5 * 4.6e-4)
        torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.7))

    def test_scope_and_types(self):
        drop, channel, sub = nn.Dropout(0.5).train(), nn.Dropout2d(0.5).train(), type("MyDrop", (nn.Dropout,), {})(0.5)
        x = torch.rand(2, 3, 8, 8)
        with mc_dropout_masks([drop, channel, sub]):
            self.assertIn("forward", vars(drop))
            self.assertNotIn("forward", vars(channel))  # whole-channel masks are small: PyTorch's own
            self.assertNotIn("forward", vars(sub))  # subclasses may do more than drop
            torch.manual_seed(0)
            ours = drop(x)
        torch.manual_seed(0)  # the mask is U >= p, U drawn in float32 from the same generator
        torch.testing.assert_close(ours, x * (torch.rand(x.shape) >= 0.5) * 2.0)
        self.assertNotIn("forward", vars(drop))  # restored
        torch.manual_seed(0)
        theirs = drop(x)
        torch.manual_seed(0)
        torch.testing.assert_close(theirs, F.dropout(x, 0.5, True))

    def test_eval_inplace_and_p_one(self):
        x = torch.rand(4, 5)
        with mc_dropout_masks([d := nn.Dropout(0.5).eval()]):
            self.assertIs(d(x), x)
        y = x.clone()
        with mc_dropout_masks([d := nn.Dropout(0.5, inplace=True).train()]):
            out = d(y)
        self.assertIs(out, y)
        self.assertTrue(torch.all((y == 0) | torch.isclose(y, 2 * x)))
        with mc_dropout_masks([d := nn.Dropout(1.0).train()]):
            self.assertTrue(torch.equal(d(x), torch.zeros_like(x)))  # no 0 * inf


class TestSinglePassSampler(unittest.TestCase):
    def test_single_eval_pass(self):
        net, x = _unet(), torch.rand(1, 1, 16, 16)
        net.train()
        samples = list(SinglePassSampler()(x, net, SimpleInferer()))
        self.assertEqual(len(samples), 1)
        self.assertTrue(net.training)
        net.eval()
        with torch.no_grad():
            torch.testing.assert_close(samples[0], torch.softmax(net(x), 1))


class TestTTASampler(unittest.TestCase):
    @parameterized.expand([(2, 8), (3, 16)])
    def test_group_sizes_and_exact_inverse(self, dims, size):
        tta = TTASampler()
        group = tta.geometric_transforms(dims)
        self.assertEqual(len(group), size)
        self.assertEqual(group[0], ((), 0))
        x = torch.rand(2, 3, *([6] * dims))
        for flip_axes, k in group:
            torch.testing.assert_close(tta._inverse(tta._forward(x, flip_axes, k), flip_axes, k), x)

    def test_flip_equivariant_network_gives_plain_prediction(self):
        net, x = _pointwise(), torch.rand(2, 1, 12, 10)
        tta = TTASampler(num_samples=8, intensity_scale=0.0, intensity_shift=0.0)
        with torch.no_grad():
            plain = torch.softmax(net(x), 1)
        samples = list(tta(x, net, SimpleInferer()))
        self.assertEqual(len(samples), 8)
        for s in samples:
            torch.testing.assert_close(s, plain)

    def test_samples_are_on_input_grid_for_position_dependent_network(self):
        # a network whose output depends on position: the rotated prediction must be rotated back
        net = _unet(dropout=0.0)
        x = torch.rand(1, 1, 16, 16)
        net.eval()
        samples = list(TTASampler(num_samples=8, intensity_scale=0.0, intensity_shift=0.0)(x, net, SimpleInferer()))
        tta = TTASampler()
        with torch.no_grad():
            # each of the 8 transforms' back-mapped prediction, computed here by hand, is one of the samples
            for flip_axes, k in tta.geometric_transforms(2):
                want = torch.softmax(tta._inverse(net(tta._forward(x, flip_axes, k)), flip_axes, k), 1)
                self.assertTrue(any(torch.allclose(want, s, atol=1e-6) for s in samples))

    def test_seeded(self):
        net, x = _unet(), torch.rand(1, 1, 16, 16)
        a = torch.stack(list(TTASampler(5, seed=1, noise_std=0.1)(x, net, SimpleInferer())))
        b = torch.stack(list(TTASampler(5, seed=1, noise_std=0.1)(x, net, SimpleInferer())))
        torch.testing.assert_close(a, b)


class TestEnsembleSampler(unittest.TestCase):
    def test_networks_give_one_sample_each(self):
        nets = [_unet(), UNet(2, 1, 3, channels=(4, 8, 16), strides=(2, 2))]
        x = torch.rand(1, 1, 16, 16)
        samples = list(EnsembleSampler(networks=nets)(x, None, SimpleInferer()))
        self.assertEqual(len(samples), 2)
        for net, s in zip(nets, samples):
            net.eval()
            with torch.no_grad():
                torch.testing.assert_close(s, torch.softmax(net(x), 1))

    def test_checkpoints_loaded_weights_only(self):
        nets = [UNet(2, 1, 3, channels=(4, 8, 16), strides=(2, 2)) for _ in range(3)]
        x = torch.rand(1, 1, 16, 16)
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for i, net in enumerate(nets):
                paths.append(Path(tmp) / f"fold{i}.pt")
                torch.save({"network": net.state_dict()}, paths[-1])
            sampler = EnsembleSampler(checkpoints=paths, checkpoint_key="network")
        template = UNet(2, 1, 3, channels=(4, 8, 16), strides=(2, 2))
        template_state = {k: v.clone() for k, v in template.state_dict().items()}
        samples = list(sampler(x, template, SimpleInferer()))
        self.assertEqual(sampler.num_samples, 3)
        for net, s in zip(nets, samples):
            net.eval()
            with torch.no_grad():
                torch.testing.assert_close(s, torch.softmax(net(x), 1))
        for k, v in template.state_dict().items():  # the caller's network is not overwritten
            torch.testing.assert_close(v, template_state[k])

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, "non-empty"):
            EnsembleSampler(networks=[])
        with self.assertRaisesRegex(FileNotFoundError, "missing.pt"):
            EnsembleSampler(checkpoints=["/nonexistent/missing.pt"])


class TestBuildSampler(unittest.TestCase):
    @parameterized.expand(
        [
            ("mc_dropout", MCDropoutSampler, 5),
            ("tta", TTASampler, 5),
            ("single_pass", SinglePassSampler, 1),
            ("aleatoric", AleatoricSampler, 5),
        ]
    )
    def test_by_name(self, name, cls, num_samples):
        sampler = build_sampler(name, num_samples=5, seed=3, temperature=1.5)
        self.assertIs(type(sampler), cls)
        self.assertIs(SAMPLERS[name], cls)
        self.assertEqual((sampler.num_samples, sampler.temperature, sampler.activation), (num_samples, 1.5, "softmax"))
        if name != "single_pass":
            self.assertEqual(sampler.seed, 3)
        if name == "aleatoric":
            self.assertTrue(sampler.mc_dropout)  # the paper's aleatoric estimator samples with MC dropout too

    def test_ensemble_from_checkpoints_and_extra_arguments(self):
        with tempfile.TemporaryDirectory() as tmp:
            paths = [Path(tmp) / f"fold{i}.pt" for i in range(2)]
            for p in paths:
                torch.save({"model": _unet().state_dict()}, p)
            sampler = build_sampler("ensemble", checkpoints=paths, checkpoint_key="model", activation="sigmoid")
        self.assertEqual((type(sampler), sampler.num_samples, sampler.activation), (EnsembleSampler, 2, "sigmoid"))
        self.assertEqual(build_sampler("mc_dropout", num_samples=4, chunk_size=2).chunk_size, 2)

    def test_bad_names(self):
        with self.assertRaisesRegex(ValueError, "'softmax' is not one of"):
            build_sampler("softmax")  # the activation, not a sampler: the single pass is "single_pass"
        with self.assertRaisesRegex(ValueError, "'dropout' is not one of"):
            build_sampler("dropout")
        with self.assertRaisesRegex(ValueError, "softmax probabilities"):
            build_sampler("aleatoric", activation="sigmoid")


if __name__ == "__main__":
    unittest.main()
