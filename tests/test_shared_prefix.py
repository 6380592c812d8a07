"""Shared-prefix MC dropout: the same maps as full passes, the prefix run once, fallbacks, modes after errors."""

from __future__ import annotations

import pickle
import unittest
from unittest import mock

import torch
from monai.inferers import SimpleInferer, SlidingWindowInferer
from monai.networks.nets import BasicUNet, UNet
from parameterized import parameterized
from torch import nn

from segq_monai.inferers import samplers
from segq_monai.inferers.inferer import UncertaintyInferer
from segq_monai.inferers.modes import network_modes
from segq_monai.inferers.samplers import MCDropoutSampler
from segq_monai.inferers.shared_prefix import PointwiseConv, split_at_dropout
from segq_monai.inferers.streaming import MAPS

LOGGER = "segq_monai.inferers.samplers"


class _LastLayer(nn.Module):
    """(a) Last-layer MC dropout: a MONAI UNet without dropout, then channel dropout and a 1×1 output conv."""

    def __init__(self, dims: int = 2) -> None:
        super().__init__()
        self.body = UNet(dims, 1, 8, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)
        self.drop = (nn.Dropout2d if dims == 2 else nn.Dropout3d)(0.5)
        self.head = (nn.Conv2d if dims == 2 else nn.Conv3d)(8, 3, 1)

    def forward(self, x):
        return self.head(self.drop(self.body(x)))


def _decoder_dropout(dims: int = 2, p: float = 0.3) -> UNet:
    """(b) A MONAI UNet with dropout only in its last two decoder stages (``model.1.submodule.2``, ``model.2``)."""
    net = UNet(dims, 1, 3, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)
    for name, m in net.named_modules():
        if isinstance(m, nn.Dropout) and name.startswith(("model.2.", "model.1.submodule.2.")):
            m.p = p
    return net


class _ConvDropHead(nn.Module):
    """Convolution, dropout, 1×1 head, with a twist. ``branchy``: data-dependent control flow, which torch.fx
    cannot trace. ``noisy``: a random function beside the dropout module, drawn in the stochastic part in the
    same order. ``inplace``: in-place dropout on a feature the output also reads, which full passes see dropped."""

    def __init__(self, variant: str) -> None:
        super().__init__()
        self.variant = variant
        self.conv, self.head = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 3, 1)
        self.drop = nn.Dropout(0.5, inplace=True) if variant == "inplace" else nn.Dropout2d(0.5)

    def forward(self, x):
        h = self.conv(x)
        if self.variant == "branchy" and h.mean() > 0:
            h = h * 2
        if self.variant == "noisy":
            return self.head(self.drop(h) + 0.1 * torch.randn_like(h))
        if self.variant == "inplace":
            return self.head(self.drop(h)) + h[:, :3]
        return self.head(self.drop(h))


def _net(kind: str) -> nn.Module:
    torch.manual_seed(0)
    return {
        "last_layer_2d": lambda: _LastLayer(2),
        "last_layer_3d": lambda: _LastLayer(3),
        "decoder_2d": lambda: _decoder_dropout(2),
        "unet_dropout_everywhere": lambda: UNet(2, 1, 3, channels=(4, 8, 16), strides=(2, 2), dropout=0.2),
        "noisy_head": lambda: _ConvDropHead("noisy"),
        "dropout_on_input": lambda: nn.Sequential(nn.Dropout2d(0.3), nn.Conv2d(1, 3, 3, padding=1)),
        "untraceable": lambda: _ConvDropHead("branchy"),
        "basic_unet_traced_wrongly": lambda: BasicUNet(2, 1, 3, features=(4, 4, 8, 8, 16, 4), dropout=0.2),
        "inplace_dropout": lambda: _ConvDropHead("inplace"),
    }[kind]()


def _input(kind: str, batch: int = 2) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(batch, 1, *((16, 16, 16) if kind.endswith("3d") else (32, 32)))


def _maps(net: nn.Module, x: torch.Tensor, shared: bool, chunk: int, inferer=None) -> dict[str, torch.Tensor]:
    sampler = MCDropoutSampler(7, chunk_size=chunk, seed=5, shared_prefix=shared)
    return UncertaintyInferer(sampler, inferer)(x, net)


# (network, whether a prefix is shared, the reason logged otherwise)
CASES = [
    ("last_layer_2d", True, None),
    ("last_layer_3d", True, None),
    ("decoder_2d", True, None),
    ("unet_dropout_everywhere", True, None),  # ADN order NDA: the first convolutions and norm precede dropout
    ("noisy_head", True, None),
    ("dropout_on_input", False, "acts on the input"),
    ("untraceable", False, "cannot be traced"),
    ("basic_unet_traced_wrongly", False, "graph of BasicUNet is wrong"),
    ("inplace_dropout", False, "write in place"),
]


