"""A deployment is exactly what was fitted.

* The command lines ``fit`` prints: every value written by :func:`segq_monai.apps.workflows.cli_value` is parsed back
  to itself by MONAI's own entry point (``monai.bundle.__main__``, Python Fire): a boolean, a number, a list,
  ``None``, a string with spaces, a ``$`` expression, strings Fire would read as something else.
* The binding (:mod:`segq_monai.utils.host_binding`): hand-computed digests, settings described from the objects,
  each kind of difference named with both values.
* A fitted host (``spleen_like``): a deployment on the host as fitted runs; with changed weights, a changed
  preprocessing setting, a changed network or a fit made before bindings it is refused before any case is written,
  naming the difference and the fix, by the bundle CLI, by MONAI Label's pipeline and by ``fit --recalibrate``;
  ``--segq#allow_host_change true`` runs it with a WARNING and a note in ``promise.json`` and the cohort page.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import struct
import tempfile
import unittest
from pathlib import Path

import pytest
import torch
from monai.bundle import run as bundle_run
from monai.inferers import SlidingWindowInferer
from monai.transforms import Compose, LoadImaged, Spacingd
from parameterized import parameterized
from segq_testing import REPO, make_host, parse_bundle_command, write_labelled_cases
from test_fit import run_fit

from segq_monai.apps.fit_host import _parse_override
from segq_monai.apps.workflows import bundle_command
from segq_monai.utils.command_line import cli_value
from segq_monai.data import write_datalist
from segq_monai.handlers.host_binding import check_host_binding
from segq_monai.monailabel.pipeline import SegQPipeline
from segq_monai.utils.errors import bad_input
from segq_monai.utils.host_binding import binding_differences, describe, host_binding, weights_sha256

OVERLAY = REPO / "configs" / "segq_overlay.json"


VALUES = [
    ("boolean", False),
    ("true", True),
    ("integer", 3),
    ("float", 1.5),
    ("list", [1.5, 1.5, 3.0]),
    ("none", None),
    ("spaces", "/data/my scans/FIT"),
    ("expression", "$torch.device('cpu')"),
    ("reference", "@network_def"),
    ("hash", "a#b"),  # unquoted, Fire drops what follows '#'
    ("list_text", "[a, b]"),  # unquoted, Fire reads a list of two strings
    ("digits", "123"),  # unquoted, Fire reads an int
    ("dict", {"highres": True, "roi": [96, 96, 96]}),
]


class TestCommandLine(unittest.TestCase):
    @parameterized.expand(VALUES)
    def test_value_round_trip(self, _, value):
        command = bundle_command(["/h/configs/inference.json", "/o/segq_overlay.json"], "/h", "evaluating",
                                 {"some#id": value, "segq#fit_dir": "/f/FIT"})  # fmt: skip
        parsed = parse_bundle_command(command)
        self.assertEqual((parsed["some#id"], type(parsed["some#id"])), (value, type(value)))
        self.assertEqual(parsed["run_id"], "evaluating")
        self.assertEqual(parsed["config_file"], ["/h/configs/inference.json", "/o/segq_overlay.json"])

    def test_json_false_would_be_true(self):
        """What the fit printed before: ``--id false`` reaches the config as the string 'false' (truthy)."""
        self.assertEqual(parse_bundle_command("python -m monai.bundle run --x false")["x"], "false")
        self.assertEqual(cli_value(False), "False")

    def test_unwritable_value(self):
        with self.assertRaisesRegex(ValueError, r"\$ expression"):
            cli_value(float("inf"))

    @parameterized.expand([
        ("x=False", False), ("x=false", False), ("x=None", None), ("x=[1, 2]", [1, 2]), ("x=2.5", 2.5),
        ("x=$torch.device('cpu')", "$torch.device('cpu')"), ("x=abc#def", "abc#def"), ("x=cpu", "cpu"),
    ])  # fmt: skip
    def test_host_override(self, text, value):
        self.assertEqual(_parse_override(text), ("x", value))


class TestBinding(unittest.TestCase):
    def test_weights_digest_by_hand(self):
        net = torch.nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            net.weight.fill_(1.0)
        expected = hashlib.sha256(b"weight:torch.float32:(1, 1)" + struct.pack("<f", 1.0)).hexdigest()
        self.assertEqual(weights_sha256(net), expected)

    def test_describe(self):
        settings = describe(Compose([LoadImaged("image"), Spacingd("image", pixdim=(3, 3, 2))]))
        self.assertEqual(settings["transforms[1].spacing_transform.pixdim"], [3.0, 3.0, 2.0])
        self.assertEqual(settings["transforms.__len__"], 2)
        self.assertFalse([k for k in settings if ".readers" in k])  # readers chosen by what is installed: left out
        named = describe(LoadImaged("image", reader="NibabelReader"))
        self.assertEqual(named["_loader.readers[-1].__class__"], "monai.data.image_reader.NibabelReader")
        self.assertNotIn("progress", describe(SlidingWindowInferer([8, 8], progress=True)))  # how, not what

    def test_differences_named(self):
        net = torch.nn.Conv2d(1, 2, 3)
        fitted = host_binding(net, Spacingd("image", pixdim=(3, 3)), SlidingWindowInferer([8, 8]))
        self.assertEqual(binding_differences(fitted, fitted), [])
        here = host_binding(net, Spacingd("image", pixdim=(1.5, 1.5)), SlidingWindowInferer([8, 8], overlap=0.5))
        self.assertEqual(binding_differences(fitted, here), [
            "preprocessing: spacing_transform.pixdim is [1.5, 1.5] here, [3.0, 3.0] in the fit",
            "inferer: overlap is 0.5 here, 0.25 in the fit",
        ])  # fmt: skip
        with torch.no_grad():
            net.bias.add_(1.0)
        lines = binding_differences(fitted, host_binding(net, Spacingd("image", pixdim=(3, 3)), SlidingWindowInferer([8, 8])))
        self.assertEqual(lines, [f"weights: the network's weights digest is {weights_sha256(net)[:12]} here, "
                                 f"{fitted['weights'][:12]} in the fit"])  # fmt: skip

    def test_check_refuses_names_fix_and_allows(self):
        net = torch.nn.Conv2d(1, 2, 3)
        fitted = host_binding(net, Spacingd("image", pixdim=(3, 3)), SlidingWindowInferer([8, 8]))
        here = host_binding(net, Spacingd("image", pixdim=(1.5, 1.5)), SlidingWindowInferer([8, 8]))
        fit = {"host_binding": fitted, "host_bundle": {"name": "wb", "overrides": {"displayable_configs#highres": False}}}
        with self.assertRaises(ValueError) as refused:
            check_host_binding("/f/FIT", fit, here)
        text = str(refused.exception)
        for part in ("/f/FIT", "'wb'", "[1.5, 1.5] here, [3.0, 3.0] in the fit", "--displayable_configs#highres False",
                     "--recalibrate", "--segq#allow_host_change true"):  # fmt: skip
            self.assertIn(part, text)
        self.assertEqual(check_host_binding("/f/FIT", fit, fitted), [])
        with self.assertLogs("segq_monai.handlers.host_binding", "WARNING") as logs:
            lines = check_host_binding("/f/FIT", fit, here, allow_host_change=True)
        self.assertEqual(len(lines), 1)
        self.assertIn("segq#allow_host_change", logs.output[0])
        with self.assertRaisesRegex(ValueError, "made before fits recorded their host"):
            check_host_binding("/f/FIT", {"host_bundle": {}}, here)


@pytest.mark.slow
class TestFittedHost(unittest.TestCase):
    """One ``spleen_like`` fit, deployed on its host as fitted and as changed."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="segq_binding_"))
        cls.host = make_host("spleen_like", cls.tmp)
        data = cls.tmp / "data"
        shape = (16, 16, 12)
        train = write_labelled_cases(data / "train", ["t0", "t1"], shape, seed=1)
        cls.cal = write_labelled_cases(data / "cal", [f"k{i}" for i in range(4)], shape, seed=2)
        cls.datalist = write_datalist(data / "datalist.json", {"validation": train, "calibration": cls.cal})
        cls.fit_dir = cls.tmp / "FIT"
        printed = run_fit(cls.host, cls.datalist, cls.fit_dir, "--tau", "0.5", stderr=io.StringIO())
        cls.deploy = parse_bundle_command(printed.strip().splitlines()[-1])
        cls.inputs = {"dataset_dir": str(data / "cal")}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def _deploy(self, name: str, **extra) -> Path:
        out = self.tmp / name
        bundle_run(**{**self.deploy, **self.inputs, "output_dir": str(out), **extra})
        return out

    def _refused(self, name: str, **extra) -> str:
        with self.assertRaises(Exception) as refused:
            self._deploy(name, **extra)
        self.assertFalse((self.tmp / name / "quality.csv").exists())  # refused before any case is written
        return str(bad_input(refused.exception))

    def _changed_weights(self) -> tuple[str, str]:
        """Perturb the host's weights file (restored after the test); its digests before and after."""
        path = self.host / "models" / "model.pt"
        before = path.read_bytes()
        self.addCleanup(path.write_bytes, before)
        state = torch.load(path, weights_only=True)
        state = {k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}
        torch.save(state, path)
        return hashlib.sha256(before).hexdigest(), hashlib.sha256(path.read_bytes()).hexdigest()

    def test_as_fitted(self):
        out = self._deploy("as_fitted")
        self.assertTrue((out / "quality.csv").is_file())
        self.assertNotIn("host_change", json.loads((out / "promise.json").read_text()))
        self.assertNotIn('id="host_change"', (out / "index.html").read_text())

    def test_changed_weights(self):
        before, after = self._changed_weights()
        text = self._refused("weights")
        for part in ("weights", f"{self.host / 'models' / 'model.pt'} is {after[:12]} here",
                     f"was {before[:12]} at the fit", "--segq#allow_host_change true", "python -m segq_monai fit"):
            self.assertIn(part, text)

    def test_changed_preprocessing(self):
        text = self._refused("spacing", **{"preprocessing#transforms#3#pixdim": [1.0, 1.0, 1.0]})
        self.assertIn("preprocessing: transforms[3].spacing_transform.pixdim is [1.0, 1.0, 1.0] here, "
                      "[2.0, 2.0, 2.0] in the fit", text)  # fmt: skip

    def test_changed_network(self):
        text = self._refused("network", **{"network_def#dropout": 0.5})
        self.assertIn("network: UNet (architecture digest", text)

    def test_older_fit(self):
        fit_json = self.fit_dir / "fit.json"
        content = fit_json.read_text()
        self.addCleanup(fit_json.write_text, content)
        fit_json.write_text(json.dumps({k: v for k, v in json.loads(content).items() if k != "host_binding"}))
        self.assertIn("made before fits recorded their host", self._refused("older"))

    def test_allow_host_change(self):
        self._changed_weights()
        with self.assertLogs("segq_monai.handlers.host_binding", "WARNING") as logs:
            out = self._deploy("allowed", **{"segq#allow_host_change": "true"})
        self.assertIn("differs from the fitted one", logs.output[0])
        note = json.loads((out / "promise.json").read_text())["host_change"]
        self.assertEqual(len(note), 1)
        self.assertTrue(note[0].startswith("weights: "))
        self.assertIn('id="host_change"', (out / "index.html").read_text())
        self.assertTrue((out / "quality.csv").is_file())

    def test_monailabel_pipeline(self):
        self._changed_weights()
        pipeline = SegQPipeline(self.host, fit_dir=self.fit_dir, device="cpu")
        with self.assertRaisesRegex(ValueError, "not the one the quality head .* was fitted to"):
            pipeline(self.cal[0]["image"])

    def test_recalibrate(self):
        self._changed_weights()
        copy = self.tmp / "FIT_copy"
        shutil.copytree(self.fit_dir, copy)
        with self.assertRaises(Exception) as refused:
            run_fit(self.host, self.datalist, copy, "--tau", "0.5", "--recalibrate", stderr=io.StringIO())
        self.assertIn("weights digest", str(bad_input(refused.exception)))


if __name__ == "__main__":
    unittest.main()
