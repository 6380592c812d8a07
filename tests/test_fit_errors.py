"""Bad input to ``python -m segq_monai fit`` and to the deployment of a fit: each a clear message, nothing half-written.

The interrupted-fit test runs the real command lines: the fit stops at its calibration step on a bad label, the label
is repaired, ``python -m segq_monai fit`` (a subprocess) continues without redoing the finished steps, and the
deploy command it prints runs as printed (a shell). The recalibration test moves a fit to a new site
(``--recalibrate``: only the calibrate step reruns, the head is kept) and then refuses the calibration file of
another fit (another head), naming both heads.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import run as bundle_run
from parameterized import parameterized
from segq_testing import HOSTS, REPO, chain, make_host, read_csv, write_labelled_cases
from test_fit import OVERLAY, TINY, run_fit

from segq_monai.data import write_datalist

SHAPE = (16, 16, 12)


class TestFitErrors(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="segq_fit_errors_"))
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.host = make_host("spleen_like", self.tmp)
        self.fit_dir = self.tmp / "FIT"

    def datalist(self, n_train: int = 2, n_cal: int = 2) -> tuple[Path, list[dict], list[dict]]:
        data = self.tmp / "data"
        train = write_labelled_cases(data / "train", [f"t{i}" for i in range(n_train)], SHAPE, seed=1)
        cal = write_labelled_cases(data / "cal", [f"k{i}" for i in range(n_cal)], SHAPE, seed=2,
                                   label_folder=data / "cal_labels")  # fmt: skip
        return write_datalist(data / "datalist.json", {"validation": train, "calibration": cal}), train, cal

    def test_too_few_calibration_cases(self):
        _, train, cal = self.datalist()
        datalist = write_datalist(self.tmp / "one_section.json", {"validation": train + cal})  # split by the fit
        with self.assertRaisesRegex(ValueError, r"at least 66 labelled calibration cases at alpha=0.1, delta=0.1; "
                                                r".* gives 2 \(of 4 in 'validation', calibration_fraction 0.5\)"):
            run_fit(self.host, datalist, self.fit_dir, "--alpha", "0.1", "--delta", "0.1")
        self.assertFalse(self.fit_dir.exists())  # refused before anything is written
        with self.assertRaisesRegex(ValueError, r"Intervals at coverage 0.9 need at least 17 labelled calibration "
                                                r"cases .* gives 2 .*lower --coverage"):
            run_fit(self.host, datalist, self.fit_dir, "--coverage", "0.9")
        self.assertFalse(self.fit_dir.exists())
        with self.assertRaisesRegex(ValueError, r"--coverage is the intervals' promised coverage, in \(0, 1\), e.g. "
                                                r"0.9; got 90.0"):
            run_fit(self.host, datalist, self.fit_dir, "--coverage", "90")
        self.assertFalse(self.fit_dir.exists())

    def test_host_config_lacks_an_id(self):
        config = self.host / "configs" / "inference.json"
        content = json.loads(config.read_text())
        content["evaluator"]["inferer"] = content.pop("inferer")  # inlined: no id 'inferer' left
        config.write_text(json.dumps(content))
        datalist, _, _ = self.datalist()
        with self.assertRaisesRegex(ValueError, r"has no id 'inferer'.*--host_override 'inferer="):
            run_fit(self.host, datalist, self.fit_dir)
        self.assertFalse(self.fit_dir.exists())

    def test_label_on_another_grid(self):
        datalist, train, _ = self.datalist()
        label = train[1]["label"]
        nib.save(nib.Nifti1Image(np.zeros((16, 16, 10), np.uint8), np.diag([1.5, 1.5, 1.5, 1.0])), label)
        with self.assertRaises(ValueError) as raised:
            run_fit(self.host, datalist, self.fit_dir)
        message = str(raised.exception)
        self.assertIn(f"Label {label} does not lie on the grid of its image {train[1]['image']}", message)
        self.assertIn("(16, 16, 10)", message)
        self.assertIn("(16, 16, 12)", message)
        self.assertIn("ResampleToMatch", message)
        self.assertFalse(self.fit_dir.exists())  # refused from the headers, before anything is written

    def test_one_slice_volume(self):
        for section, index in (("train", 0), ("cal", 1)):  # the case the strides come from, then another case
            datalist, train, cal = self.datalist()
            case = {"train": train, "cal": cal}[section][index]
            where = f"{section}[{index}]"
            for key in ("image", "label"):
                nib.save(nib.Nifti1Image(np.zeros((16, 16, 1), np.float32), np.diag([1.5, 1.5, 3.0, 1.0])), case[key])
            with self.assertRaises(ValueError) as raised:
                run_fit(self.host, datalist, self.fit_dir)
            message = str(raised.exception)
            self.assertIn(f"Case {case['image']}", message, where)
            self.assertIn("(16, 16, 1)", message, where)
            self.assertIn("2D data as 2D files", message, where)
            self.assertFalse(self.fit_dir.exists())

    def test_evaluator_not_supervised(self):
        config = self.host / "configs" / "inference.json"
        content = json.loads(config.read_text())
        content["evaluator"]["_target_"] = "Workflow"
        config.write_text(json.dumps(content))
        datalist, _, _ = self.datalist()
        with self.assertRaisesRegex(ValueError, rf"Host config {config}: its 'evaluator' is 'Workflow', not a "
                                                r"monai.engines.SupervisedEvaluator.*--host_config"):  # fmt: skip
            run_fit(self.host, datalist, self.fit_dir)
        self.assertFalse(self.fit_dir.exists())

    @parameterized.expand([
        ("hovernet_branches", "nuclei_like", None,
         r"cannot serve the host bundle 'nuclei_like' \(.*inference.json\): its network HoVerNet returns "
         r"dict\[str, torch.Tensor\]: several outputs per pass .*not one class map .*a module around yours"),
        ("one_softmax_channel", "spleen_like", lambda c: c["network_def"].update(out_channels=1),
         r"cannot serve the host bundle 'spleen_like' .*1 output channel .*pass --activation sigmoid"),
        ("other_image_keys", "spleen_like", lambda c: c["preprocessing"]["transforms"][0].update(keys=["ct", "pet"]),
         r"cannot serve the host bundle 'spleen_like' .*loads the keys \['ct', 'pet'\], not 'image' "
         r"\(preprocessing#transforms#0\).*--host_config"),
        ("mc_dropout_without_dropout", "spleen_like", lambda c: c["network_def"].update(dropout=0.0),
         r"cannot serve the host bundle 'spleen_like' .*its network UNet has no dropout module with p > 0, so MC "
         r"dropout \(--sampler mc_dropout, the default\).*--sampler tta"),
    ])  # fmt: skip
    def test_host_refused_up_front(self, _, name, edit, message):
        host = self.tmp / name  # configs only: refused before its weights are looked for
        shutil.copytree(HOSTS / name / "configs", host / "configs", dirs_exist_ok=True)
        if edit:
            config = host / "configs" / "inference.json"
            content = json.loads(config.read_text())
            edit(content)
            config.write_text(json.dumps(content))
        datalist, _, _ = self.datalist()
        with self.assertRaisesRegex(ValueError, message):
            run_fit(host, datalist, self.fit_dir)
        self.assertFalse(self.fit_dir.exists())

    def test_host_without_weights(self):
        (self.host / "models" / "model.pt").unlink()
        datalist, _, _ = self.datalist()
        with self.assertRaisesRegex(FileNotFoundError, rf"The host bundle {self.host} has no saved weights at "
                                                       rf".*models/model.pt .*--host_override 'handlers#0#load_path="):
            run_fit(self.host, datalist, self.fit_dir)
        self.assertFalse(self.fit_dir.exists())

    @pytest.mark.slow
    def test_interrupted_fit_continues_and_deploys(self):
        datalist, _, cal = self.datalist()
        label = nib.load(cal[1]["label"])
        good = nib.Nifti1Image(np.asarray(label.dataobj).copy(), label.affine)
        bad = np.asarray(good.dataobj).copy()
        bad[0, 0, 0] = 3  # the host has classes 0 (background) and 1 (spleen)
        nib.save(nib.Nifti1Image(bad, good.affine), cal[1]["label"])
        with self.assertRaisesRegex(ValueError, r"step '3/3.*Label .*k1_label.nii.gz .*values \[0, 1, 3\]"):
            run_fit(self.host, datalist, self.fit_dir, "--tau", "0.0")
        fit = json.loads((self.fit_dir / "fit.json").read_text())
        self.assertEqual(fit["steps"], ["sample", "head"])
        self.assertFalse((self.fit_dir / "calibration" / "quality.csv").exists())
        with self.assertRaises(RuntimeError) as raised:  # deploying it is refused
            bundle_run(config_file=[str(self.host / "configs" / "inference.json"), str(OVERLAY)],
                       bundle_root=str(self.host), **{"segq#fit_dir": str(self.fit_dir)})  # fmt: skip
        self.assertIn("is unfinished (no calibration yet); rerun the same python -m segq_monai fit", chain(raised.exception))
        with self.assertRaisesRegex(ValueError, r"other settings \(num_samples differ\)"):
            run_fit(self.host, datalist, self.fit_dir, "--tau", "0.0", "--num_samples", "3")
        done = {p: os.stat(p).st_mtime_ns for p in (self.fit_dir / "sample" / "quality.csv",
                                                    self.fit_dir / "quality_head.pt")}  # fmt: skip

        nib.save(good, cal[1]["label"])  # repaired: the same command continues (the real command line)
        command = [sys.executable, "-m", "segq_monai", "fit", "--host_bundle", str(self.host), "--datalist",
                   str(datalist), "--output_dir", str(self.fit_dir), *TINY, "--tau", "0.0"]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.tmp, env=env)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertEqual({p: os.stat(p).st_mtime_ns for p in done}, done)  # not redone
        fit = json.loads((self.fit_dir / "fit.json").read_text())
        self.assertEqual(fit["steps"], ["sample", "head", "calibration"])
        self.assertNotIn("1/3 sample", result.stdout)
        self.assertIn("3/3", result.stdout)

        deploy = result.stdout.strip().splitlines()[-1]
        self.assertTrue(deploy.startswith("python -m monai.bundle run"), deploy)
        out = self.tmp / "deployed"
        shell = deploy.replace("python", f"'{sys.executable}'", 1) + f" --dataset_dir {self.tmp / 'data' / 'cal'} --output_dir {out}"
        result = subprocess.run(shell, shell=True, capture_output=True, text=True, cwd=self.tmp, env=env)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        rows = read_csv(out / "quality.csv")
        self.assertEqual(sorted(Path(r["image"]).name for r in rows), ["k0.nii.gz", "k1.nii.gz"])
        lam = fit["calibration"]["acceptance_threshold"]
        self.assertIsNotNone(lam)  # tau = 0: no failures, so the most lenient threshold accepting both is certified
        for row in rows:
            self.assertEqual(int(row["flagged"]), int(float(row["pred_dice_raw"]) < lam))

        # the same fit on a host with another network is refused before any case is sampled
        other = make_host("prostate_like", self.tmp)
        refused = self.tmp / "refused"
        with self.assertRaises(RuntimeError) as raised:
            bundle_run(config_file=[str(other / "configs" / "inference.json"), str(OVERLAY)], bundle_root=str(other),
                       dataset_dir=str(self.tmp / "data" / "cal"), output_dir=str(refused),
                       **{"segq#fit_dir": str(self.fit_dir)})  # fmt: skip
        message = chain(raised.exception)
        self.assertIn("'out_channels': 2} (bundle 'spleen_like')", message)
        self.assertIn("this host's network has {'spatial_dims': 3, 'in_channels': 1, 'out_channels': 3}", message)
        self.assertFalse(refused.exists() and any(refused.iterdir()))

    @pytest.mark.slow
    def test_recalibrate_then_refuse_another_fits_calibration(self):
        datalist, _, _ = self.datalist()
        run_fit(self.host, datalist, self.fit_dir, "--tau", "0.0")
        kept = {p: os.stat(p).st_mtime_ns for p in (self.fit_dir / "sample" / "quality.csv",
                                                    self.fit_dir / "quality_head.pt")}  # fmt: skip
        head = hashlib.sha256((self.fit_dir / "quality_head.pt").read_bytes()).hexdigest()

        # a new site: only the calibrate step reruns, on its cases, with the same head
        site = write_labelled_cases(self.tmp / "site_b", ["b0", "b1", "b2"], SHAPE, seed=3)
        site_list = write_datalist(self.tmp / "site_b" / "datalist.json", {"calibration": site})
        printed = run_fit(self.host, site_list, self.fit_dir, "--tau", "0.0", "--recalibrate")
        self.assertNotIn("1/3", printed)
        self.assertNotIn("2/3", printed)
        self.assertEqual({p: os.stat(p).st_mtime_ns for p in kept}, kept)
        fit = json.loads((self.fit_dir / "fit.json").read_text())
        self.assertEqual(fit["steps"], ["sample", "head", "calibration"])
        self.assertEqual(fit["datalist"]["calibration_source"], {"source": str(site_list), "key": "calibration"})
        table = read_csv(self.fit_dir / "calibration" / "quality.csv")
        self.assertEqual(sorted(Path(r["image"]).name for r in table), ["b0.nii.gz", "b1.nii.gz", "b2.nii.gz"])
        saved = json.loads((self.fit_dir / "quality_calibration.json").read_text())
        self.assertEqual((saved["n_calibration"], saved["head_fingerprint"]), (3, head))

        # the calibration file of another fit (another head) is refused, naming both heads
        other = self.tmp / "FIT2"
        run_fit(self.host, datalist, other, "--tau", "0.0", "--seed", "1")
        other_head = hashlib.sha256((other / "quality_head.pt").read_bytes()).hexdigest()
        self.assertNotEqual(other_head, head)
        refused = self.tmp / "refused"
        with self.assertRaises(RuntimeError) as raised:
            bundle_run(config_file=[str(self.host / "configs" / "inference.json"), str(OVERLAY)],
                       bundle_root=str(self.host), dataset_dir=str(self.tmp / "site_b"), output_dir=str(refused),
                       **{"segq#fit_dir": str(self.fit_dir),
                          "segq#calibration_file": str(other / "quality_calibration.json")})  # fmt: skip
        message = chain(raised.exception)
        self.assertIn(f"calibration file '{other / 'quality_calibration.json'}' was made for the quality head "
                      f"{other_head[:16]}", message)  # fmt: skip
        self.assertIn(f"this run uses the head {head[:16]}", message)
        self.assertIn(str(self.fit_dir / "quality_head.pt"), message)
        self.assertIn("--recalibrate", message)
        self.assertFalse(refused.exists() and any(refused.iterdir()))


if __name__ == "__main__":
    unittest.main()