class TestSharedPrefixEqualsFullPasses(unittest.TestCase):
    @parameterized.expand([(f"{kind}_chunk{chunk}", kind, shared, reason, chunk)
                           for kind, shared, reason in CASES for chunk in (1, 3)])  # fmt: skip
    def test_same_maps_as_full_passes(self, _, kind, shared, reason, chunk):
        net, x = _net(kind), _input(kind)
        full = _maps(net, x, False, chunk)
        if shared:
            with self.assertNoLogs(LOGGER, "INFO"):
                fast = _maps(net, x, True, chunk)
        else:
            with self.assertLogs(LOGGER, "INFO") as logs:
                fast = _maps(net, x, True, chunk)
            self.assertIn(reason, "\n".join(logs.output))
        for name in MAPS:
            torch.testing.assert_close(fast[name], full[name], msg=name)
        self.assertGreater(float(full["mutual_information"].max()), 1e-4)  # dropout is active: samples differ

    def test_sliding_window_runs_full_passes(self):
        net, x = _net("last_layer_2d"), _input("last_layer_2d")
        window = SlidingWindowInferer((16, 16), sw_batch_size=2)
        with self.assertLogs(LOGGER, "DEBUG") as logs:
            fast = _maps(net, x, True, 1, window)
        self.assertIn("SlidingWindowInferer", "\n".join(logs.output))
        full = _maps(net, x, False, 1, window)
        for name in MAPS:
            torch.testing.assert_close(fast[name], full[name], msg=name)


class TestPrefixRunsOnce(unittest.TestCase):
    @parameterized.expand([("chunk1", 1, True, 1, 7), ("chunk3", 3, True, 2, 3), ("full_passes", 1, False, 7, 7)])
    def test_calls(self, _, chunk, shared, prefix_calls, head_calls):
        # 7 samples: chunks 3 + 3 + 1 run the prefix for a chunk of 3, then once more for the last chunk of 1
        net, x = _net("last_layer_2d"), _input("last_layer_2d")
        calls = {"prefix": 0, "head": 0}
        first_conv = next(m for m in net.body.modules() if isinstance(m, nn.Conv2d))
        first_conv.register_forward_hook(lambda *_: calls.__setitem__("prefix", calls["prefix"] + 1))
        net.head.register_forward_hook(lambda *_: calls.__setitem__("head", calls["head"] + 1))
        samples = list(MCDropoutSampler(7, chunk_size=chunk, shared_prefix=shared)(x, net, SimpleInferer()))
        self.assertEqual(len(samples), 7)
        self.assertEqual(calls, {"prefix": prefix_calls, "head": head_calls})

    def test_skip_connections_cache_several_tensors(self):
        net, x = _net("decoder_2d"), _input("decoder_2d")
        split = split_at_dropout(net, x)
        net.eval()
        with torch.no_grad():
            frontier = split.prefix(x)
            torch.testing.assert_close(split.remainder(*frontier), net(x))  # dropout off: the same function
        self.assertEqual(len(frontier), 2)  # the top encoder feature (skip) and the second-last decoder feature
        self.assertEqual([t.shape[1] for t in frontier], [4, 4])

    def test_split_is_reused_until_the_network_changes(self):
        net, x = _net("last_layer_2d"), _input("last_layer_2d")
        sampler = MCDropoutSampler(3, shared_prefix=True)
        with mock.patch.object(samplers, "split_at_dropout", wraps=samplers.split_at_dropout) as split:
            list(sampler(x, net, SimpleInferer()))
            list(sampler(x, net, SimpleInferer()))
            self.assertEqual(split.call_count, 1)
            net.head = nn.Conv2d(8, 3, 1)  # a new module: the cached split would run the old one
            fast = torch.stack(list(sampler(x, net, SimpleInferer())))
            self.assertEqual(split.call_count, 2)
            list(sampler(torch.rand(1, 1, 48, 40), net, SimpleInferer()))  # another size: the same graph
            self.assertEqual(split.call_count, 2)
            list(sampler(x.double(), net.double(), SimpleInferer()))  # another dtype
            self.assertEqual(split.call_count, 3)
            net.float()
        full = torch.stack(list(MCDropoutSampler(3, shared_prefix=False)(x, net, SimpleInferer())))
        torch.testing.assert_close(fast, full)

    def test_sampler_pickles_without_its_splits(self):
        net, x = _net("last_layer_2d"), _input("last_layer_2d")
        sampler = MCDropoutSampler(3, seed=2)
        first = torch.stack(list(sampler(x, net, SimpleInferer())))
        copy = pickle.loads(pickle.dumps(sampler))
        self.assertEqual(len(copy._splits), 0)
        torch.testing.assert_close(torch.stack(list(copy(x, net, SimpleInferer()))), first)


