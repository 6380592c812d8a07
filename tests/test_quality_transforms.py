"""Tests for segq_monai.transforms.quality: true quality, the stage-2 input stack, flags, predicted quality."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from parameterized import parameterized

from segq_monai.metrics.quality import segmentation_quality
from segq_monai.networks import QualityRegressor
from segq_monai.transforms.quality import (
    FailureFlag,
    FailureFlagD,
    FailureFlagd,
    PredictQuality,
    PredictQualityd,
    QualityInput,
    QualityInputd,
    QualityInputDict,
    SegmentationQuality,
    SegmentationQualityd,
    quality_input_channels,
)

NUM_CLASSES = 3
SEG = torch.tensor([[[0, 1, 2], [2, 1, 0]]])  # [1, 2, 3]
LABEL = torch.tensor([[[0, 1, 1], [2, 2, 0]]])


def _case() -> dict:
    """One 2D case: 2-channel image, 3-class seg, entropy, 3-channel variance, all [C, 2, 3]."""
    return {
        "image": torch.arange(12, dtype=torch.float32).reshape(2, 2, 3),
        "seg": SEG.clone(),
        "entropy": torch.full((1, 2, 3), 0.5),
        "variance": torch.full((3, 2, 3), 0.1),
    }


class TestSegmentationQuality(unittest.TestCase):
    def test_array_and_dict_agree_with_core(self):
        dice, iou = SegmentationQuality(NUM_CLASSES)(SEG, LABEL)
        ref_d, ref_j = segmentation_quality(SEG, LABEL, NUM_CLASSES)
        torch.testing.assert_close(dice, ref_d)
        torch.testing.assert_close(iou, ref_j)
        # class 1: seg {1,4}, label {1,2} -> 2/4; class 2: seg {2,3}, label {3,4} -> 2/4
        np.testing.assert_allclose(dice, [0.5, 0.5])
        out = SegmentationQualityd(NUM_CLASSES)({"seg": SEG, "label": LABEL})
        torch.testing.assert_close(out["true_dice"], dice)
        torch.testing.assert_close(out["true_iou"], iou)

    def test_custom_keys(self):
        t = SegmentationQualityd(NUM_CLASSES, keys=("s", "l"), dice_key="D", iou_key="J")
        out = t({"s": SEG, "l": SEG})
        np.testing.assert_allclose(out["D"], [1.0, 1.0])
        np.testing.assert_allclose(out["J"], [1.0, 1.0])

    def test_missing_label(self):
        unlabelled = {"seg": SEG}
        self.assertEqual(SegmentationQualityd(NUM_CLASSES, allow_missing_keys=True)(unlabelled).keys(), {"seg"})
        with self.assertRaises(KeyError):
            SegmentationQualityd(NUM_CLASSES)(unlabelled)

    def test_same_affine_accepted(self):
        affine = torch.diag(torch.tensor([2.0, 2.0, 1.0, 1.0]))
        dice, _ = SegmentationQuality(NUM_CLASSES)(MetaTensor(SEG, affine=affine), MetaTensor(LABEL, affine=affine))
        self.assertNotIsInstance(dice, MetaTensor)
        np.testing.assert_allclose(dice, [0.5, 0.5])

    def test_different_affines_raise(self):
        shifted = torch.eye(4)
        shifted[0, 3] = 5.0
        seg, label = MetaTensor(SEG, affine=torch.eye(4)), MetaTensor(LABEL, affine=shifted)
        with self.assertRaisesRegex(ValueError, "different grids"):
            SegmentationQuality(NUM_CLASSES)(seg, label)
        with self.assertRaisesRegex(ValueError, "different grids"):
            SegmentationQualityd(NUM_CLASSES)({"seg": seg, "label": label})


# (variant, keys, channels): image 2 channels, seg one-hot 3, entropy 1
VARIANTS = [
    ("image_only", ["image"], 2),
    ("image_seg", ["image", "seg"], 2 + 3),
    ("seg_uncertainty", ["seg", "entropy"], 3 + 1),
    ("image_seg_uncertainty", ["image", "seg", "entropy"], 2 + 3 + 1),
    ("with_variance", ["image", "seg", "entropy", "variance"], 2 + 3 + 1 + 3),
]


class TestQualityInput(unittest.TestCase):
    def test_stack_order_and_one_hot(self):
        d = _case()
        out = QualityInputd(["image", "seg", "entropy"], NUM_CLASSES)(d)["quality_input"]
        self.assertEqual(tuple(out.shape), (6, 2, 3))
        self.assertEqual(out.dtype, torch.float32)
        torch.testing.assert_close(out[:2], d["image"])
        for c in range(NUM_CLASSES):
            torch.testing.assert_close(out[2 + c], (SEG[0] == c).float())
        torch.testing.assert_close(out[2:5].sum(0), torch.ones(2, 3))
        torch.testing.assert_close(out[5:], d["entropy"])

    def test_order_follows_keys(self):
        d = _case()
        out = QualityInputd(["entropy", "seg"], NUM_CLASSES)(d)["quality_input"]
        torch.testing.assert_close(out[0:1], d["entropy"])
        torch.testing.assert_close(out[1 + 2], (SEG[0] == 2).float())

    @parameterized.expand(VARIANTS)
    def test_variant_channels(self, _, keys, channels):
        out = QualityInputDict(keys, NUM_CLASSES, output_key="x")(_case())["x"]
        self.assertEqual(out.shape[0], channels)
        self.assertEqual(
            quality_input_channels(keys, NUM_CLASSES, image_channels=2, map_channels={"variance": 3}), channels
        )

    def test_array_transform_matches_dict(self):
        d = _case()
        ref = QualityInputd(["image", "seg", "entropy", "variance"], NUM_CLASSES)(d)["quality_input"]
        torch.testing.assert_close(QualityInput(NUM_CLASSES)(d["image"], d["seg"], d["entropy"], d["variance"]), ref)
        no_image = QualityInput(NUM_CLASSES)(None, d["seg"], d["entropy"])
        torch.testing.assert_close(no_image, QualityInputd(["seg", "entropy"], NUM_CLASSES)(d)["quality_input"])

    def test_numpy_and_meta_inputs(self):
        d = {k: v.numpy() for k, v in _case().items()}
        out = QualityInputd(["image", "seg"], NUM_CLASSES)(d)["quality_input"]
        self.assertEqual(tuple(out.shape), (5, 2, 3))
        meta = MetaTensor(_case()["image"], affine=torch.eye(4) * 2)
        out = QualityInput(NUM_CLASSES)(meta, SEG)
        self.assertIsInstance(out, MetaTensor)
        torch.testing.assert_close(out.affine, meta.affine)

    def test_default_channel_counts(self):
        self.assertEqual(quality_input_channels(["image", "seg", "entropy"], num_classes=2), 4)
        self.assertEqual(quality_input_channels(("seg", "entropy", "mutual_information"), 4, map_channels=1), 6)

    @parameterized.expand(
        [
            ("spatial_mismatch", {"entropy": torch.zeros(1, 3, 3)}, ["seg", "entropy"], r"seg \(2, 3\), entropy"),
            ("seg_out_of_range", {"seg": torch.full((1, 2, 3), 3)}, ["seg"], r"values \[3\]"),
            ("seg_not_index_map", {"seg": torch.zeros(3, 2, 3)}, ["seg"], r"argmax"),
            ("missing_key", {}, ["image", "agreement"], r"\['agreement'\]"),
            ("no_channel_dim", {"entropy": torch.zeros(2, 3)}, ["entropy"], r"channel-first"),
        ]
    )
    def test_errors(self, _, update, keys, pattern):
        d = {**_case(), **update}
        with self.assertRaisesRegex(ValueError, pattern):
            QualityInputd(keys, NUM_CLASSES)(d)


class TestFailureFlag(unittest.TestCase):
    @parameterized.expand(
        [
            ("all_good", [0.9, 0.85], 0.8, False),
            ("one_bad", [0.9, 0.7], 0.8, True),
            ("at_threshold_not_flagged", [0.8], 0.8, False),
            ("strict_threshold", [0.85], 0.9, True),
        ]
    )
    def test_flag(self, _, pred_dice, tau, expected):
        out = FailureFlagd(acceptance_threshold=tau)({"pred_dice": torch.tensor(pred_dice)})
        self.assertEqual(out["flagged"].dtype, torch.bool)
        self.assertEqual(tuple(out["flagged"].shape), ())
        self.assertEqual(bool(out["flagged"]), expected)

    def test_batch_and_keys(self):
        flags = FailureFlag(0.5)(np.array([[0.9, 0.6], [0.4, 0.9]]))
        np.testing.assert_array_equal(flags.numpy(), [False, True])
        out = FailureFlagD(keys="q", acceptance_threshold=0.5, output_key="f")({"q": torch.tensor([0.3])})
        self.assertTrue(bool(out["f"]))

    def test_several_keys_and_missing(self):
        flag = FailureFlagd(keys=["a", "b"], acceptance_threshold=0.5, allow_missing_keys=True)
        self.assertTrue(bool(flag({"a": torch.tensor([0.9]), "b": torch.tensor([0.4])})["flagged"]))
        self.assertFalse(bool(flag({"a": torch.tensor([0.9])})["flagged"]))
        self.assertNotIn("flagged", flag({}))

    def test_bad_threshold(self):
        with self.assertRaisesRegex(ValueError, "acceptance_threshold"):
            FailureFlag(1.5)


class _FixedDice(torch.nn.Module):
    """A stand-in regressor whose output is a given Dice vector, whatever the input."""

    def __init__(self, dice: list[float]) -> None:
        super().__init__()
        self.dice = torch.nn.Parameter(torch.tensor(dice))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dice.expand(x.shape[0], -1)


class TestPredictQuality(unittest.TestCase):
    def test_iou_from_dice(self):
        out = PredictQualityd(_FixedDice([0.0, 0.4, 2 / 3, 1.0]))({"quality_input": torch.rand(3, 8, 8)})
        torch.testing.assert_close(out["pred_dice"], torch.tensor([0.0, 0.4, 2 / 3, 1.0]))
        torch.testing.assert_close(out["pred_iou"], torch.tensor([0.0, 0.25, 0.5, 1.0]))

    def test_matches_true_iou_of_masks(self):
        rng = np.random.default_rng(2)
        seg, label = rng.integers(0, 4, (1, 10, 10)), rng.integers(0, 4, (1, 10, 10))
        dice, iou = segmentation_quality(seg, label, 4)
        _, pred_iou, sd = PredictQuality(_FixedDice(dice.tolist()))(torch.rand(1, 10, 10))
        self.assertIsNone(sd)
        torch.testing.assert_close(pred_iou, iou)

    def test_runs_the_regressor_in_eval_mode_and_restores_it(self):
        net = QualityRegressor(2, 3, 2, channels=(4, 8), strides=(2, 2), dropout=0.5)
        net.train()
        x = torch.rand(3, 16, 16)
        dice, _, _ = PredictQuality(net)(x)
        self.assertTrue(net.training)
        net.eval()
        with torch.no_grad():
            torch.testing.assert_close(dice, net(x[None])[0])

    def test_custom_keys(self):
        out = PredictQualityd(_FixedDice([0.8]), keys="q", dice_key="d", iou_key="j")({"q": torch.rand(1, 4, 4)})
        torch.testing.assert_close(out["j"], torch.tensor([2 / 3]))

    def test_missing_input(self):
        self.assertEqual(PredictQualityd(_FixedDice([0.8]), allow_missing_keys=True)({"x": 1}), {"x": 1})
        with self.assertRaisesRegex(ValueError, "one key"):
            PredictQualityd(_FixedDice([0.8]), keys=["a", "b"])

    def test_out_of_range(self):
        with self.assertRaisesRegex(ValueError, r"\[0, 1\]"):
            PredictQuality(_FixedDice([1.2]))(torch.rand(1, 4, 4))


class TestHeadSpread(unittest.TestCase):
    """``num_samples``: the head's MC-dropout spread, against passes made by hand."""

    @parameterized.expand([(5, 3), (20, 0)])
    def test_sd_is_the_std_of_dropout_passes_by_hand(self, num_samples, seed):
        net = QualityRegressor(2, 3, 2, channels=(4, 8), strides=(2, 2), dropout=0.5)
        net.train()
        x = torch.rand(3, 16, 16)
        state = torch.get_rng_state()
        dice, iou, sd = PredictQuality(net, num_samples=num_samples, seed=seed)(x)
        torch.testing.assert_close(torch.get_rng_state(), state)  # the caller's random state is left as it was
        self.assertTrue(net.training and all(m.training for m in net.modules()))  # modes restored
        # by hand: eval mode for the point prediction; then eval mode with the dropout layers in train mode
        net.eval()
        with torch.no_grad():
            point = net(x[None])[0]
            for m in net.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.train()
            torch.manual_seed(seed)  # the K passes run as one batch of K copies, each with its own dropout masks
            passes = net(x[None].expand(num_samples, *x.shape)).numpy().astype(np.float64)
        torch.testing.assert_close(dice, point)  # unchanged by the passes
        torch.testing.assert_close(iou, point / (2 - point))
        self.assertEqual(tuple(sd.shape), (2,))
        np.testing.assert_allclose(sd.numpy(), passes.std(axis=0), rtol=1e-5, atol=1e-7)
        self.assertTrue(np.all(passes.std(axis=0) > 0))  # dropout 0.5 does spread the passes
        again = PredictQuality(net, num_samples=num_samples, seed=seed)(x)[2]
        torch.testing.assert_close(again, sd)  # seeded: the same spread every time

    def test_dict_twin_writes_the_spread(self):
        net = QualityRegressor(2, 3, 1, channels=(4, 8), strides=(2, 2), dropout=0.2)
        x = torch.rand(3, 16, 16)
        plain = PredictQualityd(net)({"quality_input": x})
        self.assertNotIn("pred_dice_sd", plain)
        out = PredictQualityd(net, num_samples=4, seed=1)({"quality_input": x})
        torch.testing.assert_close(out["pred_dice"], plain["pred_dice"])
        torch.testing.assert_close(out["pred_dice_sd"], PredictQuality(net, 4, 1)(x)[2])

    def test_refuses_a_head_without_dropout(self):
        net = QualityRegressor(2, 3, 1, channels=(4, 8), strides=(2, 2), dropout=0.0)
        with self.assertRaisesRegex(ValueError, "no dropout module with p > 0; set num_samples=0"):
            PredictQuality(net, num_samples=20)
        self.assertIsNone(PredictQuality(net, num_samples=0)(torch.rand(3, 16, 16))[2])
        with self.assertRaisesRegex(ValueError, r"num_samples is 0 \(no spread\) or .* \(>= 2\), got 1"):
            PredictQuality(net, num_samples=1)


class TestOneSource(unittest.TestCase):
    def test_variants_and_samplers_come_from_their_constants(self):
        import json

        from segq_monai import PLAIN_NETWORK_SAMPLERS, PLAIN_NETWORK_VARIANTS, QUALITY_VARIANTS, SAMPLERS
        from segq_monai.apps import demo
        from segq_testing import REPO

        for name in ("inference.json", "train_quality.json"):
            config = json.loads((REPO / "bundle" / "configs" / name).read_text())
            self.assertEqual(config["quality_variants"], "$segq_monai.QUALITY_VARIANTS", name)
        self.assertEqual(QUALITY_VARIANTS["image_seg_entropy"], ("image", "seg", "entropy"))
        self.assertEqual(set(demo.VARIANTS), set(PLAIN_NETWORK_VARIANTS))
        self.assertNotIn("image_seg_confidence", PLAIN_NETWORK_VARIANTS)
        self.assertEqual(set(PLAIN_NETWORK_SAMPLERS), set(SAMPLERS) - {"aleatoric"})


if __name__ == "__main__":
    unittest.main()
