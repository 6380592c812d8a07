"""The example host bundle ``examples/colin27_regions3d``: model-zoo metadata, configs that parse, a network whose
input and output match what the metadata says."""

from __future__ import annotations

import json
import unittest

import jsonschema
import torch
from monai.bundle import ConfigParser

from segq_testing import REPO

HOST = REPO / "examples" / "colin27_regions3d"
SCHEMA = REPO / "configs" / "schema" / "meta_schema.json"


class TestExampleHost(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.meta = json.loads((HOST / "configs" / "metadata.json").read_text())

    def test_metadata_valid_against_schema(self):
        validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(self.meta)]
        self.assertEqual(errors, [])
        self.assertIn(self.meta["version"], self.meta["changelog"])

    def test_layout(self):
        for name in ("configs/train.json", "configs/inference.json", "configs/metadata.json", "configs/logging.conf",
                     "docs/README.md"):  # fmt: skip
            self.assertTrue((HOST / name).is_file(), name)

    def test_network_matches_metadata_in_both_configs(self):
        fmt = self.meta["network_data_format"]
        names = fmt["outputs"]["pred"]["channel_def"]
        self.assertEqual(list(names.values()), ["background", "frontal", "temporal", "parietal_occipital",
                                                "cerebellum"])  # fmt: skip
        for config in ("train.json", "inference.json"):
            parser = ConfigParser()
            parser.read_config(str(HOST / "configs" / config))
            self.assertGreater(parser["network_def"]["dropout"], 0.0)  # MC dropout can sample it
            net = parser.get_parsed_content("network_def").eval()
            x = torch.zeros(1, fmt["inputs"]["image"]["num_channels"], 32, 40, 32)  # "8*n" per axis
            with torch.no_grad():
                y = net(x)
            self.assertEqual(tuple(y.shape), (1, fmt["outputs"]["pred"]["num_channels"], 32, 40, 32))
            self.assertEqual(len(names), fmt["outputs"]["pred"]["num_channels"])

    def test_inference_is_spleen_style(self):
        parser = ConfigParser()
        parser.read_config(str(HOST / "configs" / "inference.json"))
        post = [t["_target_"] for t in parser["postprocessing"]["transforms"]]
        self.assertEqual(post, ["Activationsd", "Invertd", "AsDiscreted", "SaveImaged"])
        self.assertEqual(parser["inferer"]["_target_"], "SlidingWindowInferer")
        self.assertIn("$@checkpointloader(@evaluator)", parser["initialize"])


if __name__ == "__main__":
    unittest.main()
