"""configs/segq_overlay.json on a model-zoo style host bundle (spleen_ct_segmentation's inference.json layout).

A host bundle is written in ``setUpClass`` from ``tests/testing_data/spleen_like_inference.json`` (3D UNet with
dropout, Orientationd/Spacingd preprocessing, SlidingWindowInferer, Invertd + SaveImaged), with random LPS,
anisotropic NIfTI images and randomly initialised weights. The host config runs alone, then with the overlay
merged over it (``ConfigWorkflow`` and the real ``python -m monai.bundle run`` command line); the host file is
never edited.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import unittest
from pathlib import Path

import monai
import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from command_server import SERVERS
from segq_testing import read_csv

from segq_monai import QualityRegressor, quality_input_channels

REPO = Path(__file__).resolve().parents[1]
HOST_CONFIG = REPO / "tests" / "testing_data" / "spleen_like_inference.json"
OVERLAY = REPO / "configs" / "segq_overlay.json"
CASES = ("case_a", "case_b")
SHAPE = (40, 36, 32)
# LPS axes (as DICOM-derived NIfTI files often are), anisotropic spacing, an offset: Orientationd and Spacingd
# both change the grid, so the maps only land on the input grid if they are inverted.
AFFINE = np.array([[-1.2, 0.0, 0.0, 20.0], [0.0, -1.0, 0.0, 10.0], [0.0, 0.0, 1.5, -5.0], [0.0, 0.0, 0.0, 1.0]])
QUALITY_KEYS = ["image", "seg", "entropy"]
# a tiny stage-2 head, matching the checkpoint written in setUpClass
TINY_HEAD = {"segq#quality_network_def#channels": [8, 16], "segq#quality_network_def#strides": [2, 2]}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
class TestSegqOverlay(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp())
        cls.data = cls.tmp / "data"
        cls.data.mkdir()
        rng = np.random.default_rng(0)
        for name in CASES:
            image = rng.uniform(-100.0, 200.0, SHAPE).astype(np.float32)
            nib.save(nib.Nifti1Image(image, AFFINE), cls.data / f"{name}.nii.gz")
        # the host bundle: its own configs folder and weights, as a user has it
        cls.root = cls.tmp / "spleen_like"
        (cls.root / "configs").mkdir(parents=True)
        (cls.root / "models").mkdir()
        cls.host = cls.root / "configs" / "inference.json"
        shutil.copyfile(HOST_CONFIG, cls.host)
        meta = {"version": "0.0.1", "monai_version": monai.__version__, "name": "spleen_like"}
        (cls.root / "configs" / "metadata.json").write_text(json.dumps(meta))
        cls.host_sha, cls.repo_host_sha = sha256(cls.host), sha256(HOST_CONFIG)
        parser = ConfigParser()
        parser.read_config(str(cls.host))
        torch.manual_seed(0)
        stage1 = parser.get_parsed_content("network_def")
        torch.save({"model": stage1.state_dict()}, cls.root / "models" / "model.pt")
        in_channels = quality_input_channels(QUALITY_KEYS, num_classes=2, image_channels=1)
        head = QualityRegressor(3, in_channels, 1, channels=(8, 16), strides=(2, 2))
        torch.save({"model": head.state_dict()}, cls.root / "models" / "segq_quality.pt")  # the overlay's default
        cls.plain_dir = cls.tmp / "plain"
        cls.run_workflow([cls.host], cls.plain_dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def run_workflow(cls, config_files: list[Path], output_dir: Path, **overrides) -> None:
        wf = ConfigWorkflow(
            config_file=[str(f) for f in config_files],
            workflow_type=None,
            bundle_root=str(cls.root),
            dataset_dir=str(cls.data),
            output_dir=str(output_dir),
            **overrides,
        )
        wf.initialize()
        wf.run()
        wf.finalize()

    def assert_on_input_grid(self, path: Path) -> nib.Nifti1Image:
        self.assertTrue(path.is_file(), path)
        img = nib.load(path)
        self.assertEqual(img.shape, SHAPE, path.name)
        np.testing.assert_allclose(img.affine, AFFINE, atol=1e-4, err_msg=path.name)
        return img

    def assert_host_unchanged(self):
        self.assertEqual(sha256(self.host), self.host_sha)
        self.assertEqual(sha256(HOST_CONFIG), self.repo_host_sha)

    def assert_quality_csv(self, output_dir: Path, threshold: float = 0.8):
        rows = read_csv(output_dir / "quality.csv")
        self.assertEqual(sorted(r["image"] for r in rows), [str(self.data / f"{c}.nii.gz") for c in CASES])
        for row in rows:
            d, iou = float(row["pred_dice"]), float(row["pred_iou"])
            self.assertTrue(0.0 <= d <= 1.0, d)
            self.assertAlmostEqual(iou, d / (2.0 - d), places=5)
            self.assertIn(row["flagged"], ("0", "1"))
            self.assertEqual(int(row["flagged"]), int(d < threshold))

    def test_host_config_alone(self):
        for case in CASES:
            self.assert_on_input_grid(self.plain_dir / case / f"{case}_seg.nii.gz")
        self.assertFalse((self.plain_dir / "quality.csv").exists())

    def test_overlay_mc_dropout(self):
        out = self.tmp / "mc_dropout"
        self.run_workflow([self.host, OVERLAY], out, **{"segq#num_samples": 2}, **TINY_HEAD)
        for case in CASES:
            seg = self.assert_on_input_grid(out / case / f"{case}_seg.nii.gz").get_fdata()
            self.assertTrue(set(np.unique(seg)) <= {0.0, 1.0})
            entropy = self.assert_on_input_grid(out / case / f"{case}_entropy.nii.gz").get_fdata()
            mi = self.assert_on_input_grid(out / case / f"{case}_mutual_information.nii.gz").get_fdata()
            self.assertGreaterEqual(mi.min(), -1e-6)
            self.assertTrue(np.all(mi <= entropy + 1e-5))
            self.assertLessEqual(entropy.max(), np.log(2) + 1e-5)
            self.assertGreater(mi.max(), 0.0)  # two dropout samples disagree somewhere
        self.assert_quality_csv(out)
        page = (out / "index.html").read_text()  # the cohort page, with a thumbnail per case (no browser here)
        self.assertEqual(page.count('<img class="thumb" src="data:image/png;base64,'), len(CASES))
        self.assert_host_unchanged()

    def test_overlay_softmax_keeps_host_segmentation(self):
        out = self.tmp / "softmax"
        self.run_workflow([self.host, OVERLAY], out, **{"segq#sampler": "single_pass", "segq#tau": 0.3},
                          **TINY_HEAD)
        for case in CASES:
            plain = nib.load(self.plain_dir / case / f"{case}_seg.nii.gz")
            seg = self.assert_on_input_grid(out / case / f"{case}_seg.nii.gz")
            np.testing.assert_array_equal(seg.get_fdata(), plain.get_fdata())
            np.testing.assert_array_equal(seg.affine, plain.affine)
            mi = nib.load(out / case / f"{case}_mutual_information.nii.gz").get_fdata()
            self.assertEqual(np.abs(mi).max(), 0.0)  # one deterministic pass: no epistemic uncertainty
        self.assert_quality_csv(out, threshold=0.3)
        self.assert_host_unchanged()

    def test_command_line(self):
        out = self.tmp / "cli"
        cmd = [
            "-m", "monai.bundle", "run",
            "--config_file", f"['{self.host}','{OVERLAY}']",
            "--bundle_root", str(self.root), "--dataset_dir", str(self.data), "--output_dir", str(out),
            "--segq#num_samples", "2",
        ]
        for key, value in TINY_HEAD.items():
            cmd += [f"--{key}", json.dumps(value)]
        code, output = SERVERS.run(cmd, self.tmp)
        self.assertEqual(code, 0, output[-3000:])
        self.assert_quality_csv(out)
        for case in CASES:
            for key in ("seg", "entropy", "mutual_information"):
                self.assert_on_input_grid(out / case / f"{case}_{key}.nii.gz")
        self.assert_host_unchanged()


if __name__ == "__main__":
    unittest.main()
