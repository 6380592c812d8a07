"""``python -m segq_monai fit`` then deployment, on host bundles of the kinds found in the MONAI model zoo.

Each host is a model-zoo style ``configs/inference.json`` (+ ``metadata.json``) in ``tests/testing_data/hosts/``,
given random weights (``models/model.pt``) and tiny labelled cases of several shapes and file kinds (a 10-slice
stack, 5x coarse slices, 2D RGB JPEG frames with PNG labels, 2D NIfTI, 105 classes, a YAML config), 20 calibration
cases each, some failing tau. Each test fits a quality head to it (sample,
train one epoch, calibrate) with the same ``monai.bundle.run`` entry point as ``python -m monai.bundle run``,
deploys it with ``configs/segq_overlay.json`` and ``segq#fit_dir`` on the calibration images, and checks:

* ``fit.json``: the host network, the data's dimensionality (the head follows it), the head's per-axis strides
  (worked by hand from the first case's shape and spacing), the class names of the host's metadata, the settings;
* the true Dice of every sampled case against numpy on the saved segmentation and the label file;
* λ̂ against a direct binomial computation on the calibration table, the same in ``fit.json`` and in the
  calibration file ``FIT/quality_calibration.json``; the recalibration ``g`` of each class against scikit-learn's
  isotonic regression on the seeded fit half inside its range (monotone and in [0, 1] outside it), the half-width
  ``q`` against the conformal rank on the other half;
* the deployment: ``quality.csv`` columns named from the metadata, ``pred_dice_raw`` = the predicted Dice of the
  calibration run of the same cases, ``pred_dice`` = g(raw), ``pred_dice_lo/hi`` = g(raw) -/+ q clipped to [0, 1],
  ``flagged`` = (min raw predicted Dice < λ̂), ``promise.json`` and ``drift.json`` written, maps on
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
import pytest
import yaml
from monai.bundle import ConfigParser
from monai.bundle import run as bundle_run
from parameterized import parameterized
from PIL import Image
from scipy import stats
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LinearRegression
from segq_testing import REPO, make_host, parse_bundle_command, read_csv, write_labelled_cases

from segq_monai import HEAD_RECIPE, ForegroundBandSampler
from segq_monai.__main__ import main
from segq_monai.data import load_datalist, write_datalist
from segq_monai.data.outputs import case_name
from segq_monai.calibration.recalibration import split_calibration
from segq_monai.utils.errors import bad_input

OVERLAY = REPO / "configs" / "segq_overlay.json"
TINY = ["--num_samples", "2", "--epochs", "1", "--head_channels", "4", "4", "--alpha", "0.95", "--delta", "0.5",
        "--coverage", "0.5"]  # fmt: skip
LPS = np.array([[-1.2, 0.0, 0.0, 20.0], [0.0, -1.0, 0.0, 10.0], [0.0, 0.0, 2.5, -5.0], [0.0, 0.0, 0.0, 1.0]])
SHORT_AXIS = np.diag([1.25, 1.25, 8.0, 1.0])  # cardiac cine: 10 slices 8 mm apart
COARSE_Z = np.array([[-1.0, 0.0, 0.0, 20.0], [0.0, -1.0, 0.0, 10.0], [0.0, 0.0, 5.0, -5.0], [0.0, 0.0, 0.0, 1.0]])
WHOLEBODY = ["spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "aorta"] + [
    f"structure_{i}" for i in range(8, 105)]  # fmt: skip


pytestmark = pytest.mark.slow


def _host(shape, values, names, strides, files=1, affine=None, args=(), run_id="run", members=0, fmt="nifti",
          host_dims=3, yaml=False):  # fmt: skip
    return dict(shape=shape, values=tuple(values), names=names, strides=strides, files=files, affine=affine,
                args=list(args), run_id=run_id, members=members, fmt=fmt, host_dims=host_dims, yaml=yaml)  # fmt: skip


# Each fit has 20 calibration cases and a tau that some of them fail (the random host network segments badly).
# ``strides``: the head's per-axis strides for its 2 levels (--head_channels 4 4), worked by hand from the shape and
# spacing: halve an axis while ceil(size / 2) >= 4 and its spacing is <= 2x the finest.
HOSTS = {
    "spleen_like": _host((16, 16, 12), (0, 1), ["spleen"], [[2, 2, 1], [2, 2, 2]], affine=LPS, args=["--tau", "0.5"],
                         yaml=True),  # a YAML host config (--host_config)
    "brats_like": _host(
        (16, 16, 16), (0, 2, 1, 4), ["tumor_core", "whole_tumor", "enhancing_tumor"], [[2, 2, 2], [2, 2, 2]], files=4,
        args=["--tau", "0.3",
              "--label_transforms", '[{"_target_": "ConvertToMultiChannelBasedOnBratsClassesd", "keys": "label"}]'],
        run_id="evaluating",
    ),
    "ventricular_like": _host(  # a 10-slice short-axis stack, a 2D network slice by slice
        (32, 32, 10), (0, 1, 2, 3), ["left_ventricle", "myocardium", "right_ventricle"], [[2, 2, 1], [2, 2, 1]],
        affine=SHORT_AXIS, args=["--sampler", "tta", "--tau", "0.2"], run_id="evaluating", host_dims=2,
    ),
    # 104 structures; sampled at 3 mm as model-zoo's wholeBody_ct_segmentation with displayable_configs#highres off
    "wholebody_like": _host((16, 16, 16), range(105), WHOLEBODY, [[2, 2, 2], [2, 2, 2]], members=2,
                            args=["--sampler", "ensemble", "--tau", "0.1",
                                  "--host_override", "displayable_configs#highres=False"]),
    "prostate_like": _host((20, 18, 10), (0, 1, 2), ["transition_zone", "peripheral_zone"], [[2, 2, 1], [2, 2, 1]],
                           affine=COARSE_Z, args=["--tau", "0.3", "--foreground_band", "2"]),  # 5x coarser along z
    "endoscopic_like": _host((24, 20), (0, 1), ["tools"], [[2, 2], [2, 2]], args=["--tau", "0.5"], fmt="jpeg",
                             host_dims=2),  # RGB JPEG frames, PNG labels
    "slice2d_like": _host((20, 9), (0, 1, 2), ["organ", "lesion"], [[2, 2], [2, 1]], args=["--tau", "0.3"],
                          host_dims=2),  # 2D NIfTI files
}
N_CAL = 20


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


def read_label(path: str) -> np.ndarray:
    """A label file as MONAI reads it: NIfTI as stored, PNG transposed (``PILReader``: first axis = columns)."""
    if path.endswith(".png"):
        return np.asarray(Image.open(path)).T
    return np.asarray(nib.load(path).dataobj)


def run_fit(host: Path, datalist: Path, fit_dir: Path, *extra: str, stderr: io.StringIO | None = None) -> str:
    """``python -m segq_monai fit`` in this process; returns what it printed (its stderr, the progress bar included,
    goes to ``stderr`` when given)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(stderr) if stderr else contextlib.nullcontext():
        main(["fit", "--host_bundle", str(host), "--datalist", str(datalist), "--output_dir", str(fit_dir), *TINY,
              *extra])  # fmt: skip
    return out.getvalue()


