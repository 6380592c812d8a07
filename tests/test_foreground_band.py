"""ForegroundBandSampler: the box around the predicted foreground, samples inside it, the single pass outside."""

from __future__ import annotations

import unittest

import torch
from monai.inferers import SimpleInferer, SlidingWindowInferer
from monai.networks.nets import UNet
from torch import nn

from segq_monai import ForegroundBandSampler, MCDropoutSampler, TTASampler, UncertaintyInferer, build_sampler
from segq_monai.apps.fit_grid import AUTO_BAND_MARGIN, AUTO_BAND_VOXELS, foreground_band
from segq_monai.inferers.foreground import foreground_box


class _Threshold(nn.Module):
    """Logits [0, 4 (x - 0.5)] then dropout: class 1 (foreground) where x > 0.5 in eval mode; counts the voxels seen
    (a side effect that torch.fx cannot trace: MC dropout runs with ``shared_prefix=False`` on it)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p)
        self.voxels_seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.voxels_seen += x[:, 0].numel()
        return self.dropout(torch.cat([torch.zeros_like(x), 4 * (x - 0.5)], dim=1))


class _Recording(SlidingWindowInferer):
    """A sliding window over the whole input that records the input shapes it is given."""

    def __init__(self, shapes: list) -> None:
        super().__init__((64, 64, 64))
        self.shapes = shapes

    def __call__(self, inputs, network, *args, **kwargs):
        self.shapes.append(tuple(inputs.shape))
        return network(inputs)


def _image(shape=(1, 1, 40, 30, 20), box=((10, 14), (5, 9), (12, 13))) -> torch.Tensor:
    x = torch.zeros(shape)
    x[(..., *(slice(a, b) for a, b in box))] = 1.0
    return x


def _softmax_prob(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(torch.cat([torch.zeros_like(x), 4 * (x - 0.5)], dim=1), dim=1)


def _mc(num_samples: int, seed: int = 0) -> MCDropoutSampler:
    return MCDropoutSampler(num_samples, seed=seed, shared_prefix=False)


class TestForegroundBox(unittest.TestCase):
    def test_tight_box_plus_margin(self):
        box = foreground_box(_softmax_prob(_image()), "softmax", margin=2)
        self.assertEqual(box, (slice(8, 16), slice(3, 11), slice(10, 15)))

    def test_margin_clipped_at_the_edges(self):
        x = _image(box=((0, 3), (27, 30), (5, 6)))
        box = foreground_box(_softmax_prob(x), "softmax", margin=4)
        self.assertEqual(box, (slice(0, 7), slice(23, 30), slice(1, 10)))

    def test_rounded_to_a_multiple_centred_and_kept_inside(self):
        # axis 0: 10..14 (4) -> 8, centred: 8..16; axis 1: 27..30 (3) -> 8, shifted inside: 22..30;
        # axis 2: 12..13 (1) -> 8, the 7 added voxels 3 before and 4 after: 9..17
        x = _image(box=((10, 14), (27, 30), (12, 13)))
        box = foreground_box(_softmax_prob(x), "softmax", margin=0, multiple=8)
        self.assertEqual(box, (slice(8, 16), slice(22, 30), slice(9, 17)))

    def test_axis_shorter_than_the_multiple_is_kept_whole(self):
        box = foreground_box(_softmax_prob(_image()), "softmax", margin=0, multiple=(16, 32, 16))
        self.assertEqual(box[1], slice(0, 30))
        self.assertEqual(box[2].stop - box[2].start, 16)

    def test_per_axis_margin_and_batch_union(self):
        x = torch.cat([_image(box=((2, 3), (2, 3), (2, 3))), _image(box=((30, 31), (20, 21), (15, 16)))])
        box = foreground_box(_softmax_prob(x), "softmax", margin=(1, 0, 2))
        self.assertEqual(box, (slice(1, 32), slice(2, 21), slice(0, 18)))

    def test_sigmoid_any_label_above_half(self):
        prob = torch.zeros(1, 3, 8, 8)
        prob[0, 2, 5, 1] = 0.6
        prob[0, 1, 2, 6] = 0.5  # not above 0.5
        self.assertEqual(foreground_box(prob, "sigmoid", margin=0), (slice(5, 6), slice(1, 2)))

    def test_no_foreground(self):
        self.assertIsNone(foreground_box(_softmax_prob(torch.zeros(1, 1, 8, 8)), "softmax", margin=3))

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "margin must be >= 0"):
            ForegroundBandSampler(TTASampler(), margin=-1)
        with self.assertRaisesRegex(ValueError, "multiple >= 1"):
            ForegroundBandSampler(TTASampler(), multiple=0)


class TestForegroundBandSampler(unittest.TestCase):
    def setUp(self):
        self.x = _image()
        self.net = _Threshold()
        self.box = (slice(6, 18), slice(1, 13), slice(8, 17))  # margin 4 around 10:14, 5:9, 12:13

    def test_samples_inside_the_box_single_pass_outside(self):
        band = ForegroundBandSampler(_mc(5, seed=3), margin=4, multiple=1)
        samples = list(band(self.x, self.net, SimpleInferer()))
        self.assertEqual(len(samples), 5)
        single = _softmax_prob(self.x)
        inner = list(_mc(5, seed=3)(self.x[(..., *self.box)], self.net, SimpleInferer()))
        outside = torch.ones_like(self.x, dtype=torch.bool)
        outside[(..., *self.box)] = False
        for sample, want in zip(samples, inner):
            torch.testing.assert_close(sample[(..., *self.box)], want)
            torch.testing.assert_close(sample[outside.expand_as(sample)], single[outside.expand_as(single)])
        self.assertFalse(torch.equal(samples[0][(..., *self.box)], samples[1][(..., *self.box)]))  # dropout acts

    def test_cost_is_one_full_pass_plus_t_box_passes(self):
        band = ForegroundBandSampler(_mc(7), margin=4, multiple=1)
        list(band(self.x, self.net, SimpleInferer()))
        self.assertEqual(self.net.voxels_seen, 40 * 30 * 20 + 7 * 12 * 12 * 9)

    def test_default_multiple_follows_the_inferer(self):
        # SimpleInferer: the 12 x 12 x 9 box grows to 16 x 16 x 16; a sliding window pads by itself: no rounding
        list(ForegroundBandSampler(_mc(3), margin=4)(self.x, self.net, SimpleInferer()))
        self.assertEqual(self.net.voxels_seen, 40 * 30 * 20 + 3 * 16**3)
        self.net.voxels_seen = 0
        box = []
        list(ForegroundBandSampler(_mc(3), margin=4)(self.x, self.net, _Recording(box)))
        self.assertEqual(box[1:], [(1, 1, 12, 12, 9)] * 3)

    def test_maps_outside_the_band_are_the_single_pass(self):
        inferer = UncertaintyInferer(ForegroundBandSampler(_mc(6), margin=4, multiple=1))
        out = inferer(self.x, self.net)
        outside = torch.ones(40, 30, 20, dtype=torch.bool)
        outside[self.box] = False
        p = _softmax_prob(self.x)[0, :, outside]
        entropy = -(p * p.log()).sum(0)
        torch.testing.assert_close(out["entropy"][0, 0, outside], entropy)
        self.assertEqual(float(out["mutual_information"][0, 0, outside].abs().max()), 0.0)
        self.assertEqual(float(out["variance"][0, :, outside].max()), 0.0)
        self.assertEqual(float(out["agreement"][0, 0, outside].min()), 1.0)
        self.assertGreater(float(out["variance"][0, :, self.box[0], self.box[1], self.box[2]].max()), 0.0)

    def test_no_foreground_samples_the_whole_input(self):
        x = torch.zeros(1, 1, 12, 10)
        band = list(ForegroundBandSampler(_mc(4, seed=1), margin=2)(x, self.net, SimpleInferer()))
        self.net.voxels_seen = 0
        whole = list(_mc(4, seed=1)(x, self.net, SimpleInferer()))
        for a, b in zip(band, whole):
            torch.testing.assert_close(a, b)
        self.assertEqual(self.net.voxels_seen, 4 * 120)

    def test_network_modes_restored(self):
        self.net.train()
        list(ForegroundBandSampler(_mc(2), margin=4)(self.x, self.net, SimpleInferer()))
        self.assertTrue(self.net.training and self.net.dropout.training)

    def test_unet_box_rounded_to_its_stride_under_a_simple_inferer(self):
        # a UNet with three stride-2 levels needs sizes divisible by 8; the tight box (5 x 3) is not
        torch.manual_seed(0)
        net = UNet(2, 1, 2, channels=(4, 8, 16, 32), strides=(2, 2, 2), dropout=0.2)
        with torch.no_grad():  # bias the output so that the foreground is the bright block
            net.model[-1].conv.bias.copy_(torch.tensor([0.0, -50.0]))
        x = torch.zeros(1, 1, 64, 48)
        band = ForegroundBandSampler(MCDropoutSampler(3), margin=0, multiple=8)
        samples = list(band(x, net, SimpleInferer()))  # no foreground: whole input
        self.assertEqual(samples[0].shape, (1, 2, 64, 48))
        with torch.no_grad():
            net.model[-1].conv.bias.copy_(torch.tensor([0.0, 0.0]))
            prob = torch.softmax(net.eval()(x), 1)
        box = foreground_box(prob, "softmax", 0, 8)
        self.assertIsNotNone(box)
        self.assertTrue(all((s.stop - s.start) % 8 == 0 for s in box))
        self.assertEqual(len(list(band(x, net, SimpleInferer()))), 3)

    def test_sliding_window_inferer_on_a_box_smaller_than_its_roi(self):
        inferer = SlidingWindowInferer((16, 16, 16), overlap=0.25)
        band = ForegroundBandSampler(TTASampler(4), margin=1, multiple=1)
        out = UncertaintyInferer(band, inferer)(self.x, self.net)
        self.assertEqual(out["seg"].shape, (1, 1, 40, 30, 20))
        torch.testing.assert_close(out["seg"][0, 0].float(), (self.x[0, 0] > 0.5).float())


class TestBuildSamplerBand(unittest.TestCase):
    def test_wraps_the_named_sampler(self):
        sampler = build_sampler("tta", num_samples=6, foreground_band=24)
        self.assertIsInstance(sampler, ForegroundBandSampler)
        self.assertIsInstance(sampler.sampler, TTASampler)
        self.assertEqual((sampler.num_samples, sampler.margin), (6, 24))
        self.assertIsInstance(build_sampler("tta"), TTASampler)


class TestFitChoice(unittest.TestCase):
    """``fit --foreground_band``: auto bands 3D cases of at least 2**23 voxels on a CPU only."""

    def test_auto(self):
        self.assertEqual(AUTO_BAND_VOXELS, 8388608)
        self.assertEqual(foreground_band("auto", (512, 512, 32), cuda=False), AUTO_BAND_MARGIN)  # 2**23 voxels
        self.assertIsNone(foreground_band("auto", (512, 512, 31), cuda=False))
        self.assertIsNone(foreground_band("auto", (512, 512, 120), cuda=True))
        self.assertIsNone(foreground_band("auto", (4096, 4096), cuda=False))  # 2D: one pass is cheap

    def test_explicit(self):
        self.assertEqual(foreground_band("24", (8, 8, 8), cuda=True), 24)
        self.assertEqual(foreground_band("0", (8, 8, 8), cuda=False), 0)
        self.assertIsNone(foreground_band("none", (512, 512, 120), cuda=False))
        with self.assertRaisesRegex(ValueError, "auto, none or a margin"):
            foreground_band("-3", (8, 8, 8), cuda=False)


if __name__ == "__main__":
    unittest.main()
