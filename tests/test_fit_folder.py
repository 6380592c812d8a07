"""The pieces of a fit that need no workflow: the host network's signature, the calibration minimum, ``fit.json``
checks, the label check and the multi-label (sigmoid) quality transforms, against hand-computed answers."""

from __future__ import annotations

import math
import tempfile
import unittest
import warnings
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.networks.nets import BasicUNet, DiNTS, DynUNet, SegResNet, TopologyInstance, UNet
from parameterized import parameterized

from segq_monai import load_fit, network_signature
from segq_monai.data.fit_folder import write_fit
from segq_monai.calibration.flag import calibrate_selective_threshold, min_flag_cases
from segq_monai.transforms import CheckLabel, FailureFlag, QualityInput, SegmentationQuality


class TestNetworkSignature(unittest.TestCase):
    @parameterized.expand([
        ("unet_2d", lambda: UNet(2, 1, 4, (4, 8), (2,)), (2, 1, 4)),
        ("unet_3d_res", lambda: UNet(3, 2, 3, (4, 8, 16), (2, 2), num_res_units=2, dropout=0.1), (3, 2, 3)),
        ("segresnet_no_spatial_dims", lambda: SegResNet(in_channels=4, out_channels=3, init_filters=8), (3, 4, 3)),
        ("basicunet_2d", lambda: BasicUNet(2, 3, 5, features=(8, 8, 8, 8, 8, 8)), (2, 3, 5)),
        ("dynunet", lambda: DynUNet(3, 1, 2, [3, 3, 3], [1, 2, 2], [2, 2], filters=[4, 8, 16]), (3, 1, 2)),
        ("dints_cells_registered_first", lambda: DiNTS(TopologyInstance(channel_mul=0.25, num_blocks=2, num_depths=2),
                                                       in_channels=1, num_classes=3), (3, 1, 3)),
    ])  # fmt: skip
    def test_signature(self, _, build, expected):
        sig = network_signature(build())
        self.assertEqual((sig["spatial_dims"], sig["in_channels"], sig["out_channels"]), expected)

    def test_no_convolution(self):
        with self.assertRaisesRegex(ValueError, r"no convolution.*--segq#host"):
            network_signature(torch.nn.Linear(3, 2))


class TestMinCalibrationCases(unittest.TestCase):
    @parameterized.expand([(0.1, 0.1, 66), (0.95, 0.5, 2), (0.2, 0.05, 35)])
    def test_value(self, alpha, delta, expected):
        self.assertEqual(min_flag_cases(alpha, delta), expected)
        self.assertEqual(expected, math.ceil(math.log(delta / 101) / math.log(1 - alpha)))

    def test_is_the_fewest_that_can_certify(self):
        n = min_flag_cases(0.1, 0.1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for cases, feasible in ((n, True), (n - 1, False)):  # all perfect: the best a calibration split can be
                result = calibrate_selective_threshold(np.ones(cases), np.ones(cases), tau=0.8, alpha=0.1, delta=0.1)
                self.assertEqual(result.feasible, feasible, cases)


class TestLoadFit(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="segq_fit_json_"))
        self.fit = {
            "host_bundle": {"name": "spleen_like"},
            "host_network": {"spatial_dims": 3, "in_channels": 1, "out_channels": 2},
            "head": {"checkpoint": "quality_head.pt", "quality_keys": ["image", "seg", "entropy"], "channels": [4],
                     "strides": [2], "dropout": 0.2},
            "calibration": {"alpha": 0.1, "delta": 0.1, "tau": 0.8, "acceptance_threshold": None},
            "steps": ["sample", "head", "calibration"],
        }  # fmt: skip

    def test_reads_the_overlay_ids(self):
        write_fit(self.dir, self.fit)
        out = load_fit(self.dir, {"spatial_dims": 3, "in_channels": 1, "out_channels": 2})
        self.assertEqual(out["quality_checkpoint"], str(self.dir / "quality_head.pt"))
        self.assertEqual(out["quality_network"], {"channels": [4], "strides": [2], "dropout": 0.2})
        self.assertEqual(out["acceptance_threshold"], math.inf)  # no certified threshold: every case is flagged
        self.fit["calibration"]["acceptance_threshold"] = 0.73
        write_fit(self.dir, self.fit)
        self.assertEqual(load_fit(self.dir)["acceptance_threshold"], 0.73)
        self.assertEqual(load_fit(None), {})

    def test_ensemble_and_scalars_of_the_head_record(self):
        self.fit["head"].update(members=5, scalars=["pairwise_dice", "foreground_volume"])
        write_fit(self.dir, self.fit)
        self.assertEqual(load_fit(self.dir)["quality_network"], {"channels": [4], "strides": [2], "dropout": 0.2,
                         "members": 5, "scalars": ["pairwise_dice", "foreground_volume"]})  # fmt: skip

    def test_calibration_file(self):
        write_fit(self.dir, self.fit)  # a fit made before intervals: no file, the fixed λ̂ alone
        self.assertIsNone(load_fit(self.dir)["calibration_file"])
        self.fit["calibration"]["file"] = "quality_calibration.json"
        write_fit(self.dir, self.fit)
        with self.assertRaisesRegex(FileNotFoundError, r"records the calibration file quality_calibration.json but "
                                                       r"it is missing; .*--recalibrate"):
            load_fit(self.dir)
        (self.dir / "quality_calibration.json").write_text("{}")
        self.assertEqual(load_fit(self.dir)["calibration_file"], str(self.dir.absolute() / "quality_calibration.json"))

    def test_refuses_another_host(self):
        write_fit(self.dir, self.fit)
        with self.assertRaisesRegex(ValueError, r"'out_channels': 2\} \(bundle 'spleen_like'\).*'out_channels': 4\}"):
            load_fit(self.dir, {"spatial_dims": 3, "in_channels": 1, "out_channels": 4})

    def test_refuses_unfinished_and_missing(self):
        self.fit["steps"] = ["sample"]
        write_fit(self.dir, self.fit)
        with self.assertRaisesRegex(ValueError, r"unfinished \(no head and no calibration yet\)"):
            load_fit(self.dir)
        self.assertEqual(load_fit(self.dir, require=["sample"])["steps"], ["sample"])
        (self.dir / "fit.json").write_text("{")
        with self.assertRaisesRegex(ValueError, r"not valid JSON"):
            load_fit(self.dir)
        with self.assertRaisesRegex(FileNotFoundError, r"not a fit folder"):
            load_fit(self.dir / "nowhere")


