"""Where the shipped files lie (``segq_monai.utils.resources``, ``segq-monai paths``) and the commands' bad input:
a folder that is not a bundle, an install without the ``monailabel`` extra."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import pytest
from segq_testing import BUNDLE, REPO

from segq_monai.__main__ import main
from segq_monai.utils import bundle_root, check_bundle, configs_dir, overlay_path, overlays, paths

HINT = 'pip install "segq-monai[monailabel]"'


def _cli(*argv: str) -> str:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        main(list(argv))
    return stdout.getvalue()


class TestResources(unittest.TestCase):
    def test_one_source_through_symbolic_links(self):
        for link, target in (("segq_monai/_bundle", "../bundle"), ("segq_monai/_configs", "../configs"),
                             ("bundle/LICENSE", "../LICENSE")):  # fmt: skip
            self.assertTrue((REPO / link).is_symlink(), link)
            self.assertEqual(os.readlink(REPO / link), target)

    def test_checkout_resolves_to_the_top_level_folders(self):
        self.assertEqual(bundle_root(), BUNDLE.resolve())
        self.assertEqual(configs_dir(), (REPO / "configs").resolve())
        self.assertEqual(set(overlays()), {p.stem for p in (REPO / "configs").glob("*.json")})
        self.assertEqual(overlay_path("segq_overlay.json"), (REPO / "configs" / "segq_overlay.json").resolve())
        self.assertEqual(overlay_path("segq_overlay"), overlay_path("segq_overlay.json"))
        with self.assertRaisesRegex(KeyError, "No overlay 'nope'.*the overlays are: .*segq_overlay"):
            overlay_path("nope")
        found = paths()
        self.assertEqual(found["package"], str((REPO / "segq_monai").resolve()))
        self.assertEqual(found["schema"], str((REPO / "configs" / "schema" / "meta_schema.json").resolve()))
        self.assertEqual(found["demo_datalist"], str((REPO / "segq_monai" / "demo_data" / "dataset.json").resolve()))
        self.assertEqual(check_bundle(found["bundle_root"]), BUNDLE.resolve())

    def test_check_bundle_names_the_folder_and_the_missing_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "configs").mkdir()
            (Path(tmp) / "configs" / "inference.json").write_text("{}")
            with self.assertRaises(FileNotFoundError) as ctx:
                check_bundle(tmp)
        message = str(ctx.exception)
        self.assertIn(f"{Path(tmp).resolve()} is not a segq bundle: configs/metadata.json missing", message)
        self.assertNotIn("configs/inference.json missing", message)
        self.assertIn(str(BUNDLE.resolve()), message)  # where the shipped one is


class TestPathsCommand(unittest.TestCase):
    def test_listing_json_and_one_name(self):
        found = json.loads(_cli("paths", "--json"))
        self.assertEqual(found, paths())
        lines = _cli("paths").splitlines()
        self.assertEqual([line.split()[0] for line in lines], list(found))
        self.assertEqual([line.split()[1] for line in lines], list(found.values()))
        monailabel_line = next(line for line in lines if line.startswith("monailabel_app"))
        self.assertEqual(HINT in monailabel_line, importlib.util.find_spec("monailabel") is None)
        self.assertEqual(_cli("paths", "segq_overlay"), f"{found['segq_overlay']}\n")
        with self.assertRaises(SystemExit) as ctx:
            _cli("paths", "nope")
        self.assertIn("no path called 'nope'; the names are: package, bundle_root", str(ctx.exception.code))


class TestBadInput(unittest.TestCase):
    def test_demo_pointed_at_a_folder_that_is_not_a_bundle(self):
        with tempfile.TemporaryDirectory() as tmp:
            stderr = io.StringIO()
            with contextlib.redirect_stderr(stderr), self.assertRaises(SystemExit) as ctx:
                main(["demo", "--bundle_root", tmp, "--output_dir", str(Path(tmp) / "out")])
            self.assertFalse((Path(tmp) / "out").exists())
        self.assertEqual(ctx.exception.code, 2)
        text = stderr.getvalue()
        self.assertIn("argument --bundle_root", text)
        self.assertIn(f"{Path(tmp).resolve()} is not a segq bundle: configs/metadata.json and configs/inference.json "
                      "missing", text)  # fmt: skip

    @pytest.mark.slow
    def test_without_the_monailabel_extra(self):
        """MONAI Label hidden in a subprocess (it is installed here): ``segq-monai paths`` says which extra the app
        needs, and importing ``segq_monai.monailabel`` fails with the install command."""
        script = (
            "import sys; sys.modules['monailabel'] = None\n"
            "from segq_monai.__main__ import main; main(['paths'])\n"
            "import segq_monai.monailabel\n"
        )
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
        self.assertEqual(result.returncode, 1, result.stderr[-2000:])
        monailabel_line = next(line for line in result.stdout.splitlines() if line.startswith("monailabel_app"))
        self.assertIn(f"(needs MONAI Label: {HINT})", monailabel_line)
        last = result.stderr.strip().splitlines()[-1]
        self.assertTrue(last.startswith("ImportError: segq_monai.monailabel needs MONAI Label"), last)
        self.assertIn(HINT, last)


if __name__ == "__main__":
    unittest.main()
