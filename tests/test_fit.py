"""``python -m segq_monai fit`` then deployment, on host bundles of the kinds found in the MONAI model zoo.

Each host is a model-zoo style ``configs/inference.json`` (+ ``metadata.json``) in ``tests/testing_data/hosts/``,
given random weights (``models/model.pt``) and tiny labelled volumes. Each test fits a quality head to it (sample,
train one epoch, calibrate) with the same ``monai.bundle.run`` entry point as ``python -m monai.bundle run``,
deploys it with ``configs/segq_overlay.json`` and ``segq#fit_dir`` on the calibration images, and checks:

* ``fit.json``: the host network, the data's dimensionality (the head follows it), the class names of the host's
  metadata, the settings;
* the true Dice of every sampled case against numpy on the saved segmentation and the label file;
* λ̂ against a direct binomial computation on the calibration table, the same in ``fit.json`` and in the
  calibration file ``FIT/quality_calibration.json``; the file's recalibration ``g`` and half-width ``q`` of each class
  against scikit-learn's isotonic regression on the seeded fit half and the conformal rank on the other half;
* the deployment: ``quality.csv`` columns named from the metadata, ``pred_dice_raw`` = the predicted Dice of the
  calibration run of the same cases, ``pred_dice`` = g(raw), ``pred_dice_lo/hi`` = g(raw) -/+ q clipped to [0, 1],
  ``flagged`` = (min raw predicted Dice < λ̂), ``calibration.json`` (the promise) and ``drift.json`` written, maps on
  the input grid; the host's files unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import shutil
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.bundle import run as bundle_run
from parameterized import parameterized
from scipy import stats
from segq_testing import REPO, isotonic_reference, make_host, read_csv, write_labelled_cases

from segq_monai.__main__ import main
from segq_monai.data import load_datalist, write_datalist
from segq_monai.metrics.recalibration import split_calibration

OVERLAY = REPO / "configs" / "segq_overlay.json"
TINY = ["--num_samples", "2", "--epochs", "1", "--head_channels", "4", "4", "--alpha", "0.95", "--delta", "0.5",
        "--coverage", "0.5"]  # fmt: skip
LPS = np.array([[-1.2, 0.0, 0.0, 20.0], [0.0, -1.0, 0.0, 10.0], [0.0, 0.0, 2.5, -5.0], [0.0, 0.0, 0.0, 1.0]])

# name: (shape, label values, files per case, affine, fit arguments, run id, class names, ensemble members)
HOSTS = {
    "spleen_like": ((16, 16, 12), (0, 1), 1, LPS, ["--tau", "0.0"], "run", ["spleen"], 0),
    "brats_like": (
        (16, 16, 16), (0, 2, 1, 4), 4, None,
        ["--label_transforms", '[{"_target_": "ConvertToMultiChannelBasedOnBratsClassesd", "keys": "label"}]'],
        "evaluating", ["tumor_core", "whole_tumor", "enhancing_tumor"], 0,
    ),
    "ventricular_like": (
        (16, 16, 5), (0, 1, 2, 3), 1, None, ["--sampler", "tta", "--tau", "0.0"], "evaluating",
        ["left_ventricle", "myocardium", "right_ventricle"], 0,
    ),
    "wholebody_like": (
        (16, 16, 16), tuple(range(8)), 1, None, ["--sampler", "ensemble"], "run",
        ["spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "aorta"], 2,
    ),
    "prostate_like": ((20, 18, 10), (0, 1, 2), 1, LPS, ["--tau", "0.0"], "run", ["transition_zone", "peripheral_zone"], 0),
}  # fmt: skip
#: calibration cases per host (default 2: one fits the recalibration, one is scored; 4: an isotonic fit of 2 cases)
CAL_CASES = {"spleen_like": 20, "brats_like": 4}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def selective_threshold(pred: np.ndarray, true: np.ndarray, tau: float, alpha: float, delta: float) -> float | None:
    """λ̂ by direct computation: the smallest λ of 0.00..1.00 whose binomial p-value P(Binom(n_λ, α) <= k_λ) is
    <= δ / 101 (None when there is none)."""
    found = None
    for lam in np.arange(100, -1, -1) / 100:
        accepted = pred >= lam
        n, k = int(accepted.sum()), int((accepted & (true < tau)).sum())
        if n and stats.binom.cdf(k, n, alpha) <= delta / 101:
            found = float(lam)
    return found


def true_dice(seg: np.ndarray, label: np.ndarray, values: tuple[int, ...], multi_label: bool) -> list[float]:
    """Dice per foreground class by numpy: ``seg`` [*spatial] indices or [*spatial, C] masks; BraTS regions from
    the label values when ``multi_label`` (tumour core 1|4, whole tumour > 0, enhancing 4)."""
    if multi_label:
        masks = [np.isin(label, [1, 4]), label > 0, label == 4]
        pairs = [(seg[..., c] > 0, m) for c, m in enumerate(masks)]
    else:
        pairs = [(seg == k, label == k) for k in range(1, len(values))]
    return [1.0 if not (s.sum() + m.sum()) else 2 * (s & m).sum() / (s.sum() + m.sum()) for s, m in pairs]


def run_fit(host: Path, datalist: Path, fit_dir: Path, *extra: str) -> str:
    """``python -m segq_monai fit`` in this process; returns what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["fit", "--host_bundle", str(host), "--datalist", str(datalist), "--output_dir", str(fit_dir), *TINY,
              *extra])  # fmt: skip
    return out.getvalue()


