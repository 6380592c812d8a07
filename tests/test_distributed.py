"""The multi-GPU overlays under ``torchrun --nproc_per_node=2``, on CPU (gloo), against single-process runs.

Sampling and inference run 5 cases on 2 ranks (3 + 2: MONAI's ``DistributedSampler(even_divisible=False)`` pads
nothing) and must give the single-process results: every case once, in the datalist's order, the same values.
Batch size 1 in both, so that each case is sampled alone whichever rank runs it (MC dropout reseeds per batch).
DDP training must run and leave one checkpoint, written by rank 0, with the single-process model's keys.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from segq_testing import free_port, read_csv, workflow, write_cases

from segq_monai.data import write_datalist

NO_MLFLOW = {"train#handlers#2#_disabled_": True}  # its sqlite store costs seconds per epoch
SAMPLING = {"num_samples": 2, "batch_size": 1, "device": "cpu"}
FOLDS = {"fold": 0, "num_folds": 2}


pytestmark = pytest.mark.slow


@pytest.fixture(scope="class")
def single_process(request: pytest.FixtureRequest, trained_bundle_copy: None) -> None:
    """The single-process results the ranks must give, with the trained bundle on this module's cases: fold 0's
    sampling (into the bundle's ``stage2_data/fold0``) and inference (into ``infer_1``)."""
    cls = request.cls
    train = write_cases(cls.tmp / "ddp_data", [f"c{i}" for i in range(10)], (32, 32))  # fold 0 holds out c0..c4
    test = write_cases(cls.tmp / "ddp_data", [f"t{i}" for i in range(5)], (32, 32), seed=1)
    cls.datalist = write_datalist(cls.tmp / "ddp_data" / "datalist.json", {"training": train, "testing": test})
    dl = {"datalist": str(cls.datalist)}
    workflow(["inference.json", "sample.json"], cls.root, **dl, **FOLDS, **SAMPLING)
    workflow(["inference.json"], cls.root, **dl, output_dir=str(cls.tmp / "infer_1"), **SAMPLING)


@pytest.mark.usefixtures("single_process")
class TestMultiGPUOverlays(unittest.TestCase):
    def torchrun(self, config: str, **overrides) -> None:
        """``torchrun --nproc_per_node=2 -m monai.bundle run`` with ``[<config>.json, multi_gpu_<config>.json]``
        (sample: ``[inference.json, sample.json, multi_gpu_inference.json]``)."""
        sampling = ["inference", "sample", "multi_gpu_inference"]
        names = sampling if config == "sample" else [config, f"multi_gpu_{config}"]
        configs = [str(self.root / "configs" / f"{c}.json") for c in names]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
               "-m", "monai.bundle", "run", "--bundle_root", str(self.root), "--config_file", str(configs),
               "--meta_file", str(self.root / "configs" / "metadata.json")]
        for k, v in overrides.items():
            cmd += [f"--{k}", str(v)]
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
        out = subprocess.run(cmd, check=False, cwd=self.tmp, capture_output=True, text=True, timeout=300, env=env)
        self.assertEqual(out.returncode, 0, out.stdout[-2000:] + out.stderr[-4000:])

    def assert_same_results(self, ours: Path, reference: Path, keys: tuple[str, ...]):
        rows, ref = read_csv(ours / "quality.csv"), read_csv(reference / "quality.csv")
        self.assertEqual([r["image"] for r in rows], [r["image"] for r in ref])  # every case once, in order
        self.assertEqual(list(rows[0]), list(ref[0]))
        for row, expected in zip(rows, ref):
            for column in expected:
                if column != "image":
                    self.assertAlmostEqual(float(row[column]), float(expected[column]), delta=1e-5, msg=column)
            case = Path(expected["image"]).name.split(".")[0]
            for key in keys:
                ours_map = np.asarray(nib.load(ours / case / f"{case}_{key}.nii.gz").dataobj)
                np.testing.assert_allclose(ours_map, nib.load(reference / case / f"{case}_{key}.nii.gz").dataobj,
                                           atol=1e-5, err_msg=f"{case} {key}")

    def test_sample(self):
        out = self.root / "stage2_ddp" / "fold0"  # at the depth of stage2_data/fold0: same relative paths
        self.torchrun("sample", datalist=self.datalist, output_dir=out, **FOLDS, **SAMPLING)
        reference = self.root / "stage2_data" / "fold0"
        self.assert_same_results(out, reference, ("seg", "entropy", "mutual_information", "agreement"))
        ours, ref = (json.loads((d / "stage2_datalist.json").read_text())["training"] for d in (out, reference))
        self.assertEqual([e["image"] for e in ours], [e["image"] for e in ref])
        for e, r in zip(ours, ref):
            np.testing.assert_allclose(e["true_dice"], r["true_dice"], atol=1e-6)

    def test_inference(self):
        out = self.tmp / "infer_ddp"
        self.torchrun("inference", datalist=self.datalist, output_dir=out, **SAMPLING)
        self.assert_same_results(out, self.tmp / "infer_1", ("seg", "entropy"))

    def test_train_segmentation(self):
        ckpt, logs = self.tmp / "ddp_models", self.tmp / "ddp_eval"
        self.torchrun("train_segmentation", datalist=self.datalist, ckpt_dir=ckpt, output_dir=logs, epochs=2,
                      device="cpu", **FOLDS, **NO_MLFLOW)
        self.assert_checkpoint_like(ckpt / "fold0", self.root / "models" / "fold0")
        self.assertEqual(len(list((logs / "logs" / "segmentation_fold0").glob("events.*"))), 1)  # rank 0 only

    def test_train_quality(self):
        ckpt = self.tmp / "ddp_models"
        self.torchrun("train_quality", ckpt_dir=ckpt, output_dir=self.tmp / "ddp_eval", epochs=1, device="cpu",
                      **NO_MLFLOW)
        name = "quality_image_seg_entropy"
        self.assert_checkpoint_like(ckpt / name, self.root / "models" / name)

    def assert_checkpoint_like(self, folder: Path, reference: Path):
        """One ``model.pt`` (resume checkpoints removed), loadable where the single-process one loads."""
        self.assertEqual(sorted(p.name for p in folder.iterdir()), ["model.pt"])
        state = torch.load(folder / "model.pt", weights_only=True)
        expected = torch.load(reference / "model.pt", weights_only=True)
        self.assertEqual(list(state), list(expected))
        self.assertEqual({k: v.shape for k, v in state["model"].items()},  # no "module." prefix
                         {k: v.shape for k, v in expected["model"].items()})
        self.assertTrue(all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point()))

if __name__ == "__main__":
    unittest.main()
