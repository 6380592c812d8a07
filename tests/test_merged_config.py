"""A config written out as the merge MONAI makes of a ``--config_file`` list (``segq_monai.utils.merged_config``)."""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from parameterized import parameterized
from segq_testing import copy_bundle, untrained_weights, workflow, write_cases

from segq_monai.data import write_datalist

from segq_monai.utils.merged_config import config_text, inference_parts, merged_config, write_merged_config
from segq_monai.utils.resources import bundle_root

BASE = {"imports": ["$import os"], "a": 1, "net": {"_target_": "UNet", "channels": [16, 32]}, "handlers": ["@x"]}


class TestMergedConfig(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())

    def _files(self, *contents: dict) -> list[Path]:
        paths = [self.dir / f"{i}.json" for i in range(len(contents))]
        for path, content in zip(paths, contents):
            path.write_text(json.dumps(content))
        return paths

    @parameterized.expand(
        [
            ("replace", {"a": 2}, {**BASE, "a": 2}),
            ("nested", {"net#channels": [8]}, {**BASE, "net": {"_target_": "UNet", "channels": [8]}}),
            ("append", {"+handlers": ["@y"]}, {**BASE, "handlers": ["@x", "@y"]}),
            ("new", {"segq": {"b": "@a"}}, {**BASE, "segq": {"b": "@a"}}),
        ]
    )
    def test_merge(self, _, overlay, want):
        self.assertEqual(merged_config(self._files(BASE, overlay)), want)

    def test_text(self):
        config = {**BASE, "long": ["x" * 50, "y" * 50, "z" * 50], "empty": {}, "unicode": "λ̂"}
        text = config_text(config)
        self.assertEqual(json.loads(text), config)
        self.assertIn('    "net": {\n        "_target_": "UNet",\n        "channels": [16, 32]\n    },', text)
        self.assertIn('"long": [\n        "' + "x" * 50 + '",', text)  # too long for one line
        self.assertIn('"empty": {},', text)
        self.assertTrue(text.endswith("}\n"))
        self.assertLessEqual(max(len(line) for line in text.splitlines()), 120)

    def test_write(self):
        out = self.dir / "merged.json"
        files = self._files(BASE, {"a": 3})
        self.assertTrue(write_merged_config(files, out))
        self.assertEqual(json.loads(out.read_text())["a"], 3)
        self.assertFalse(write_merged_config(files, out))  # unchanged


class TestBundleInference(unittest.TestCase):
    def test_inference_is_the_merge_of_its_parts(self):
        """``inference.json`` is segmentation.json + segq_overlay.json + segq_settings.json, written out (after
        editing one of them: python -m segq_monai.utils.merged_config)."""
        names = [p.name for p in inference_parts()]
        self.assertEqual(names, ["segmentation.json", "segq_overlay.json", "segq_settings.json"])
        written = (bundle_root() / "configs" / "inference.json").read_text()
        self.assertEqual(written, config_text(merged_config(inference_parts())),
                         "inference.json is not the merge of its parts: python -m segq_monai.utils.merged_config")


@pytest.mark.slow
class TestPlainSegmentation(unittest.TestCase):
    def test_runs_alone(self):
        """``segmentation.json`` alone is a host's plain pipeline: ``<case>/<case>_seg.nii.gz`` on the input's grid
        and affine, the argmax of the network's softmax, and nothing of segq."""
        tmp = Path(tempfile.mkdtemp())
        root = copy_bundle(tmp)
        untrained_weights(root / "configs" / "inference.json", root / "models")
        items = write_cases(tmp / "data", ["c0", "c1"], (40, 36))
        datalist = write_datalist(tmp / "datalist.json", {"testing": [{"image": i["image"]} for i in items]})
        out = tmp / "out"
        workflow(["segmentation.json"], root, datalist=str(datalist), output_dir=str(out), device="cpu")
        self.assertEqual(sorted(p.name for p in out.iterdir()), ["c0", "c1"])
        self.assertEqual(sorted(p.name for p in (out / "c0").iterdir()), ["c0_seg.nii.gz"])
        seg, image = nib.load(out / "c0" / "c0_seg.nii.gz"), nib.load(items[0]["image"])
        self.assertEqual(seg.shape[:2], (40, 36))
        np.testing.assert_allclose(seg.affine, image.affine)
        self.assertTrue(set(np.unique(np.asarray(seg.dataobj))) <= {0, 1})


if __name__ == "__main__":
    unittest.main()