class TestFitHosts(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="segq_fit_"))
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    @parameterized.expand(list(HOSTS))
    def test_fit_and_deploy(self, name):
        shape, values, files, affine, args, run_id, names, members = HOSTS[name]
        host = make_host(name, self.tmp, ensemble=members)
        host_config = host / "configs" / "inference.json"
        config_sha = sha256(host_config)
        data = self.tmp / "data"
        train = write_labelled_cases(data / "train", ["t0", "t1"], shape, values, files, affine, seed=1)
        cal = write_labelled_cases(data / "cal", [f"k{i}" for i in range(CAL_CASES.get(name, 2))], shape, values,
                                   files, affine, seed=2, label_folder=data / "cal_labels")  # fmt: skip
        datalist = write_datalist(data / "datalist.json", {"validation": train, "calibration": cal})
        fit_dir = self.tmp / "FIT"
        printed = run_fit(host, datalist, fit_dir, *args)

        fit = json.loads((fit_dir / "fit.json").read_text())
        multi_label = name == "brats_like"
        self.assertEqual(fit["steps"], ["sample", "head", "calibration"])
        self.assertEqual(fit["spatial_dims"], 3)  # the data's, also for the 2D network run by SliceInferer
        self.assertEqual(fit["host_network"]["spatial_dims"], 2 if name == "ventricular_like" else 3)
        self.assertEqual(fit["host_network"]["in_channels"], files)
        self.assertEqual(fit["class_names"], names)
        self.assertEqual(fit["activation"], "sigmoid" if multi_label else "softmax")
        self.assertEqual(fit["host_bundle"]["run_id"], run_id)
        self.assertIn("--segq#fit_dir", printed)
        self.assertIn(str(OVERLAY), printed)

        # true Dice of the sampled cases, on the input grid, against numpy
        for entry in load_datalist(fit_dir / "sample" / "stage2_datalist.json", "training", ("image", "seg", "label")):
            seg = nib.load(entry["seg"])
            label = nib.load(entry["label"])
            self.assertEqual(seg.shape[:3], label.shape)
            np.testing.assert_allclose(seg.affine, label.affine, atol=1e-4)
            expected = true_dice(np.asarray(seg.dataobj), np.asarray(label.dataobj), values, multi_label)
            np.testing.assert_allclose(entry["dice"], expected, atol=1e-6)
            self.assertEqual(nib.load(entry["image"]).shape[-1] if files > 1 else 1, files)

        # λ̂ against a direct computation on the calibration table
        table = read_csv(fit_dir / "calibration" / "quality.csv")
        columns = [f"{kind}_dice_{n}" for n in names for kind in ("pred", "true")] if len(names) > 1 else ["pred_dice"]
        self.assertTrue(set(columns) <= set(table[0]), table[0].keys())
        suffix = [f"_{n}" for n in names] if len(names) > 1 else [""]
        pred = np.array([min(float(r[f"pred_dice{s}"]) for s in suffix) for r in table])
        true = np.array([min(float(r[f"true_dice{s}"]) for s in suffix) for r in table])
        cal_fit = fit["calibration"]
        lam = selective_threshold(pred, true, cal_fit["tau"], 0.95, 0.5)
        self.assertEqual(cal_fit["acceptance_threshold"], lam)
        self.assertEqual(cal_fit["feasible"], lam is not None)

        # the calibration file: λ̂, the head it belongs to, g and q of each class against an independent fit
        saved = json.loads((fit_dir / cal_fit["file"]).read_text())
        self.assertEqual(saved["format"], "segq-quality-calibration/1")
        self.assertEqual(saved["flag"]["threshold"], lam)
        self.assertEqual(saved["head_fingerprint"], sha256(fit_dir / "quality_head.pt"))
        self.assertEqual((saved["coverage"], saved["n_calibration"]), (0.5, len(cal)))
        n_fit = len(cal) // 2
        fit_idx, score_idx = split_calibration(len(cal), 0.5, 0)
        self.assertEqual(len(fit_idx), n_fit)
        g, q = {}, {}
        for s, label in zip(suffix, names if len(names) > 1 else ["foreground"]):
            x, y = (np.array([float(r[f"{kind}_dice{s}"]) for r in table]) for kind in ("pred", "true"))
            g[s] = isotonic_reference(x[fit_idx], y[fit_idx])
            # rank ceil((m + 1) * 0.5) of the m scored residuals: the 1st of 1, the 2nd of 2
            q[s] = np.sort(np.abs(y[score_idx] - g[s](x[score_idx])))[math.ceil((len(score_idx) + 1) * 0.5) - 1]
            self.assertAlmostEqual(saved["recalibration"][label]["half_width"], q[s], places=6)
            self.assertAlmostEqual(cal_fit["half_width"][label], q[s], places=6)

        # deployment on the calibration images: the same predicted Dice, flagged by λ̂, maps on the input grid
        out = self.tmp / "deploy"
        inputs = {"dataset_dir": str(data / "cal"), "output_dir": str(out)}
        if name == "brats_like":
            test_list = write_datalist(self.tmp / "test.json", {"testing": [{"image": c["image"]} for c in cal]})
            inputs.update(data_list_file_path=str(test_list), dataset_dir=str(test_list.parent))  # paths relative to it
        bundle_run(run_id=run_id, config_file=[str(host_config), str(OVERLAY)], bundle_root=str(host),
                   **{"segq#fit_dir": str(fit_dir)}, **inputs)  # fmt: skip
        rows = {Path(r["image"]).name: r for r in read_csv(out / "quality.csv")}
        for r in table:
            row = rows[Path(r["image"]).name]
            for s in suffix:
                raw = float(row[f"pred_dice_raw{s}"])
                self.assertAlmostEqual(raw, float(r[f"pred_dice{s}"]), places=5)
                recalibrated = float(g[s]([raw])[0])
                self.assertAlmostEqual(float(row[f"pred_dice{s}"]), recalibrated, places=5)
                self.assertAlmostEqual(float(row[f"pred_dice_lo{s}"]), max(0.0, recalibrated - q[s]), places=5)
                self.assertAlmostEqual(float(row[f"pred_dice_hi{s}"]), min(1.0, recalibrated + q[s]), places=5)
            worst = min(float(row[f"pred_dice_raw{s}"]) for s in suffix)
            self.assertEqual(int(row["flagged"]), int(lam is None or worst < lam))
        self.assertEqual(json.loads((out / "calibration.json").read_text())["coverage"], 0.5)
        drift = json.loads((out / "drift.json").read_text())
        self.assertEqual(drift["statistics"]["pred_dice"]["n"], len(cal))
        self.assertEqual(drift["statistics"]["pred_dice"]["n_reference"], len(cal))
        self.assertIsNotNone(drift["statistics"]["mean_entropy"])
        for item in cal:
            image = item["image"][0] if files > 1 else item["image"]
            case = Path(image).name.removesuffix(".nii.gz")
            ref = nib.load(image)
            for key in ("entropy", "mutual_information"):
                saved = nib.load(out / case / f"{case}_{key}.nii.gz")
                self.assertEqual(saved.shape, ref.shape, key)
                np.testing.assert_allclose(saved.affine, ref.affine, atol=1e-4)
        self.assertEqual(sha256(host_config), config_sha)


if __name__ == "__main__":
    unittest.main()
