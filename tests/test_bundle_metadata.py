"""The bundle's metadata: valid against the repo's schema copy, one source, consistent with the networks.

MONAI's official metadata schema cannot be downloaded in this environment; ``configs/schema/meta_schema.json``
mirrors it (see its ``description``), and these tests validate ``bundle/configs/metadata.json`` against it, both
with ``jsonschema`` directly and through ``monai.bundle.verify_metadata`` (which skips the download when the
schema file is already at ``filepath``).
"""

from __future__ import annotations

import configparser
import copy
import hashlib
import importlib.metadata
import json
import logging
import logging.config
import os
import tempfile
import unittest
from pathlib import Path

import jsonschema
from monai.bundle import ConfigParser, verify_metadata, verify_net_in_out
from packaging.requirements import Requirement
from parameterized import parameterized

import segq_monai

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLE_DIR = REPO_ROOT / "bundle"
METADATA = BUNDLE_DIR / "configs" / "metadata.json"
TOP_METADATA = REPO_ROOT / "metadata.json"
LOGGING_CONF = BUNDLE_DIR / "configs" / "logging.conf"
SCHEMA = REPO_ROOT / "configs" / "schema" / "meta_schema.json"
OFFICIAL_SCHEMA_URL = (
    "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
)

# The networks the metadata describes (the bundle's stage-1 UNet and stage-2 QualityRegressor).
NETWORKS = {
    "network_def": {
        "_target_": "UNet",
        "spatial_dims": 2,
        "in_channels": 1,
        "out_channels": 2,
        "channels": [16, 32, 64, 128],
        "strides": [2, 2, 2],
        "num_res_units": 2,
        "norm": "batch",
        "dropout": 0.2,
    },
    "quality_network_def": {
        "_target_": "segq_monai.QualityRegressor",
        "spatial_dims": 2,
        "in_channels": "$segq_monai.quality_input_channels(['image', 'seg', 'entropy'], 2, 1)",
        "out_channels": 1,
        "channels": [16, 32, 64, 128],
        "strides": [2, 2, 2, 2],
        "dropout": 0.2,
    },
}


