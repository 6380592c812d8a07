"""The bundle's workflows end to end on small random NIfTI data, as model-zoo bundle tests do it.

Every workflow runs through ``monai.bundle.ConfigWorkflow`` with tiny overrides (1 epoch, small images) on random
files; the 2D bundle is trained once per test run (the ``trained_bundle`` fixture, ``tests/conftest.py``); inference
also runs through the real ``python -m monai.bundle run`` command line.
"""

from __future__ import annotations

import json
import math
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, verify_net_in_out
from parameterized import parameterized
from command_server import SERVERS
from segq_testing import chain, copy_bundle, isotonic_reference, read_csv, workflow, write_cases

from segq_monai.data import split_fold, write_datalist
from segq_monai.calibration.recalibration import split_calibration
from segq_monai.utils.errors import causes

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.slow


@pytest.fixture(scope="class")
def inferred(request: pytest.FixtureRequest, trained_bundle_copy: None) -> None:
    """The trained bundle's test cases through the real inference command line (``cls.cli``: exit code and output,
    into ``cls.out``) and through evaluate (into ``cls.report_dir``)."""
    cls = request.cls
    cls.out = cls.tmp / "inference"
    cls.cli = SERVERS.run(
        ["-m", "monai.bundle", "run", "--bundle_root", str(cls.root),
         "--config_file", str(cls.root / "configs" / "inference.json"),
         "--meta_file", str(cls.root / "configs" / "metadata.json"),
         "--datalist", str(cls.datalist), "--output_dir", str(cls.out), "--num_samples", "3", "--device", "cpu"],
        cls.tmp,
    )  # fmt: skip
    cls.report_dir = cls.tmp / "report"
    workflow(["inference.json", "evaluate.json"], cls.root, datalist=str(cls.datalist),
             output_dir=str(cls.report_dir), num_samples=3, device="cpu")


