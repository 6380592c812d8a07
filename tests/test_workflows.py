"""Running a bundle step (segq_monai.apps.workflows): the arguments written once, the printed line, and the run in
this process with the bundle's own metadata and logging files, else the segq bundle's."""

from __future__ import annotations

import json
import shlex
import shutil
import tempfile
import unittest
from pathlib import Path

from segq_testing import parse_bundle_command

from segq_monai.apps.workflows import bundle_argv, bundle_command, run_workflow
from segq_monai.utils.resources import bundle_root


class TestBundleArgv(unittest.TestCase):
    def test_arguments_by_hand(self):
        argv = bundle_argv(["/h/configs/inference.json", Path("/o/segq_overlay.json")], "/h", "evaluating",
                           {"segq#fit_dir": "/f", "segq#num_samples": 3, "flag": False, "keys": ["a", "b"]})  # fmt: skip
        self.assertEqual(argv, [
            "-m", "monai.bundle", "run", "evaluating", "--bundle_root", "/h",
            "--config_file", "['/h/configs/inference.json', '/o/segq_overlay.json']",
            "--segq#fit_dir", "/f", "--segq#num_samples", "3", "--flag", "False", "--keys", "['a', 'b']",
        ])  # fmt: skip
        self.assertEqual(bundle_argv(["/h/c.json"], "/h")[3:5], ["--bundle_root", "/h"])  # run_id "run": not written

    def test_printed_line_is_the_same_arguments(self):
        """The printed line splits back (shell rules) into ``python`` and :func:`bundle_argv`'s words, and MONAI's
        entry point reads it as the same call."""
        args = (["/h/configs/inference.json", "/o x/segq_overlay.json"], "/h", "evaluating",
                {"segq#label_transforms": [{"_target_": "AsDiscreted", "keys": "label"}], "name": "a b"})
        line = bundle_command(*args)
        self.assertEqual(shlex.split(line), ["python", *bundle_argv(*args)])
        self.assertIn(" --segq#label_transforms ", line)  # ids unquoted, values quoted
        parsed = parse_bundle_command(line)
        self.assertEqual(parsed["run_id"], "evaluating")
        self.assertEqual(parsed["segq#label_transforms"], [{"_target_": "AsDiscreted", "keys": "label"}])
        self.assertEqual(parsed["config_file"], ["/h/configs/inference.json", "/o x/segq_overlay.json"])


class TestRunWorkflow(unittest.TestCase):
    def test_bundle_without_metadata_runs_with_the_segq_bundles(self):
        """A bundle folder with a config but no ``metadata.json``/``logging.conf``: the step runs (MONAI needs a
        metadata file), its ``$`` expression sees the override and the bundle root."""
        tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        (tmp / "configs").mkdir()
        out = tmp / "out.json"
        config = {"value": 1, "run": [f"$open({str(out)!r}, 'w').write(str(@value + 1) + ' ' + @bundle_root)"]}
        (tmp / "configs" / "write.json").write_text(json.dumps(config))
        self.assertTrue((bundle_root() / "configs" / "metadata.json").is_file())
        run_workflow(tmp, ["write.json"], value=41)
        self.assertEqual(out.read_text(), f"42 {tmp}")


if __name__ == "__main__":
    unittest.main()