def _load(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def _without(meta: dict, *path: str) -> dict:
    """A deep copy of ``meta`` with the key at ``path`` removed."""
    out = copy.deepcopy(meta)
    node = out
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return out


def _with(meta: dict, value, *path: str) -> dict:
    """A deep copy of ``meta`` with the key at ``path`` set to ``value``."""
    out = copy.deepcopy(meta)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


META = _load(METADATA)

# Deliberately broken copies, each of which the schema must reject.
BROKEN_CASES = [
    ("missing_network_data_format", _without(META, "network_data_format")),
    ("version_not_a_string", _with(META, 1, "version")),
    ("missing_network_data_format_and_version_int", _with(_without(META, "network_data_format"), 0.1, "version")),
    ("missing_monai_version", _without(META, "monai_version")),
    ("missing_schema", _without(META, "schema")),
    ("missing_outputs", _without(META, "network_data_format", "outputs")),
    ("input_without_dtype", _without(META, "network_data_format", "inputs", "image", "dtype")),
    ("num_channels_not_integer", _with(META, "1", "network_data_format", "inputs", "image", "num_channels")),
    ("quality_block_without_inputs", _without(META, "quality_data_format", "inputs")),
    ("references_not_a_list", _with(META, "DeVries & Taylor 2018", "references")),
    ("authors_not_a_string", _with(META, ["segq-monai developers"], "authors")),
]


class TestBundleMetadata(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.schema = _load(SCHEMA)
        cls.validator = jsonschema.Draft7Validator(cls.schema)

    def test_schema_is_valid_draft7_and_says_why_it_exists(self):
        jsonschema.Draft7Validator.check_schema(self.schema)
        self.assertIn("draft-07", self.schema["$schema"])
        self.assertIn("cannot be downloaded", self.schema["description"])
        for key in ("version", "monai_version", "pytorch_version", "numpy_version", "required_packages_version"):
            self.assertIn(key, self.schema["required"])
        for key in ("task", "description", "authors", "copyright", "network_data_format"):
            self.assertIn(key, self.schema["required"])

    def test_metadata_is_valid(self):
        errors = sorted(self.validator.iter_errors(META), key=lambda e: list(e.path))
        self.assertEqual([f"{list(e.path)}: {e.message}" for e in errors], [])

    def test_metadata_fields(self):
        self.assertEqual(META["schema"], OFFICIAL_SCHEMA_URL)
        self.assertEqual(META["name"], "segq_monai_brain_quality")
        self.assertEqual(META["version"], "0.1.0")
        self.assertIn(META["version"], META["changelog"])
        self.assertEqual(META["data_type"], "nibabel")
        self.assertIn("not", META["intended_use"].lower())
        self.assertIn("research", META["intended_use"].lower())
        refs = " ".join(META["references"])
        for needle in ("1807.00502", "Gal", "Zenk", "Holmes", "Tzourio-Mazoyer"):
            self.assertIn(needle, refs)
        for pkg in ("pytorch-ignite", "nibabel", "itk", "fire", "matplotlib", "segq-monai"):
            self.assertIn(pkg, META["required_packages_version"])

    def test_metadata_versions_lie_in_the_dependency_ranges(self):
        # the metadata records the versions the bundle's figures were made with (model-zoo installs exactly those);
        # they must satisfy the ranges the installed segq-monai declares (pyproject.toml)
        required = [Requirement(d) for d in importlib.metadata.requires("segq-monai")]
        ranges = {r.name: r.specifier for r in required if r.marker is None}
        recorded = {"torch": META["pytorch_version"], "monai": META["monai_version"], "numpy": META["numpy_version"],
                    "pytorch-ignite": META["required_packages_version"]["pytorch-ignite"]}  # fmt: skip
        for name, version in recorded.items():
            self.assertIn(version, ranges[name], name)
        self.assertEqual(META["required_packages_version"]["segq-monai"], importlib.metadata.version("segq-monai"))
        self.assertEqual(segq_monai.__version__, importlib.metadata.version("segq-monai"))

    def test_top_level_metadata_is_the_same_file(self):
        self.assertTrue(TOP_METADATA.exists(), "metadata.json at the repository root is missing")
        self.assertTrue(TOP_METADATA.is_symlink(), "metadata.json at the root must link to bundle/configs/")
        self.assertEqual(os.readlink(TOP_METADATA), os.path.join("bundle", "configs", "metadata.json"))
        self.assertEqual(TOP_METADATA.resolve(), METADATA.resolve())
        self.assertEqual(_load(TOP_METADATA), META)

    @parameterized.expand(BROKEN_CASES)
    def test_broken_copy_fails(self, _, broken):
        with self.assertRaises(jsonschema.ValidationError):
            jsonschema.validate(broken, self.schema, cls=jsonschema.Draft7Validator)

    def test_monai_verify_metadata_with_the_repo_schema(self):
        # the schema file exists at `filepath` with the given hash, so MONAI skips the download and validates
        md5 = hashlib.md5(SCHEMA.read_bytes()).hexdigest()
        verify_metadata(meta_file=str(METADATA), filepath=str(SCHEMA), hash_val=md5)
        with tempfile.TemporaryDirectory() as tmp:
            broken = Path(tmp) / "metadata.json"
            broken.write_text(json.dumps(_with(_without(META, "network_data_format"), 1, "version")))
            with self.assertRaises(ValueError):
                verify_metadata(meta_file=str(broken), filepath=str(SCHEMA), hash_val=md5)

    def test_config_parser_loads_the_metadata(self):
        self.assertTrue(LOGGING_CONF.is_file())
        loaded = ConfigParser.load_config_file(str(LOGGING_CONF.parent / "metadata.json"))
        self.assertEqual(dict(loaded), META)
        parser = ConfigParser()
        parser.read_meta(str(METADATA))
        self.assertEqual(parser.get("_meta_#network_data_format#inputs#image#num_channels"), 1)
        self.assertEqual(parser.get("_meta_#network_data_format#outputs#pred#channel_def#1"), "brain")

    def test_logging_conf(self):
        conf = configparser.ConfigParser(interpolation=None)
        conf.read(LOGGING_CONF)
        self.assertEqual(conf["logger_root"]["level"], "INFO")
        handler = conf[f"handler_{conf['logger_root']['handlers']}"]
        self.assertEqual(handler["class"], "StreamHandler")
        fmt = conf[f"formatter_{handler['formatter']}"]["format"]
        for field in ("%(asctime)s", "%(levelname)s", "%(message)s"):
            self.assertIn(field, fmt)
        root = logging.getLogger()
        saved_handlers, saved_level = root.handlers[:], root.level
        try:
            logging.config.fileConfig(LOGGING_CONF, disable_existing_loggers=False)
            self.assertEqual(root.level, logging.INFO)
        finally:
            for h in root.handlers[:]:
                if h not in saved_handlers:
                    root.removeHandler(h)
            for h in saved_handlers:
                if h not in root.handlers:
                    root.addHandler(h)
            root.setLevel(saved_level)

    @parameterized.expand(
        [
            ("stage1", "network_def", "network_data_format", 1, 2),
            ("quality", "quality_network_def", "quality_data_format", 4, 1),
        ]
    )
    def test_data_format_matches_network(self, _, net_id, block, in_channels, out_channels):
        fmt = META[block]
        self.assertEqual(fmt["inputs"]["image"]["num_channels"], in_channels)
        self.assertEqual(fmt["outputs"]["pred"]["num_channels"], out_channels)
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "networks.json"
            config.write_text(json.dumps({"imports": ["$import segq_monai"], **NETWORKS}))
            # MONAI's own check: a fake input from spatial_shape ("16*n" -> 96 with n=6), output channels and dtype
            verify_net_in_out(
                net_id=net_id,
                meta_file=str(METADATA),
                config_file=str(config),
                device="cpu",
                n=6,
                **{"_meta_#network_data_format": fmt},
            )


if __name__ == "__main__":
    unittest.main()