@pytest.mark.usefixtures("inferred")
class TestTwoStageBundle2D(unittest.TestCase):
    """train_segmentation (2 folds) -> sample (out-of-fold) -> train_quality (the ``trained_bundle`` fixture) ->
    inference (CLI) -> evaluate."""

    def test_samplers_by_name(self):
        for sampler in ("tta", "ensemble", "single_pass"):
            out = self.tmp / f"infer_{sampler}"
            wf = workflow(["inference.json"], self.root, datalist=str(self.datalist), output_dir=str(out),
                          sampler=sampler, num_samples=3, device="cpu")
            self.assertEqual(type(wf.parser.get_parsed_content("segq#sampler_object")).__name__,
                             {"tta": "TTASampler", "ensemble": "EnsembleSampler",
                              "single_pass": "SinglePassSampler"}[sampler])
            self.assertEqual(len(read_csv(out / "quality.csv")), 3)
            mi = np.asarray(nib.load(out / "test0" / "test0_mutual_information.nii.gz").dataobj)
            if sampler == "single_pass":
                self.assertEqual(float(np.abs(mi).max()), 0.0)  # one deterministic pass: no epistemic part
            else:
                self.assertGreater(float(mi.max()), 0.0)

    def test_every_quality_variant_trains(self):
        # the paper's ablation: the same regressor on other input stacks (image alone: no map is read)
        for variant, channels in (("image", 1), ("image_seg", 3), ("seg_entropy", 3)):
            workflow(["train_quality.json"], self.root, epochs=1, device="cpu", quality_variant=variant)
            state = torch.load(self.root / "models" / f"quality_{variant}" / "model.pt", weights_only=True)["model"]
            first_conv = next(v for k, v in state.items() if k.endswith("conv.weight"))
            self.assertEqual(first_conv.shape[1], channels, variant)

    def test_stage1_checkpoints_per_fold(self):
        for fold in range(2):
            state = torch.load(self.root / "models" / f"fold{fold}" / "model.pt", weights_only=True)
            self.assertIn("model", state)

    def test_sampling_is_out_of_fold(self):
        items = json.loads(self.datalist.read_text())["training"]
        for fold in range(2):
            trained_on, held_out = split_fold(items, fold, 2)
            rows = read_csv(self.root / "stage2_data" / f"fold{fold}" / "quality.csv")
            sampled = {r["image"] for r in rows}
            self.assertEqual(sampled, {x["image"] for x in held_out})
            self.assertFalse(sampled & {x["image"] for x in trained_on})
            stage2 = json.loads((self.root / "stage2_data" / f"fold{fold}" / "stage2_datalist.json").read_text())
            self.assertEqual(len(stage2["training"]), len(held_out))
            for entry, row in zip(stage2["training"], rows):
                self.assertAlmostEqual(entry["true_dice"][0], float(row["true_dice"]), places=6)
                self.assertTrue(0.0 <= entry["true_dice"][0] <= 1.0)

    def test_cli_inference_contract(self):
        self.assertEqual(self.cli[0], 0, self.cli[1][-3000:])
        rows = read_csv(self.out / "quality.csv")
        self.assertEqual([r["image"] for r in rows], [f"test{i}.nii.gz" for i in range(3)])  # as written in the datalist
        self.assertEqual(list(rows[0]), ["image", "pred_dice", "pred_iou", "pred_dice_sd", "flagged"])
        for row in rows:
            d = float(row["pred_dice"])
            self.assertTrue(0.0 <= float(row["pred_dice_sd"]) <= 0.5)  # sd of 20 head passes, each in [0, 1]
            self.assertTrue(0.0 <= d <= 1.0)
            self.assertAlmostEqual(float(row["pred_iou"]), d / (2 - d), places=6)
            self.assertEqual(int(row["flagged"]), int(d < 0.8))
        source = nib.load(self.tmp / "data" / "test0.nii.gz")
        for key in ("seg", "entropy", "mutual_information", "agreement"):
            saved = nib.load(self.out / "test0" / f"test0_{key}.nii.gz")
            self.assertEqual(saved.shape, source.shape, key)  # padding to 48×48 undone
            np.testing.assert_allclose(saved.affine, source.affine, err_msg=key)
        entropy = np.asarray(nib.load(self.out / "test0" / "test0_entropy.nii.gz").dataobj)
        self.assertTrue(0.0 <= entropy.min() and entropy.max() <= np.log(2) + 1e-6)
        self.assertFalse(list(self.out.glob("**/*.tmp*")))

    def test_evaluate_report(self):
        rows = read_csv(self.report_dir / "quality.csv")
        self.assertEqual(len(rows), 3)
        for col in ("true_dice", "true_iou", "baseline_mean_entropy", "baseline_pairwise_dice"):
            self.assertIn(col, rows[0])
        # the true Dice in the table is the Dice of the saved segmentation against the label, recomputed here
        for i, row in enumerate(rows):
            seg = np.asarray(nib.load(self.report_dir / f"test{i}" / f"test{i}_seg.nii.gz").dataobj) > 0
            label = np.asarray(nib.load(self.tmp / "data" / f"test{i}_label.nii.gz").dataobj) > 0
            inter, total = (seg & label).sum(), seg.sum() + label.sum()
            self.assertAlmostEqual(float(row["true_dice"]), 2 * inter / total if total else 1.0, places=5)
        report = json.loads((self.report_dir / "report.json").read_text())
        self.assertEqual(report["n_cases"], 3)
        self.assertEqual(report["baseline_fit_split"], "held-out")
        for png in ("predicted_vs_true.png", "risk_coverage.png", "overlay_best_1.png", "overlay_worst_1.png"):
            self.assertTrue((self.report_dir / png).stat().st_size > 1000, png)

    def test_cli_config_ids(self):
        # tau and baseline_fit_csvs set from the command line
        out = self.tmp / "report_ids"
        fit_csv = self.root / "stage2_data" / "fold0" / "quality.csv"
        configs = [str(self.root / "configs" / c) for c in ("inference.json", "evaluate.json")]
        code, output = SERVERS.run(
            ["-m", "monai.bundle", "run", "--bundle_root", str(self.root),
             "--config_file", str(configs), "--meta_file", str(self.root / "configs" / "metadata.json"), "--datalist", str(self.datalist),
             "--output_dir", str(out), "--num_samples", "3", "--device", "cpu",
             "--tau", "0.3", "--baseline_fit_csvs", str([str(fit_csv)])],
            self.tmp,
        )  # fmt: skip
        self.assertEqual(code, 0, output[-3000:])
        report = json.loads((out / "report.json").read_text())
        self.assertEqual((report["tau"], report["n_baseline_fit"]), (0.3, len(read_csv(fit_csv))))
        self.assertEqual(report["baseline_fit_split"], "held-out")
        for row in read_csv(out / "quality.csv"):
            self.assertEqual(int(row["flagged"]), int(float(row["pred_dice"]) < 0.3))

    def test_calibrated_inference_cli(self):
        """Calibrate on a labelled split; the real CLI then writes recalibrated Dice, intervals, the calibrated flag,
        the promise and the drift check."""
        datalist = self.tmp / "cal_data" / "datalist.json"
        cal_items = write_cases(self.tmp / "cal_data", [f"cal{i}" for i in range(12)], (40, 40), seed=2)
        write_datalist(datalist, {"calibration": cal_items})
        common = {"num_samples": 3, "device": "cpu"}
        workflow(["inference.json", "evaluate.json"], self.root, datalist=str(datalist), datalist_key="calibration",
                 output_dir=str(self.tmp / "cal_eval"), **common)
        cal_csv = self.tmp / "cal_eval" / "quality.csv"
        cal_file = self.tmp / "deploy" / "quality_calibration.json"
        workflow(["inference.json", "calibrate_quality.json"], self.root, calibration_csvs=[str(cal_csv)],
                 calibration_file=str(cal_file), coverage=0.8, alpha=0.5, delta=0.5, **common)
        # the file against an independent fit: sklearn's isotonic regression on the seeded fit half, and the
        # ceil((6 + 1) * 0.8) = 6th smallest absolute residual of the 6 scored cases
        saved = json.loads(cal_file.read_text())
        rows = read_csv(cal_csv)
        raw_cal, true_cal = (np.array([float(r[k]) for r in rows]) for k in ("pred_dice", "true_dice"))
        fit, score = split_calibration(12, 0.5, 0)
        iso = isotonic_reference(raw_cal[fit], true_cal[fit])
        q = np.sort(np.abs(true_cal[score] - iso(raw_cal[score])))[5]
        self.assertAlmostEqual(saved["recalibration"]["foreground"]["half_width"], q, places=6)
        self.assertEqual((saved["coverage"], saved["n_calibration"], saved["classes"]), (0.8, 12, [""]))
        lam = math.inf if saved["flag"]["acceptance_threshold"] is None else saved["flag"]["acceptance_threshold"]

        out = self.tmp / "calibrated"
        code, output = SERVERS.run(
            ["-m", "monai.bundle", "run", "--bundle_root", str(self.root),
             "--config_file", str([str(self.root / "configs" / c) for c in ("inference.json", "evaluate.json")]),
             "--meta_file", str(self.root / "configs" / "metadata.json"), "--datalist", str(self.datalist),
             "--output_dir", str(out), "--calibration_file", str(cal_file), "--num_samples", "3", "--device", "cpu"],
            self.tmp,
        )  # fmt: skip
        self.assertEqual(code, 0, output[-3000:])
        rows = read_csv(out / "quality.csv")
        self.assertEqual(list(rows[0])[:6], ["image", "pred_dice", "pred_iou", "pred_dice_raw", "pred_dice_lo",
                                             "pred_dice_hi"])  # fmt: skip
        uncalibrated = read_csv(self.report_dir / "quality.csv")  # the same pipeline and cases without the calibration
        for row, plain in zip(rows, uncalibrated, strict=True):
            raw, g = float(row["pred_dice_raw"]), float(iso([float(row["pred_dice_raw"])])[0])
            self.assertAlmostEqual(raw, float(plain["pred_dice"]), places=6)
            self.assertAlmostEqual(float(row["pred_dice"]), g, places=6)
            self.assertAlmostEqual(float(row["pred_dice_lo"]), max(0.0, g - q), places=6)
            self.assertAlmostEqual(float(row["pred_dice_hi"]), min(1.0, g + q), places=6)
            self.assertEqual(int(row["flagged"]), int(raw < lam))  # the calibrated flag, not pred_dice < 0.8
        self.assertEqual(json.loads((out / "promise.json").read_text())["coverage"], 0.8)
        drift = json.loads((out / "drift.json").read_text())
        pred_drift = drift["statistics"]["pred_dice_raw"]
        self.assertEqual((pred_drift["n"], pred_drift["n_reference"]), (3, 12))
        self.assertEqual(drift["statistics"]["mean_entropy"]["n_reference"], 12)
        report = json.loads((out / "report.json").read_text())  # the promise, the drift check, realised coverage
        covered = [float(r["pred_dice_lo"]) <= float(r["true_dice"]) <= float(r["pred_dice_hi"]) for r in rows]
        self.assertAlmostEqual(report["intervals"]["foreground"]["coverage"], np.mean(covered))
        self.assertEqual(report["promise"]["coverage"], 0.8)
        self.assertEqual(report["drift"], drift)

        # a calibration made for another head is refused, naming both
        other = json.loads(cal_file.read_text())
        other["head_fingerprint"] = "0" * 64
        (self.tmp / "other.json").write_text(json.dumps(other))
        parser = ConfigParser()
        parser.read_config(str(self.root / "configs" / "inference.json"))
        parser.update({"bundle_root": str(self.root), "calibration_file": str(self.tmp / "other.json")})
        with self.assertRaises(RuntimeError) as refused:  # MONAI wraps the error of a failing "$" expression
            parser.get_parsed_content("segq#calibration")
        self.assertIn("was made for the quality head 0000000000000000… with classes ['foreground']; this run uses "
                      "the head", chain(refused.exception))

    def test_verify_net_in_out_and_torchscript_export(self):
        meta, configs = str(self.root / "configs" / "metadata.json"), str(self.root / "configs" / "inference.json")
        verify_net_in_out(net_id="network_def", meta_file=meta, config_file=configs, device="cpu", n=1)
        for net_id, ckpt in (("network_def", "fold0"), ("segq#quality_network_def", "quality_image_seg_entropy")):
            path = self.tmp / f"{net_id}.ts"
            ckpt_export(net_id=net_id, filepath=str(path), ckpt_file=str(self.root / "models" / ckpt / "model.pt"),
                        meta_file=meta, config_file=configs, key_in_ckpt="model", use_trace=True,
                        input_shape=[1, 1 if net_id == "network_def" else 4, 32, 48], bundle_root=str(self.root))
            exported = torch.jit.load(path)
            parser = ConfigParser()
            parser.read_config(configs)
            parser["bundle_root"] = str(self.root)
            eager = parser.get_parsed_content(net_id)  # the network as the config builds it, with the same weights
            eager.load_state_dict(torch.load(self.root / "models" / ckpt / "model.pt", weights_only=True)["model"])
            x = torch.rand(2, 1 if net_id == "network_def" else 4, 32, 48)
            with torch.no_grad():
                want = eager.eval()(x)
                self.assertEqual(tuple(exported(x).shape), tuple(want.shape))
                torch.testing.assert_close(exported(x), want, rtol=1e-4, atol=1e-5)


