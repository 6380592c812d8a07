"""Temperature scaling wired in: the samplers' ``temperature``, the ``TemperatureFit`` handler,
``load_temperature``, and ``fit_temperature.json`` -> ``sample.json --temperature_scaling true`` through the bundle."""

from __future__ import annotations

import inspect
import json
import math
import shutil
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.inferers import SimpleInferer
from parameterized import parameterized
from command_server import SERVERS
from segq_testing import copy_bundle, workflow, write_cases
from torch import nn

from segq_monai import SAMPLERS
from segq_monai.data import split_fold, write_datalist
from segq_monai.handlers import TemperatureFit
from segq_monai.inferers.aleatoric import AleatoricSampler
from segq_monai.inferers.ensemble import EnsembleSampler
from segq_monai.inferers.samplers import MCDropoutSampler, SinglePassSampler, TTASampler
from segq_monai.calibration.temperature import bundle_temperature, load_temperature
from segq_monai.networks.aleatoric import AleatoricNet
from segq_monai.utils.errors import causes


def _net(out_channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Dropout(0.3), nn.Conv2d(4, out_channels, 1))


def _samplers(temperature: float) -> dict[str, tuple]:
    """``name: (sampler, network)``, each sampler seeded so that two temperatures see the same logits."""
    return {
        "single_pass": (SinglePassSampler(temperature=temperature), _net()),
        "mc_dropout": (MCDropoutSampler(3, temperature=temperature), _net()),
        "tta": (TTASampler(3, noise_std=0.1, temperature=temperature), _net()),
        "ensemble": (EnsembleSampler(networks=[_net(), _net()], temperature=temperature), _net()),
        "aleatoric": (AleatoricSampler(3, mc_dropout=True, temperature=temperature), AleatoricNet(_net(6), 3)),
    }


def _synthetic_cases(t_true: float, n: int = 8, size: int = 48, num_classes: int = 3, seed: int = 0):
    """Logits ``[C, size, size]`` per case whose calibrated probabilities are ``softmax(logits / t_true)``, and
    labels ``[1, size, size]`` drawn from them."""
    g = torch.Generator().manual_seed(seed)
    cases = []
    for _ in range(n):
        logits = 3.0 * torch.randn(num_classes, size, size, generator=g)
        prob = torch.softmax(logits / t_true, 0).movedim(0, -1).reshape(-1, num_classes)
        cases.append((logits, torch.multinomial(prob, 1, generator=g).reshape(1, size, size)))
    return cases


def _run_handler(handler: TemperatureFit, cases, batch_size: int = 3) -> None:
    """Run ``handler`` on a real Ignite engine whose outputs are decollated ``{"pred", "label"}`` lists."""
    engine = Engine(lambda e, batch: [{"pred": z, "label": y} for z, y in batch])
    handler.attach(engine)
    engine.run([cases[i : i + batch_size] for i in range(0, len(cases), batch_size)], max_epochs=1)


