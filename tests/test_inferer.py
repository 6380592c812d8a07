"""UncertaintyInferer: 2D/3D, sliding windows, MONAI evaluator integration, bad input."""

from __future__ import annotations

import unittest

import torch
from ignite.engine import Events
from monai.data import MetaTensor
from monai.engines import SupervisedEvaluator
from monai.inferers import SimpleInferer, SlidingWindowInferer
from monai.networks.nets import UNet
from monai.transforms import Compose, FlattenSubKeysd
from parameterized import parameterized

from segq_monai.inferers.inferer import UncertaintyInferer
from segq_monai.inferers.samplers import MCDropoutSampler, SinglePassSampler
from segq_monai.inferers.streaming import MAPS


def _unet(dims: int = 2, dropout: float = 0.2) -> UNet:
    torch.manual_seed(0)
    return UNet(dims, 1, 3, channels=(4, 8, 16), strides=(2, 2), dropout=dropout)


class TestUncertaintyInferer(unittest.TestCase):
    def test_deterministic_network_has_zero_epistemic_uncertainty(self):
        net, x = _unet(dropout=0.0), torch.rand(2, 1, 16, 16)
        out = UncertaintyInferer(SinglePassSampler())(x, net)
        self.assertEqual(float(out["mutual_information"].abs().max()), 0.0)
        self.assertEqual(float(out["variance"].abs().max()), 0.0)
        self.assertEqual(float(out["agreement"].min()), 1.0)
        net.eval()
        with torch.no_grad():
            torch.testing.assert_close(out["prob"], torch.softmax(net(x), 1))
        self.assertTrue(torch.equal(out["seg"], out["prob"].argmax(1, keepdim=True)))

    def test_same_seed_same_maps(self):
        x, net = torch.rand(1, 1, 16, 16), _unet()
        a = UncertaintyInferer(MCDropoutSampler(5, seed=7))(x, net)
        b = UncertaintyInferer(MCDropoutSampler(5, seed=7))(x, net)
        for name in MAPS:
            torch.testing.assert_close(a[name], b[name], msg=name)
        self.assertGreater(float(a["mutual_information"].max()), 0.0)

    def test_3d_sliding_window_output_on_input_grid(self):
        net = _unet(dims=3)
        x = torch.rand(1, 1, 20, 27, 18)  # not a multiple of the window: padding must be undone
        inferer = UncertaintyInferer(MCDropoutSampler(3), SlidingWindowInferer((16, 16, 16), sw_batch_size=2))
        out = inferer(x, net)
        spatial = (20, 27, 18)
        for name, channels in [("prob", 3), ("seg", 1), ("entropy", 1), ("variance", 3), ("agreement", 1)]:
            self.assertEqual(tuple(out[name].shape), (1, channels, *spatial), name)
        self.assertEqual(tuple(out["pairwise_dice"].shape), (1, 2))
        # the single pass through the same sliding window equals MONAI's own sliding-window prediction
        single = UncertaintyInferer(SinglePassSampler(), SlidingWindowInferer((16, 16, 16)))(x, net)
        net.eval()
        with torch.no_grad():
            want = torch.softmax(SlidingWindowInferer((16, 16, 16))(x, net), 1)
        torch.testing.assert_close(single["prob"], want)

    def test_metatensor_metadata_kept(self):
        x = MetaTensor(torch.rand(1, 1, 16, 16), affine=torch.diag(torch.tensor([2.0, 3.0, 1.0, 1.0])))
        out = UncertaintyInferer(SinglePassSampler(), maps=("prob", "entropy", "pairwise_dice"))(x, _unet())
        self.assertEqual(sorted(out), ["entropy", "pairwise_dice", "prob"])
        self.assertIsInstance(out["entropy"], MetaTensor)
        torch.testing.assert_close(out["entropy"].affine, x.affine)

    def test_in_supervised_evaluator_with_flattened_maps(self):
        data = [{"image": torch.rand(1, 16, 16), "label": torch.zeros(1, 16, 16)} for _ in range(3)]
        evaluator = SupervisedEvaluator(
            device=torch.device("cpu"),
            val_data_loader=torch.utils.data.DataLoader(data, batch_size=2),
            network=_unet(),
            inferer=UncertaintyInferer(MCDropoutSampler(4)),
            postprocessing=Compose([FlattenSubKeysd(keys="pred")]),
        )
        seen = []
        evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.extend(e.state.output))
        evaluator.run()
        self.assertEqual(len(seen), 3)  # the last partial batch included
        for item in seen:
            self.assertTrue(set(MAPS) <= set(item))
            self.assertEqual(tuple(item["mutual_information"].shape), (1, 16, 16))

    @parameterized.expand(
        [
            ("rank", torch.rand(1, 16, 16), "batch"),
            ("channels", torch.rand(1, 2, 16, 16), "2 channels but the network takes 1"),
            ("nan", torch.full((1, 1, 16, 16), float("nan")), "NaN"),
            ("inf", torch.full((1, 1, 16, 16), float("inf")), "NaN/Inf"),
        ]
    )
    def test_bad_input(self, _, x, message):
        with self.assertRaisesRegex(ValueError, message):
            UncertaintyInferer(SinglePassSampler(), SimpleInferer())(x, _unet())

    def test_unknown_map(self):
        with self.assertRaisesRegex(ValueError, "Unknown maps"):
            UncertaintyInferer(SinglePassSampler(), maps=["entropy", "aleatoric"])


if __name__ == "__main__":
    unittest.main()