class TestFitHosts(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="segq_fit_"))
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    @parameterized.expand(list(HOSTS))
    def test_fit_and_deploy(self, name):
        h = HOSTS[name]
        shape, values, files, names = h["shape"], h["values"], h["files"], h["names"]
        host = make_host(name, self.tmp, ensemble=h["members"])
        host_config = host / "configs" / "inference.json"
        config_sha = sha256(host_config)
        extra = list(h["args"])
        if h["yaml"]:  # the same config as YAML, named with --host_config
            host_config = host / "configs" / "inference.yaml"
            host_config.write_text(yaml.safe_dump(json.loads((host / "configs" / "inference.json").read_text())))
            extra += ["--host_config", str(host_config)]
            config_sha = sha256(host_config)
        data = self.tmp / "data"
        kw = dict(files=files, affine=h["affine"], image_format=h["fmt"])
        train = write_labelled_cases(data / "train", ["t0", "t1"], shape, values, seed=1, **kw)
        cal = write_labelled_cases(data / "cal", [f"k{i}" for i in range(N_CAL)], shape, values, seed=2,
                                   label_folder=data / "cal_labels", **kw)  # fmt: skip
        datalist = write_datalist(data / "datalist.json", {"validation": train, "calibration": cal})
        fit_dir = self.tmp / "FIT"
        stderr = io.StringIO()
        printed = run_fit(host, datalist, fit_dir, *extra, stderr=stderr)
        # one bar over the three steps: 2 sampled cases + 1 epoch + N_CAL calibration cases, each step to its end
        bar = stderr.getvalue().replace("\r", "\n")
        total = 2 + 1 + N_CAL
        for step, done in (("1/3 sample 2/2 cases", 2), ("2/3 train 1/1 epochs", 3), ("3/3 calibrate", total)):
            self.assertRegex(bar, rf"{step}.*\| {done}/{total} \[", step)
        self.assertRegex(bar, rf"3/3 calibrate {N_CAL}/{N_CAL} cases \|#+\| {total}/{total} \[")
        self.assertRegex(bar, r"3/3 calibrate 1/20 cases .*<\d\d:\d\d\]")  # the time left

        fit = json.loads((fit_dir / "fit.json").read_text())
        multi_label = name == "brats_like"
        self.assertEqual(fit["steps"], ["sample", "head", "calibration"])
        self.assertEqual(fit["spatial_dims"], len(shape))  # the data's, also for the 2D network run by SliceInferer
        self.assertEqual(fit["head"]["strides"], h["strides"])  # chosen from the first case's grid, recorded
        recipe = {"quality_variant": fit["head"]["quality_variant"], "rank_weight": fit["head"]["rank_weight"],
                  "rank_loss": fit["head"]["rank_loss"], "quality_members": fit["head"]["members"],
                  "quality_scalars": fit["head"]["scalars"]}
        self.assertEqual(recipe, HEAD_RECIPE)  # the demo's head, from one source
        first = train[0]["image"][0] if files > 1 else train[0]["image"]
        self.assertEqual(fit["head"]["grid"]["image"], first)
        self.assertEqual(fit["head"]["grid"]["shape"], list(shape))
        spacing = [1.0] * len(shape) if h["fmt"] == "jpeg" else list(np.linalg.norm(kw["affine"] if kw["affine"] is not None else np.diag([1.5] * 3 + [1.0]), axis=0)[: len(shape)])  # fmt: skip
        np.testing.assert_allclose(fit["head"]["grid"]["spacing"], spacing, rtol=1e-5)
        self.assertEqual(fit["host_network"]["spatial_dims"], h["host_dims"])
        self.assertEqual(fit["host_network"]["in_channels"], 3 if h["fmt"] == "jpeg" else files)
        self.assertEqual(fit["class_names"], names)
        self.assertEqual(fit["activation"], "sigmoid" if multi_label else "softmax")
        self.assertEqual(fit["host_bundle"]["run_id"], h["run_id"])
        # --foreground_band auto (the default) on these small grids samples the whole input
        self.assertEqual(fit["foreground_band"], 2 if "--foreground_band" in extra else None)
        # every command the fit printed, parsed by MONAI's own entry point, runs with fit.json's host overrides
        commands = [line for line in printed.splitlines() if line.startswith("python -m monai.bundle run")]
        self.assertEqual(len(commands), 4)  # sample, train, calibrate, deploy
        for command in commands[:1] + commands[2:]:
            parsed = parse_bundle_command(command)
            self.assertEqual(parsed["run_id"], h["run_id"])
            self.assertEqual(parsed["segq#fit_dir"], str(fit_dir))
            for key, value in fit["host_bundle"]["overrides"].items():
                self.assertEqual((key, parsed[key], type(parsed[key])), (key, value, type(value)))
        deploy = parse_bundle_command(commands[-1])
        self.assertEqual(deploy["config_file"], [str(host_config), str(OVERLAY)])
        # the host as the fit ran it is bound into fit.json: the weights' digest and the grid it sampled on
        binding = fit["host_binding"]
        weights = [host / "models" / "model.pt", *sorted(host.glob("models/fold*/model.pt"))]
        self.assertEqual(binding["weight_files"], {str(p): sha256(p) for p in weights})
        if name == "wholebody_like":  # --host_override displayable_configs#highres=False: 3 mm, not 1.5
            self.assertEqual(fit["host_bundle"]["overrides"], {"displayable_configs#highres": False})
            self.assertEqual(binding["overrides"], {"displayable_configs#highres": False})
            self.assertEqual(binding["preprocessing"]["settings"]["transforms[3].spacing_transform.pixdim"], [3.0] * 3)

        # true Dice of the sampled cases, on the input grid, against numpy
        for entry in load_datalist(fit_dir / "sample" / "stage2_datalist.json", "training", ("image", "seg", "label")):
            seg = nib.load(entry["seg"])
            label = read_label(entry["label"])
            self.assertEqual(seg.shape[: len(shape)], label.shape)
            if h["fmt"] == "nifti":
                np.testing.assert_allclose(seg.affine, nib.load(entry["label"]).affine, atol=1e-4)
            expected = true_dice(np.asarray(seg.dataobj), label, values, multi_label)
            np.testing.assert_allclose(entry["true_dice"], expected, atol=1e-6)
            channels = 3 if h["fmt"] == "jpeg" else files
            self.assertEqual(nib.load(entry["image"]).shape[-1] if channels > 1 else 1, channels)

        # λ̂ against a direct computation on the calibration table, with failing cases (true Dice < tau) in it
        table = read_csv(fit_dir / "calibration" / "quality.csv")
        self.assertEqual(len(table), N_CAL)
        columns = [f"{kind}_dice_{n}" for n in names for kind in ("pred", "true")] if len(names) > 1 else ["pred_dice"]
        self.assertTrue(set(columns) <= set(table[0]), table[0].keys())
        suffix = [f"_{n}" for n in names] if len(names) > 1 else [""]
        pred = np.array([min(float(r[f"pred_dice{s}"]) for s in suffix) for r in table])
        true = np.array([min(float(r[f"true_dice{s}"]) for s in suffix) for r in table])
        cal_fit = fit["calibration"]
        self.assertGreater(cal_fit["tau"], 0)
        self.assertGreater(int((true < cal_fit["tau"]).sum()), 0, true)  # some cases fail
        lam = selective_threshold(pred, true, cal_fit["tau"], 0.95, 0.5)
        self.assertEqual(cal_fit["acceptance_threshold"], lam)
        self.assertEqual(cal_fit["feasible"], lam is not None)

        # the calibration file: λ̂, the head it belongs to, g of each class against scikit-learn's isotonic fit inside
        # the fit half's range (monotone outside it), q against the conformal rank of the other half
        saved = json.loads((fit_dir / cal_fit["file"]).read_text())
        self.assertEqual(saved["format"], "segq-quality-calibration/1")
        self.assertEqual(saved["flag"]["acceptance_threshold"], lam)
        self.assertEqual(saved["head_fingerprint"], sha256(fit_dir / "quality_head.pt"))
        self.assertEqual((saved["coverage"], saved["n_calibration"]), (0.5, N_CAL))
        fit_idx, score_idx = split_calibration(N_CAL, 0.5, 0)
        self.assertEqual(len(fit_idx), N_CAL // 2)

        # deployment on the calibration images: the same predicted Dice, flagged by λ̂, maps on the input grid
        out = self.tmp / "deploy"
        inputs = {"dataset_dir": str(data / "cal"), "output_dir": str(out)}
        if name == "brats_like":
            test_list = write_datalist(self.tmp / "test.json", {"testing": [{"image": c["image"]} for c in cal]})
            inputs.update(data_list_file_path=str(test_list), dataset_dir=str(test_list.parent))  # paths relative to it
        if fit["host_bundle"]["overrides"]:  # the deploy command without the fit's overrides runs another host
            bare = {k: v for k, v in deploy.items() if k not in fit["host_bundle"]["overrides"]}
            with self.assertRaises(Exception) as refused:
                bundle_run(**bare, **{**inputs, "output_dir": str(self.tmp / "bare")})
            message = str(bad_input(refused.exception))
            self.assertIn("transforms[3].spacing_transform.pixdim is [1.5, 1.5, 1.5] here, [3.0, 3.0, 3.0] in the fit",
                          message)  # fmt: skip
            self.assertIn("--displayable_configs#highres False", message)
            self.assertFalse((self.tmp / "bare" / "quality.csv").exists())
        bundle_run(**deploy, **inputs)  # the printed deploy command, as MONAI's entry point parses it
        rows = {Path(r["image"]).name: r for r in read_csv(out / "quality.csv")}
        deployed = [rows[Path(r["image"]).name] for r in table]
        for s, label in zip(suffix, names if len(names) > 1 else ["foreground"]):
            x, y = (np.array([float(r[f"{kind}_dice{s}"]) for r in table]) for kind in ("pred", "true"))
            raw = np.array([float(r[f"pred_dice_raw{s}"]) for r in deployed])
            np.testing.assert_allclose(raw, x, atol=1e-5)  # the calibration run's predicted Dice
            g = np.array([float(r[f"pred_dice{s}"]) for r in deployed])  # g(raw), segq's recalibration
            record = saved["recalibration"][label]
            scored = {k: v for k, v in record["cv_mae"].items() if v is not None}
            self.assertEqual(record["map"], min(scored, key=scored.get) if scored else "isotonic")
            # the recorded map against an independent fit on the seeded fit half: scikit-learn's isotonic regression
            # (inside its range; monotone and in [0, 1] outside), least squares, or the head as it is
            lo, hi = x[fit_idx].min(), x[fit_idx].max()
            inside = (raw >= lo) & (raw <= hi)
            if record["map"] == "isotonic" and lo < hi:
                iso = IsotonicRegression(y_min=0, y_max=1).fit(x[fit_idx], y[fit_idx])
                np.testing.assert_allclose(g[inside], iso.predict(raw[inside]), atol=1e-5)
            elif record["map"] == "linear" and lo < hi:
                line = LinearRegression().fit(x[fit_idx, None], y[fit_idx])  # least squares under slope >= 0
                expected = line.predict(raw[:, None]) if line.coef_[0] > 0 else np.full_like(raw, y[fit_idx].mean())
                np.testing.assert_allclose(g, np.clip(expected, 0, 1), atol=1e-5)
            elif record["map"] == "identity":
                np.testing.assert_allclose(g, np.clip(raw, 0, 1), atol=1e-6)
            order = np.argsort(raw, kind="stable")
            self.assertTrue(np.all(np.diff(g[order]) >= -1e-6), (raw, g))  # monotone, the tails too
            self.assertTrue(np.all((g >= 0) & (g <= 1)))
            # rank ceil((m + 1) * 0.5) of the m scored residuals, in Dice units or in units of the head's spread
            sd = np.ones_like(g)
            if record["interval"] == "normalised":
                sd = np.maximum([float(r[f"pred_dice_sd{s}"]) for r in deployed], record["sd_floor"])
            residuals = np.abs(y[score_idx] - g[score_idx]) / sd[score_idx]
            q = np.sort(residuals)[math.ceil((len(score_idx) + 1) * 0.5) - 1]
            key = "half_width_normalised" if record["interval"] == "normalised" else "half_width"
            self.assertAlmostEqual(record[key], q, places=5)
            for r, gi, si in zip(deployed, g, sd):
                self.assertAlmostEqual(float(r[f"pred_dice_lo{s}"]), max(0.0, gi - q * si), places=5)
                self.assertAlmostEqual(float(r[f"pred_dice_hi{s}"]), min(1.0, gi + q * si), places=5)
        for row in deployed:
            worst = min(float(row[f"pred_dice_raw{s}"]) for s in suffix)
            self.assertEqual(int(row["flagged"]), int(lam is None or worst < lam))
        self.assertEqual(json.loads((out / "promise.json").read_text())["coverage"], 0.5)
        # the deploy overlay builds the sampler fit.json records: the band around it when the fit chose one
        parser = ConfigParser()
        parser.read_config([str(host_config), str(OVERLAY)])
        parser.update({"bundle_root": str(host), "segq#fit_dir": str(fit_dir)})
        sampler = parser.get_parsed_content("segq#sampler_object")
        if fit["foreground_band"] is None:
            self.assertNotIsInstance(sampler, ForegroundBandSampler)
        else:
            self.assertIsInstance(sampler, ForegroundBandSampler)
            self.assertEqual(sampler.margin, fit["foreground_band"])
        drift = json.loads((out / "drift.json").read_text())
        self.assertEqual(drift["statistics"]["pred_dice_raw"]["n"], N_CAL)
        self.assertEqual(drift["statistics"]["pred_dice_raw"]["n_reference"], N_CAL)
        self.assertIsNotNone(drift["statistics"]["mean_entropy"])
        for item in cal[:3]:
            image = item["image"][0] if files > 1 else item["image"]
            case = case_name(image)
            for key in ("entropy", "mutual_information"):
                saved_map = nib.load(out / case / f"{case}_{key}.nii.gz")
                if h["fmt"] == "jpeg":  # the input grid, identity affine, and a PNG beside it
                    self.assertEqual(saved_map.shape, shape, key)
                    np.testing.assert_allclose(saved_map.affine, np.eye(4))
                    self.assertEqual(Image.open(out / case / f"{case}_{key}.png").size, Image.open(image).size)
                else:
                    ref = nib.load(image)
                    self.assertEqual(saved_map.shape, ref.shape, key)
                    np.testing.assert_allclose(saved_map.affine, ref.affine, atol=1e-4)
        self.assertEqual(sha256(host_config), config_sha)



class TestFitSyntheticFailures(unittest.TestCase):
    """``--synthetic_failures N``: N synthetic failures of every sampled case join the head's training cases, their
    true Dice exact against the label as the host's label transforms leave it; multi-label hosts get none."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="segq_fit_synthetic_"))
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def _fit(self, name: str, *extra: str) -> tuple[Path, str]:
        h = HOSTS[name]
        host = make_host(name, self.tmp)
        kw = dict(files=h["files"], affine=h["affine"], image_format=h["fmt"])
        train = write_labelled_cases(self.tmp / "train", ["t0", "t1", "t2"], h["shape"], h["values"], seed=1, **kw)
        cal = write_labelled_cases(self.tmp / "cal", [f"k{i}" for i in range(4)], h["shape"], h["values"], seed=2,
                                   label_folder=self.tmp / "cal_labels", **kw)  # fmt: skip
        datalist = write_datalist(self.tmp / "datalist.json", {"validation": train, "calibration": cal})
        fit_dir = self.tmp / "FIT"
        return fit_dir, run_fit(host, datalist, fit_dir, *h["args"], "--alpha", "0.95", *extra)

    def test_softmax_host(self):
        fit_dir, _ = self._fit("slice2d_like", "--synthetic_failures", "4", "--coverage", "0.5")
        fit = json.loads((fit_dir / "fit.json").read_text())
        self.assertEqual(fit["head"]["synthetic_failures"], 4)
        self.assertEqual(fit["head"]["epochs"], 1)  # --epochs given
        entries = load_datalist(fit_dir / "synthetic" / "synthetic_datalist.json", "training", ("seg", "label"))
        self.assertGreater(len(entries), 0)
        self.assertLessEqual(len(entries), 3 * 4)
        for entry in entries:
            seg, label = np.asarray(nib.load(entry["seg"]).dataobj), np.asarray(nib.load(entry["label"]).dataobj)
            np.testing.assert_allclose(entry["true_dice"], true_dice(seg, label, (0, 1, 2), False), atol=1e-6)
            self.assertIn(entry["failure"], ("erode", "dilate", "shift", "affine", "hole", "remove_component",
                                             "spurious_component", "boundary_noise", "class_swap"))  # fmt: skip
        self.assertEqual(fit["steps"], ["sample", "head", "calibration"])

    def test_multi_label_host_gets_none(self):
        fit_dir, printed = self._fit("brats_like", "--synthetic_failures", "4", "--coverage", "0.5")
        self.assertIn("no synthetic failures", printed)
        self.assertEqual(json.loads((fit_dir / "fit.json").read_text())["head"]["synthetic_failures"], 0)
        self.assertFalse((fit_dir / "synthetic").exists())

if __name__ == "__main__":
    unittest.main()