class TestBundle3D(unittest.TestCase):
    """The same workflows on 3D volumes with ``spatial_dims=3``."""

    def test_3d_pipeline(self):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            root = copy_bundle(tmp)
            items = write_cases(tmp / "data", [f"vol{i}" for i in range(4)], (20, 24, 18))
            datalist = tmp / "data" / "datalist.json"
            write_datalist(datalist, {"training": items, "testing": items[:1]})
            dims = {"spatial_dims": 3, "device": "cpu", "num_folds": 2}
            for fold in range(2):
                workflow(["train_segmentation.json"], root, datalist=str(datalist), fold=fold, epochs=1, **dims)
                workflow(["inference.json", "sample.json"], root, datalist=str(datalist), fold=fold, num_samples=2,
                         **dims)
            workflow(["train_quality.json"], root, epochs=1, spatial_dims=3, device="cpu")
            out = tmp / "out"
            workflow(["inference.json"], root, datalist=str(datalist), output_dir=str(out), num_samples=2, **dims)
            rows = read_csv(out / "quality.csv")
            self.assertEqual(len(rows), 1)
            saved = nib.load(out / "vol0" / "vol0_mutual_information.nii.gz")
            self.assertEqual(saved.shape, (20, 24, 18))


class TestEstimatorOverlays(unittest.TestCase):
    """bundle/configs/aleatoric_network.json and confidence_network.json swap the stage-1 network and loss."""

    @parameterized.expand(
        [
            ("aleatoric_network", "AleatoricNet", 4, "image_seg_entropy"),
            ("confidence_network", "ConfidenceNet", 3, "image_seg_confidence"),  # the head reads 1 - c
        ]
    )
    def test_two_stage_pipeline_with_overlay(self, overlay, network, backbone_channels, variant):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            root = copy_bundle(tmp)
            datalist = tmp / "data" / "datalist.json"
            items = write_cases(tmp / "data", [f"c{i}" for i in range(4)], (32, 32))
            write_datalist(datalist, {"training": items, "testing": items[:2]})
            common = {"datalist": str(datalist), "fold": 0, "num_folds": 2, "device": "cpu"}
            workflow(["train_segmentation.json", f"{overlay}.json"], root, epochs=1, **common)
            state = torch.load(root / "models" / "fold0" / "model.pt", weights_only=True)["model"]
            last_conv = [v for k, v in state.items() if k.startswith("backbone.") and v.ndim == 4][-1]
            self.assertEqual(last_conv.shape[0], backbone_channels)  # 2C (mean, log-variance) or C + 1
            wf = workflow(["inference.json", "sample.json", f"{overlay}.json"], root, num_samples=2, **common)
            self.assertEqual(type(wf.parser.get_parsed_content("network_def")).__name__, network)
            workflow(["train_quality.json"], root, epochs=1, device="cpu", quality_variant=variant)
            out = tmp / "out"
            wf = workflow(["inference.json", f"{overlay}.json"], root, datalist=str(datalist), output_dir=str(out),
                          num_samples=2, device="cpu")
            self.assertEqual(wf.parser.get_parsed_content("quality_variant"), variant)
            rows = read_csv(out / "quality.csv")
            self.assertEqual(len(rows), 2)
            if variant == "image_seg_confidence":
                for name in ("stage2_data/fold0", "out"):
                    folder = (root if name.startswith("stage2") else tmp) / name
                    case = sorted(p for p in folder.iterdir() if p.is_dir())[0]
                    u = np.asarray(nib.load(case / f"{case.name}_confidence.nii.gz").dataobj)
                    self.assertTrue(((u > 0) & (u < 1)).all())  # 1 - sigmoid: strictly inside (0, 1)
            mi = np.asarray(nib.load(out / "c0" / "c0_mutual_information.nii.gz").dataobj)
            self.assertGreater(float(mi.max()), 0.0)  # samples differ: dropout (and logit noise) are active