class TestPointwiseConv(unittest.TestCase):
    """1×1 convolutions of the stochastic part run as matrix products, whole-channel dropout before one folded in."""

    def test_by_hand(self):
        # C = 2 channels, K = 1 output, W = [2, 3], bias 1; with channel 0 dropped (p = 0.5: kept ones doubled)
        # the output is 1 + 2 * 3 * x1; the fold draws the same mask as the unfolded dropout for the same seed
        drop, conv = nn.Dropout2d(0.5).train(), nn.Conv2d(2, 1, 1)
        conv.weight.data = torch.tensor([2.0, 3.0]).view(1, 2, 1, 1)
        conv.bias.data = torch.tensor([1.0])
        x = torch.rand(4, 2, 3, 5)
        for seed in range(6):
            torch.manual_seed(seed)
            want = conv(drop(x))
            torch.manual_seed(seed)
            got = PointwiseConv(conv, drop)(x)
            torch.testing.assert_close(got, want)
            torch.manual_seed(seed)
            kept = drop(torch.ones(4, 2, 1, 1))[:, :, 0, 0] / 2  # 0/1 per case and channel
            torch.testing.assert_close(got, 1 + 4 * kept[:, :1, None, None] * x[:, :1] + 6 * kept[:, 1:, None, None] * x[:, 1:])

    @parameterized.expand([("2d", 2), ("3d", 3)])
    def test_last_layer_is_folded(self, _, dims):
        net, x = _LastLayer(dims), _input(f"last_layer_{dims}d")
        with network_modes(net, train=[net.drop]), torch.no_grad():
            split = split_at_dropout(net, x)
            folded = [m for m in split.remainder.modules() if isinstance(m, PointwiseConv)]
            self.assertEqual([(m.conv, m.dropout) for m in folded], [(net.head, net.drop)])
            torch.manual_seed(3)
            want = net(x)
            frontier = split.prefix(x)
            torch.manual_seed(3)
            torch.testing.assert_close(split.remainder(*frontier), want)

    @parameterized.expand(
        [
            ("element_wise", lambda n: setattr(n, "drop", nn.Dropout(0.5)), [None]),  # a matmul, nothing folded
            ("3x3_head", lambda n: setattr(n, "head", nn.Conv2d(8, 3, 3, padding=1)), []),
            ("hooked_head", lambda n: n.head.register_forward_hook(lambda *_: None), []),
        ]
    )
    def test_not_folded(self, _, change, dropouts):
        net = _LastLayer(2)
        change(net)
        split = split_at_dropout(net, _input("last_layer_2d"))
        self.assertEqual([m.dropout for m in split.remainder.modules() if isinstance(m, PointwiseConv)], dropouts)

    def test_plain_pointwise_conv_by_hand(self):
        conv = nn.Conv2d(2, 1, 1)
        conv.weight.data = torch.tensor([2.0, 3.0]).view(1, 2, 1, 1)
        conv.bias.data = torch.tensor([1.0])
        x = torch.rand(3, 2, 4, 5)
        torch.testing.assert_close(PointwiseConv(conv)(x), 1 + 2 * x[:, :1] + 3 * x[:, 1:])


class TestModesAfterError(unittest.TestCase):
    @parameterized.expand([("train", True), ("eval", False)])
    def test_modes_restored_after_exception_in_stochastic_part(self, _, training):
        net, x = _net("last_layer_2d"), _input("last_layer_2d")
        net.train(training)
        modes = [m.training for m in net.modules()]
        prefix_calls = []
        net.body.model[0].conv.unit0.conv.register_forward_hook(lambda *_: prefix_calls.append(1))

        def boom(*_):
            raise RuntimeError("boom")

        net.head.register_forward_hook(boom)
        with self.assertRaisesRegex(RuntimeError, "boom"):
            list(MCDropoutSampler(3, shared_prefix=True)(x, net, SimpleInferer()))
        self.assertEqual(prefix_calls, [1])  # the shared prefix ran, then the remainder raised
        self.assertEqual([m.training for m in net.modules()], modes)


if __name__ == "__main__":
    unittest.main()
