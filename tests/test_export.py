"""``segq-monai export``: the bundle as a model-zoo archive ``<name>_v<version>.zip``, checked before writing."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
import unittest
import zipfile
from pathlib import Path

import jsonschema
from monai.bundle import ConfigParser
from parameterized import parameterized
from segq_testing import BUNDLE, REPO

from segq_monai.__main__ import main
from segq_monai.apps.export import check_metadata, export_bundle
from segq_monai.utils import check_bundle

META = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
NAME = f"{META['name']}_v{META['version']}.zip"
SCHEMA = json.loads((REPO / "configs" / "schema" / "meta_schema.json").read_text())


def _bundle_files() -> dict[str, Path]:
    """The repository bundle's files that an archive holds, by their path inside its top folder."""
    files = {f"configs/{p.name}": p for p in (BUNDLE / "configs").iterdir()}
    files.update({f"docs/{p.name}": p for p in (BUNDLE / "docs").iterdir()})
    files["LICENSE"] = REPO / "LICENSE"
    return files


def _broken(meta: dict, change: str) -> dict:
    meta = json.loads(json.dumps(meta))
    if change == "older_version_first":
        meta["changelog"] = {"0.0.9": "an older release", **meta["changelog"]}
    elif change == "version_not_in_changelog":
        meta["version"] = "0.2.0"
    elif change == "no_changelog":
        del meta["changelog"]
    elif change == "no_network_data_format":
        del meta["network_data_format"]
    return meta


class TestExport(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def test_shipped_bundle_archive(self):
        archive = export_bundle(self.tmp / "a")
        self.assertEqual(archive, self.tmp / "a" / NAME)
        expected = _bundle_files()
        with zipfile.ZipFile(archive) as z:
            self.assertEqual(z.namelist(), sorted(f"{META['name']}/{k}" for k in expected))
            for inside, source in expected.items():
                self.assertEqual(z.read(f"{META['name']}/{inside}"), source.read_bytes(), inside)
            meta = json.loads(z.read(f"{META['name']}/configs/metadata.json"))
        jsonschema.Draft7Validator(SCHEMA).validate(meta)
        self.assertEqual(next(iter(meta["changelog"])), meta["version"])
        # the same inputs give the same bytes (fixed timestamps, sorted entries)
        self.assertEqual(export_bundle(self.tmp / "b").read_bytes(), archive.read_bytes())

    def test_models_without_resume_folders_and_the_archive_is_a_bundle(self):
        models = self.tmp / "models"
        weights = ("fold0/model.pt", "fold0/temperature.json", "fold0/resume/checkpoint_1.pt", "quality_image/model.pt")
        for rel in weights:
            (models / rel).parent.mkdir(parents=True, exist_ok=True)
            (models / rel).write_text(rel)
        archive = export_bundle(self.tmp / "out", models_dir=models)
        with zipfile.ZipFile(archive) as z:
            names = z.namelist()
            self.assertEqual(
                [n for n in names if "/models/" in n],
                [f"{META['name']}/models/{rel}" for rel in ("fold0/model.pt", "fold0/temperature.json",
                                                             "quality_image/model.pt")],
            )  # fmt: skip
            self.assertEqual(z.read(f"{META['name']}/models/fold0/model.pt"), b"fold0/model.pt")
            z.extractall(self.tmp / "unzipped")
        root = check_bundle(self.tmp / "unzipped" / META["name"])
        parser = ConfigParser()
        parser.read_config(str(root / "configs" / "inference.json"))
        parser["bundle_root"] = str(root)
        self.assertEqual(Path(parser.get_parsed_content("stage1_checkpoint")), root / "models" / "fold0" / "model.pt")
        self.assertEqual(parser.get_parsed_content("network_def").__class__.__name__, "UNet")

    @parameterized.expand(
        [
            ("older_version_first", "must be the first key of 'changelog'"),
            ("version_not_in_changelog", "must be the first key of 'changelog'"),
            ("no_changelog", "'changelog' is missing"),
            ("no_network_data_format", "'network_data_format' is a required property"),
        ]
    )
    def test_metadata_against_model_zoo_rules_nothing_written(self, change, message):
        root = self.tmp / "bundle"
        shutil.copytree(BUNDLE / "configs", root / "configs")
        meta_file = root / "configs" / "metadata.json"
        meta_file.write_text(json.dumps(_broken(META, change)))
        with self.assertRaises(ValueError) as ctx:
            export_bundle(self.tmp / "out", root=root)
        self.assertIn(str(meta_file), str(ctx.exception))
        self.assertIn(message, str(ctx.exception))
        self.assertEqual(list((self.tmp / "out").glob("*")) if (self.tmp / "out").exists() else [], [])

    def test_check_metadata_accepts_the_bundle(self):
        self.assertEqual(check_metadata(BUNDLE / "configs" / "metadata.json"), META)

    def test_cli(self):
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            main(["export", "--output_dir", str(self.tmp / "cli")])
        self.assertEqual(stdout.getvalue().strip(), str(self.tmp / "cli" / NAME))
        self.assertTrue((self.tmp / "cli" / NAME).is_file())

    def test_cli_bad_input(self):
        empty = self.tmp / "not_a_bundle"
        empty.mkdir()
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), self.assertRaises(SystemExit) as ctx:
            main(["export", "--bundle_root", str(empty), "--output_dir", str(self.tmp / "cli")])
        self.assertEqual(ctx.exception.code, 2)
        for needle in (str(empty), "configs/metadata.json", "configs/inference.json", "not a segq bundle"):
            self.assertIn(needle, stderr.getvalue())
        with self.assertRaises(FileNotFoundError) as ctx:  # the command line prints it alone (test_bad_inputs)
            main(["export", "--models_dir", str(self.tmp / "nowhere"), "--output_dir", str(self.tmp / "cli")])
        self.assertIn(f"--models_dir {self.tmp / 'nowhere'} is not a folder", str(ctx.exception))
        self.assertFalse((self.tmp / "cli").exists() and any((self.tmp / "cli").iterdir()))


if __name__ == "__main__":
    unittest.main()