class TestConfigText(unittest.TestCase):
    """Every JSON config of the bundle and the overlays: ``$`` expressions wire ids (logic lives in Python
    components), so no line is over 120 characters, and every segq ``_target_`` is a top-level name of
    ``segq_monai``. ``metadata.json`` is prose (MONAI's schema wants single strings), so only its targets count."""

    CONFIGS = sorted((REPO / "bundle" / "configs").glob("*.json")) + sorted((REPO / "configs").glob("*.json"))

    def test_configs_found(self):
        names = {p.name for p in self.CONFIGS}
        self.assertTrue({"inference.json", "segq_overlay.json", "multi_gpu_inference.json"} <= names, names)

    def test_no_line_over_120_characters(self):
        long = [f"{p.relative_to(REPO)}:{i}: {len(line)}" for p in self.CONFIGS if p.name != "metadata.json"
                for i, line in enumerate(p.read_text().splitlines(), 1) if len(line) > 120]  # fmt: skip
        self.assertEqual(long, [])

    def test_segq_targets_are_one_level_deep_and_resolve(self):
        import segq_monai

        def targets(node):
            if isinstance(node, dict):
                if isinstance(node.get("_target_"), str):
                    yield node["_target_"]
                for v in node.values():
                    yield from targets(v)
            elif isinstance(node, list):
                for v in node:
                    yield from targets(v)

        found = {t for p in self.CONFIGS for t in targets(json.loads(p.read_text())) if t.startswith("segq_monai.")}
        self.assertIn("segq_monai.QualityWriter", found)
        for target in sorted(found):
            with self.subTest(target=target):
                self.assertEqual(target.count("."), 1, f"{target}: write it as segq_monai.<name>")
                self.assertTrue(callable(getattr(segq_monai, target.split(".", 1)[1], None)), target)
                self.assertIn(target.split(".", 1)[1], segq_monai.__all__)