class TestCheckLabel(unittest.TestCase):
    def meta(self, array, name, affine=None):
        return MetaTensor(torch.as_tensor(array), affine=torch.eye(4) if affine is None else affine,
                          meta={"filename_or_obj": name})  # fmt: skip

    def test_grid_and_values(self):
        seg = self.meta(np.zeros((1, 4, 4, 3)), "img.nii.gz")
        label = self.meta(np.zeros((1, 4, 4, 3)), "lab.nii.gz")
        check = CheckLabel(3, class_names=["a", "b"])
        self.assertIs(check(label, seg), label)
        with self.assertRaisesRegex(ValueError, r"Label lab.nii.gz does not lie on the grid of its image img.nii.gz"):
            check(self.meta(np.zeros((1, 4, 4, 2)), "lab.nii.gz"), seg)
        with self.assertRaisesRegex(ValueError, r"label affine"):
            check(self.meta(np.zeros((1, 4, 4, 3)), "lab.nii.gz", torch.diag(torch.tensor([2.0, 1, 1, 1]))), seg)
        bad = np.zeros((1, 4, 4, 3))
        bad[0, 0, 0, 0] = 5
        with self.assertRaisesRegex(ValueError, r"values \[0, 5\]\) .*class indices 0..2 \(background, a, b\)"):
            check(self.meta(bad, "lab.nii.gz"), seg)
        with self.assertRaisesRegex(ValueError, r"3 channels of 0/1 masks"):
            CheckLabel(3, multi_label=True)(self.meta(np.zeros((1, 4, 4, 3)), "lab.nii.gz"), seg)


class TestMultiLabel(unittest.TestCase):
    def test_segmentation_quality_per_channel(self):
        seg = torch.zeros(2, 4, 4)
        label = torch.zeros(2, 4, 4)
        seg[0, :2] = 1  # 8 voxels
        label[0, :1] = 1  # 4 voxels, all inside: Dice 2*4/12, IoU 4/8
        label[1, 0, 0] = 1  # channel 1: empty seg, one label voxel: 0
        dice, iou = SegmentationQuality(2, multi_label=True)(seg, label)
        np.testing.assert_allclose(dice, [2 / 3, 0.0], atol=1e-6)
        np.testing.assert_allclose(iou, [0.5, 0.0], atol=1e-6)

    def test_quality_input_keeps_masks(self):
        image, seg, entropy = torch.rand(1, 4, 4), torch.randint(0, 2, (3, 4, 4)), torch.rand(1, 4, 4)
        x = QualityInput(3, multi_label=True)(image, seg, entropy)
        self.assertEqual(tuple(x.shape), (5, 4, 4))
        torch.testing.assert_close(x[1:4], seg.float())
        with self.assertRaisesRegex(ValueError, r"must hold 3 masks"):
            QualityInput(3, multi_label=True)(image, seg[:2], entropy)

    def test_failure_flag_inf_flags_all(self):
        self.assertTrue(bool(FailureFlag(math.inf)(torch.tensor([1.0]))))
        with self.assertRaises(ValueError):
            FailureFlag(1.5)


if __name__ == "__main__":
    unittest.main()