class TestSamplerTemperature(unittest.TestCase):
    def test_hand_computed(self):
        # a 1x1 convolution with logits z = (0, 2x): softmax(z / T)[1] = sigmoid(2x / T)
        net = nn.Conv2d(1, 2, 1)
        with torch.no_grad():
            net.weight.copy_(torch.tensor([0.0, 2.0]).reshape(2, 1, 1, 1))
            net.bias.zero_()
        x = torch.tensor([[0.0, 1.0], [-1.0, 0.5]]).reshape(1, 1, 2, 2)
        (prob,) = SinglePassSampler(temperature=2.0)(x, net, SimpleInferer())
        # sigmoid(x): sigmoid(0) = 0.5, sigmoid(1) = 0.7310586, sigmoid(-1) = 0.2689414, sigmoid(0.5) = 0.6224593
        want = torch.tensor([[0.5, 0.7310586], [0.2689414, 0.6224593]])
        torch.testing.assert_close(prob[0, 1], want, atol=1e-6, rtol=0)
        torch.testing.assert_close(prob[0, 0], 1 - want, atol=1e-6, rtol=0)
        (sig,) = SinglePassSampler("sigmoid", temperature=2.0)(x, net, SimpleInferer())  # sigmoid(2x / 2)
        torch.testing.assert_close(sig[0, 1], want, atol=1e-6, rtol=0)

    @parameterized.expand([(name,) for name in ("single_pass", "mc_dropout", "tta", "ensemble", "aleatoric")])
    def test_every_sampler_scales_its_logits(self, name):
        # with the same seed every sample sees the same logits z; p_1 = softmax(z), so softmax(z / T) equals
        # softmax(log(p_1) / T): the per-voxel constant log(sum exp z) / T cancels in the softmax
        x = torch.rand(2, 1, 8, 8)
        sampler, net = _samplers(1.0)[name]
        plain = list(sampler(x, net, SimpleInferer()))
        sampler, net = _samplers(2.5)[name]
        scaled = list(sampler(x, net, SimpleInferer()))
        self.assertEqual(len(scaled), len(plain))
        for p1, pt in zip(plain, scaled):
            torch.testing.assert_close(pt, torch.softmax(torch.log(p1) / 2.5, dim=1), atol=1e-5, rtol=1e-4)
            self.assertTrue(torch.equal(pt.argmax(1), p1.argmax(1)))
            self.assertLess(float(pt.max()), float(p1.max()))  # softer

    def test_default_is_unscaled(self):
        for name, cls in SAMPLERS.items():
            self.assertEqual(inspect.signature(cls).parameters["temperature"].default, 1.0, name)
        self.assertEqual(SinglePassSampler().temperature, 1.0)

    @parameterized.expand([(v,) for v in (0.0, -1.0, math.nan, math.inf, "warm", None, True)])
    def test_invalid_temperature(self, value):
        constructors = [
            lambda: SinglePassSampler(temperature=value),
            lambda: MCDropoutSampler(2, temperature=value),
            lambda: TTASampler(2, temperature=value),
            lambda: EnsembleSampler(networks=[_net()], temperature=value),
            lambda: AleatoricSampler(2, temperature=value),
        ]
        for make in constructors:
            with self.assertRaisesRegex(ValueError, "temperature must be a finite number > 0"):
                make()