@pytest.mark.usefixtures("trained_bundle_copy")
class TestBundleBadInput(unittest.TestCase):
    """Bad input stops the run with a message naming the file and the fix, and leaves no quality.csv."""

    def _infer(self, items: list[dict] | None, name: str, output_dir: Path | None = None, raw: str | None = None):
        datalist = self.tmp / f"{name}.json"
        if raw is not None:
            datalist.write_text(raw)
        else:
            datalist.write_text(json.dumps({"testing": items}))
        out = output_dir or self.tmp / f"out_{name}"
        workflow(["inference.json"], self.root, datalist=str(datalist), output_dir=str(out), num_samples=2,
                 device="cpu")
        return out

    def _assert_fails(self, pattern: str, items=None, name="x", output_dir=None, raw=None, error=Exception):
        out = output_dir or self.tmp / f"out_{name}"
        with self.assertRaises(error) as ctx:
            self._infer(items, name, output_dir, raw)
        text = "".join(str(e) for e in causes(ctx.exception))
        self.assertRegex(text, pattern)
        if out.is_dir():
            self.assertFalse((out / "quality.csv").exists())

    def test_missing_image(self):
        self._assert_fails(r"nowhere\.nii\.gz", [{"image": "nowhere.nii.gz"}], "missing")

    def test_corrupt_nifti(self):
        good = (self.tmp / "data" / "case0.nii.gz").read_bytes()
        bad = self.tmp / "data" / "truncated.nii.gz"
        bad.write_bytes(good[: len(good) // 2])
        self._assert_fails(r"truncated\.nii\.gz", [{"image": "data/truncated.nii.gz"}, {"image": "data/case0.nii.gz"}],
                           "corrupt")

    def test_wrong_dimensionality(self):
        vol = self.tmp / "data" / "volume.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros((16, 16, 16), np.float32), np.eye(4)), vol)
        self._assert_fails(r"volume\.nii\.gz has 3 spatial dimensions.*2D", [{"image": "data/volume.nii.gz"}], "dims")

    def test_nan_image(self):
        nan = self.tmp / "data" / "nan.nii.gz"
        nib.save(nib.Nifti1Image(np.full((32, 32), np.nan, np.float32), np.eye(4)), nan)
        self._assert_fails(r"nan\.nii\.gz holds 1024 NaN/Inf", [{"image": "data/nan.nii.gz"}], "nan")

    def test_empty_datalist(self):
        self._assert_fails(r"empty", raw=json.dumps({"testing": [], "training": []}), name="empty")

    def test_unwritable_output_dir(self):
        blocker = self.tmp / "a_file"
        blocker.write_text("not a folder")
        self._assert_fails(r"a_file.*writable", [{"image": "data/case0.nii.gz"}], "unwritable",
                           output_dir=blocker / "out")



if __name__ == "__main__":
    unittest.main()