class TestTemperatureFit(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    @parameterized.expand([("overconfident", 2.0), ("underconfident", 0.6)])
    def test_recovers_known_temperature(self, _, t_true):
        cases = _synthetic_cases(t_true)
        out = self.tmp / "fold0" / "temperature.json"
        _run_handler(TemperatureFit(out, max_voxels_per_case=2000, checkpoint="m/fold0/model.pt"), cases)
        result = json.loads(out.read_text())
        self.assertEqual(
            set(result),
            {"temperature", "ece_before", "ece_after", "nll_before", "nll_after", "cross_fit_temperatures",
             "n_cases", "n_voxels", "num_bins", "checkpoint"},
        )
        self.assertEqual((result["n_cases"], result["n_voxels"], result["num_bins"]), (8, 8 * 2000, 15))
        self.assertEqual(result["checkpoint"], "m/fold0/model.pt")
        # 16,000 voxels: over 20 seeds the fitted T scattered by 1.3% (sd) around t_true, so 5% is ~4 sd
        self.assertLess(abs(result["temperature"] / t_true - 1), 0.05)
        for t in result["cross_fit_temperatures"]:  # each from half the cases: sd ~1.9%, 8% is ~4 sd
            self.assertLess(abs(t / t_true - 1), 0.08)
        self.assertLess(result["ece_after"], 0.25 * result["ece_before"])
        self.assertLess(result["nll_after"], result["nll_before"])
        self.assertEqual(load_temperature(out), result["temperature"])
        self.assertFalse(list(out.parent.glob("*.tmp")))

    def test_subsampling_is_seeded_and_rerun_resets(self):
        cases = _synthetic_cases(1.5, n=4, size=32)
        handler = TemperatureFit(self.tmp / "a.json", max_voxels_per_case=300, seed=3)
        _run_handler(handler, cases)
        first = (self.tmp / "a.json").read_text()
        _run_handler(handler, cases)  # a second run starts from scratch, with the same draw
        self.assertEqual((self.tmp / "a.json").read_text(), first)
        self.assertEqual(json.loads(first)["n_voxels"], 4 * 300)
        _run_handler(TemperatureFit(self.tmp / "b.json", max_voxels_per_case=300, seed=4), cases)
        self.assertNotEqual(json.loads((self.tmp / "b.json").read_text())["temperature"],
                            json.loads(first)["temperature"])
        _run_handler(TemperatureFit(self.tmp / "all.json"), cases)  # under the cap: every voxel
        self.assertEqual(json.loads((self.tmp / "all.json").read_text())["n_voxels"], 4 * 32 * 32)

    def test_bad_input(self):
        (z, y), (z2, _) = _synthetic_cases(1.0, n=2, size=8)
        handler = TemperatureFit(self.tmp / "t.json")
        cases = [
            (lambda: handler.write(), "saw no cases"),
            (lambda: handler.add(z, None), "case 0 has no label"),
            (lambda: handler.add(z, y[:, :4]), r"logits \(3, 8, 8\) and label \(1, 4, 8\) do not match"),
            (lambda: handler.add(z[None], y[None]), "do not match"),  # a batch, not decollated
            (lambda: TemperatureFit(self.tmp / "t.json", max_voxels_per_case=0), "max_voxels_per_case"),
            (lambda: TemperatureFit(self.tmp / "t.json", num_bins=0), "num_bins"),
        ]
        for call, msg in cases:
            with self.subTest(msg=msg), self.assertRaisesRegex(ValueError, msg):
                call()
        handler.add(z, y)
        with self.assertRaisesRegex(ValueError, "case 1 has 2 classes"):
            handler.add(z2[:2], y)
        with self.assertRaisesRegex(ValueError, "at least 2 held-out cases"):
            handler.write()
        self.assertFalse((self.tmp / "t.json").exists())


class TestLoadTemperature(unittest.TestCase):
    def test_errors_name_the_file_and_the_fix(self):
        with tempfile.TemporaryDirectory() as tmp:
            fix = "fit_temperature.json first.*temperature_scaling to false"
            with self.assertRaisesRegex(FileNotFoundError, f"nowhere.json does not exist; run bundle/configs/{fix}"):
                load_temperature(Path(tmp) / "nowhere.json")
            for name, text in (("broken", "{"), ("no_key", '{"ece_before": 0.1}'), ("list", "[1.0]"),
                               ("negative", '{"temperature": -1.0}'), ("string", '{"temperature": "hot"}')):
                path = Path(tmp) / f"{name}.json"
                path.write_text(text)
                with self.subTest(name), self.assertRaisesRegex(ValueError, f"{name}\\.json.*{fix}"):
                    load_temperature(path)
            path = Path(tmp) / "ok.json"
            path.write_text('{"temperature": 1.25, "ece_before": 0.1}')
            self.assertEqual(load_temperature(path), 1.25)

    def test_bundle_flag(self):
        # the CLI passes `--temperature_scaling false` as the string 'false' (truthy): it must mean off
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "temperature.json"
            path.write_text('{"temperature": 1.25}')
            for flag in (True, "true", "True", "TRUE"):
                self.assertEqual(bundle_temperature(flag, path), 1.25, flag)
            for flag in (False, "false", "False"):
                self.assertEqual(bundle_temperature(flag, Path(tmp) / "absent.json"), 1.0, flag)  # never read
            with self.assertRaisesRegex(ValueError, "temperature_scaling must be true or false, got 'yes'"):
                bundle_temperature("yes", path)
            with self.assertRaisesRegex(TypeError, "temperature_scaling must be true or false, got 1"):
                bundle_temperature(1, path)


@pytest.mark.slow
class TestTemperatureBundle(unittest.TestCase):
    """train_segmentation (1 epoch) -> fit_temperature.json (CLI) -> sample.json with and without
    temperature_scaling."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp())
        cls.root = copy_bundle(cls.tmp)
        items = write_cases(cls.tmp / "data", [f"case{i}" for i in range(6)], (32, 40))  # padded to 32×48
        cls.datalist = cls.tmp / "data" / "datalist.json"
        write_datalist(cls.datalist, {"training": items})
        cls.held_out = split_fold(items, 0, 2)[1]
        cls.common = {"datalist": str(cls.datalist), "fold": 0, "num_folds": 2, "device": "cpu"}
        workflow(["train_segmentation.json"], cls.root, epochs=1, **cls.common)
        cls.calibrate = cls._cli(["fit_temperature.json"])
        cls.sample_t = cls._cli(["inference.json", "sample.json"], "--temperature_scaling", "true",
                                "--num_samples", "2", "--output_dir", str(cls.tmp / "mc_t"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def _cli(cls, configs: list[str], *args: str) -> tuple[int, str]:
        """``python -m monai.bundle run`` on ``configs``: (exit code, output), forked from a command server."""
        overrides = [x for k, v in cls.common.items() for x in (f"--{k}", str(v))]
        return SERVERS.run(
            ["-m", "monai.bundle", "run", "--bundle_root", str(cls.root),
             "--config_file", str([str(cls.root / "configs" / c) for c in configs]),
             "--meta_file", str(cls.root / "configs" / "metadata.json"), *overrides, *args],
            cls.tmp,
        )  # fmt: skip

    def _entropy(self, out: Path, case: str) -> np.ndarray:
        return np.asarray(nib.load(out / case / f"{case}_entropy.nii.gz").dataobj)

    def test_calibrate_writes_temperature_next_to_checkpoint(self):
        self.assertEqual(self.calibrate[0], 0, self.calibrate[1][-3000:])
        result = json.loads((self.root / "models" / "fold0" / "temperature.json").read_text())
        self.assertEqual(result["n_cases"], len(self.held_out))
        self.assertEqual(result["n_voxels"], len(self.held_out) * 32 * 40)  # the padding is cropped off
        self.assertEqual(result["num_bins"], 15)
        self.assertTrue(result["checkpoint"].endswith("fold0/model.pt"))
        self.assertGreater(result["temperature"], 0)
        for key in ("ece_before", "ece_after"):
            self.assertTrue(0 <= result[key] <= 1, key)
        for key in ("nll_before", "nll_after"):
            self.assertGreater(result[key], 0, key)

    def test_sampling_with_the_fitted_temperature(self):
        self.assertEqual(self.calibrate[0], 0, self.calibrate[1][-3000:])
        self.assertEqual(self.sample_t[0], 0, self.sample_t[1][-3000:])
        temperature = load_temperature(self.root / "models" / "fold0" / "temperature.json")
        workflow(["inference.json", "sample.json"], self.root, num_samples=2, output_dir=str(self.tmp / "mc_1"),
                 **self.common)
        case = Path(self.held_out[0]["image"]).name.split(".")[0]
        self.assertFalse(np.allclose(self._entropy(self.tmp / "mc_t", case), self._entropy(self.tmp / "mc_1", case)))
        # the deterministic pass, by hand: entropy of softmax(network(image) / T); DivisiblePadd put 4 columns
        # of padding on either side of the 40
        wf = workflow(["inference.json", "sample.json"], self.root, sampler="single_pass", temperature_scaling=True,
                      output_dir=str(self.tmp / "softmax_t"), **self.common)
        network, preprocessing = wf.parser.get_parsed_content("network"), wf.parser.get_parsed_content("preprocessing")
        self.assertEqual(wf.parser.get_parsed_content("segq#sampler_object").temperature, temperature)
        network.eval()
        for item in self.held_out:
            case = Path(item["image"]).name.split(".")[0]
            with torch.no_grad():
                logits = network(preprocessing(dict(item))["image"][None].as_tensor())[0, :, :, 4:44]
            prob = torch.softmax(logits / temperature, 0)
            want = -(prob * torch.log(prob.clamp_min(1e-30))).sum(0)
            np.testing.assert_allclose(self._entropy(self.tmp / "softmax_t", case), want.numpy(), atol=1e-5)

    def test_missing_temperature_file_names_the_fix(self):
        with self.assertRaises(Exception) as ctx:
            workflow(["inference.json", "sample.json"], self.root, temperature_scaling=True,
                     temperature_file=str(self.tmp / "no.json"),
                     output_dir=str(self.tmp / "none"), **self.common)
        text = " ".join(str(e) for e in causes(ctx.exception))
        self.assertRegex(text, "no.json does not exist; run bundle/configs/fit_temperature.json first")



if __name__ == "__main__":
    unittest.main()
