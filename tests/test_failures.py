"""Synthetic segmentation failures: each kind alone on a hand-built case (hand-computed Dice and geometry), exact
Dice/IoU/entropy of the returned case, a flat spread of achieved Dice, 2D and 3D, seeding, pass-through and counted
skips, and the stage-2 input path."""

from __future__ import annotations

import unittest
import warnings

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from parameterized import parameterized
from scipy import ndimage

from segq_monai import FAILURE_KINDS, QualityInputd, SegmentationFailure, SegmentationFailured, soft_one_hot
from segq_monai.transforms import SegmentationFailureD, SegmentationFailureDict, corrupt_prob, morph_prob
from segq_monai.transforms import FAILURE_KIND_REGISTRY, translate_prob
from segq_monai.transforms.failure_kinds import FailureTarget, UnusableCase, failure_function
from segq_monai.transforms.failure_maps import equivalent_radius


# ------------------------------------------------------------------------------------- numpy references
def np_dice_iou(seg: np.ndarray, label: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Dice and IoU per foreground class; two empty masks score 1, an empty against a non-empty one 0."""
    dice, iou = [], []
    for k in range(1, num_classes):
        a, b = seg == k, label == k
        inter, total, union = (a & b).sum(), a.sum() + b.sum(), (a | b).sum()
        dice.append(1.0 if total == 0 else 2.0 * inter / total)
        iou.append(1.0 if union == 0 else inter / union)
    return np.array(dice), np.array(iou)


def np_entropy(p: np.ndarray) -> np.ndarray:
    """Categorical entropy in nats over axis 0, ``0 log 0 = 0``, keeping a channel axis."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(0, keepdims=True)


def ellipse(shape, centre, radii) -> np.ndarray:
    g = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return sum(((x - c) / r) ** 2 for x, c, r in zip(g, centre, radii)) <= 1.0


def binary_2d(size: int = 64) -> np.ndarray:
    lab = np.zeros((1, size, size), np.int64)
    lab[0][ellipse((size, size), (30, 34), (20, 16))] = 1
    return lab


def three_class_2d() -> np.ndarray:
    """Two touching objects (classes 1, 2) and a separate second component of class 1."""
    lab = np.zeros((1, 64, 64), np.int64)
    lab[0][ellipse((64, 64), (24, 24), (14, 12))] = 1
    lab[0][ellipse((64, 64), (26, 42), (12, 9))] = 2
    lab[0][ellipse((64, 64), (52, 50), (5, 6))] = 1
    return lab


def three_class_3d() -> np.ndarray:
    lab = np.zeros((1, 24, 24, 24), np.int64)
    lab[0][ellipse((24,) * 3, (10, 11, 12), (7, 6, 6))] = 1
    lab[0][ellipse((24,) * 3, (14, 16, 11), (5, 5, 6))] = 2
    return lab


def realistic_prob(label: np.ndarray, num_classes: int, seed: int = 0) -> torch.Tensor:
    """A stage-1-like output: the label's one-hot map, elastically warped a little and blurred (sigma 2.5)."""
    rng = np.random.RandomState(seed)
    field = [ndimage.gaussian_filter(rng.normal(size=label.shape[1:]), 6) for _ in range(label.ndim - 1)]
    field = [3.0 * f / np.abs(f).max() for f in field]
    grid = np.meshgrid(*[np.arange(n, dtype=float) for n in label.shape[1:]], indexing="ij")
    warped = ndimage.map_coordinates(label[0], [g + f for g, f in zip(grid, field)], order=0, mode="nearest")
    return soft_one_hot(warped[None], num_classes, sigma=2.5)


def check_case(test: unittest.TestCase, case, label: np.ndarray, num_classes: int) -> None:
    """The returned case is exactly what its probabilities say: seg = argmax, entropy = H(prob), Dice of seg."""
    p = case.prob.numpy().astype(np.float64)
    test.assertEqual(case.prob.dtype, torch.float32)
    test.assertEqual(tuple(case.prob.shape), (num_classes,) + label.shape[1:])
    test.assertTrue((p >= 0).all())
    np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(case.seg.numpy(), case.prob.numpy().argmax(0)[None])
    np.testing.assert_allclose(case.entropy.numpy(), np_entropy(p), atol=1e-5)
    dice, iou = np_dice_iou(case.seg.numpy()[0].astype(np.int64), label[0], num_classes)
    np.testing.assert_allclose(case.dice.numpy(), dice, atol=1e-6)
    np.testing.assert_allclose(case.iou.numpy(), iou, atol=1e-6)
    test.assertEqual(tuple(case.dice.shape), (num_classes - 1,))


class TestGeometry(unittest.TestCase):
    @parameterized.expand([((2, 0), 0.8, 80 / 120), ((0, -3), 0.7, 70 / 130), ((2, 2), 0.64, 64 / 136)])
    def test_shifted_square(self, offset, dice, iou):
        lab = np.zeros((1, 32, 32), np.int64)
        lab[0, 10:20, 10:20] = 1  # side 10: overlap after (dy, dx) is (10-|dy|)(10-|dx|) of 100 + 100
        q = translate_prob(soft_one_hot(lab, 2, sigma=0.0).numpy().astype(np.float64), offset)
        d, i = np_dice_iou(q.argmax(0), lab[0], 2)
        np.testing.assert_allclose(d, [dice])
        np.testing.assert_allclose(i, [iou])

    @parameterized.expand([(False, 15, 5, 10), (True, 15, 5, 20), (False, 20, 8, 12), (True, 12, 6, 18)])
    def test_disk_eroded_or_dilated(self, dilate, radius, r, new_radius):
        """A disk of radius R eroded (dilated) by a ball of radius r is a disk of radius R - r (R + r): Dice
        ``2 min(R, R')^2 / (R^2 + R'^2)`` up to the pixel grid."""
        lab = ellipse((64, 64), (32, 32), (radius, radius)).astype(np.int64)[None]
        q = morph_prob(soft_one_hot(lab, 2, sigma=0.0).numpy().astype(np.float64), 1, float(r), dilate)
        d, _ = np_dice_iou(q.argmax(0), lab[0], 2)
        small, big = min(radius, new_radius), max(radius, new_radius)
        np.testing.assert_allclose(d, [2 * small**2 / (small**2 + big**2)], atol=0.02)

    @parameterized.expand([(True, 2.0), (True, 3.5), (False, 2.0), (False, 4.0)])
    def test_morph_equals_scipy_grey_morphology(self, dilate, radius):
        """On a map whose values lie on the decomposition's levels, the result is scipy's grey dilation/erosion
        with a ball footprint."""
        rng = np.random.RandomState(0)
        smooth = ndimage.gaussian_filter(rng.uniform(size=(40, 40)), 3)
        q = (np.floor(16 * (smooth - smooth.min()) / (np.ptp(smooth) + 1e-9)) + 0.5) / 16  # on the 16 levels
        prob = np.stack([1 - q, q])
        r = int(np.ceil(radius))
        ball = ellipse((2 * r + 1,) * 2, (r, r), (radius + 1e-9,) * 2)
        ref = (
            ndimage.grey_dilation(q, footprint=ball, mode="constant", cval=0.0)
            if dilate
            else ndimage.grey_erosion(q, footprint=ball, mode="constant", cval=1.0)
        )
        out = morph_prob(prob, 1, radius, dilate)
        np.testing.assert_allclose(out[1], ref, atol=1e-12)
        np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-12)

    @parameterized.expand([(k,) for k in FAILURE_KINDS])
    def test_severity_zero_is_identity_and_one_hurts(self, kind):
        lab = three_class_2d()
        prob = soft_one_hot(lab, 3, sigma=1.0)
        np.testing.assert_allclose(corrupt_prob(prob, lab, kind, 0.0, 3, seed=1).numpy(), prob.numpy(), atol=1e-6)
        d1, _ = np_dice_iou(corrupt_prob(prob, lab, kind, 1.0, 3, seed=1).numpy().argmax(0), lab[0], 3)
        self.assertLess(d1.mean(), 0.9, kind)


def failure_target(label: np.ndarray, num_classes: int, cls: int, seed: int = 0) -> FailureTarget:
    """The hard one-hot map of ``label`` as a kind's target, class ``cls`` chosen here (not drawn)."""
    prob = soft_one_hot(label, num_classes, sigma=0.0).numpy().astype(np.float64)
    seg = prob.argmax(0)
    mask = seg == cls
    return FailureTarget(prob, seg, cls, mask, equivalent_radius(mask), num_classes, np.random.RandomState(seed))


def disk(size: int, centre, radius: float) -> np.ndarray:
    return ellipse((size, size), centre, (radius, radius)).astype(np.int64)[None]


class TestEachKind(unittest.TestCase):
    """Each kind of ``FAILURE_KIND_REGISTRY`` alone, on hard one-hot maps whose answer is known by hand. A disk of
    radius 10 holds 317 pixels and one of radius 5 holds 81 (Gauss circle counts)."""

    def kind(self, name: str, target: FailureTarget):
        return FAILURE_KIND_REGISTRY[name].corrupt(target)

    def test_registry(self):
        self.assertEqual(FAILURE_KINDS, ("erode", "dilate", "shift", "affine", "hole", "remove_component",
                                         "spurious_component", "boundary_noise", "class_swap"))  # fmt: skip
        self.assertEqual({k: v.min_classes for k, v in FAILURE_KIND_REGISTRY.items() if v.min_classes != 2},
                         {"class_swap": 3})  # fmt: skip

    def test_erode(self):
        """The disk's centre lies sqrt(101) pixels from the background (pixel (1, 10) is the nearest outside):
        severity 1 erodes with radius sqrt(101) + 1 (all of it), severity 0.5 with half of that."""
        lab = disk(64, (32, 32), 10)
        t = failure_target(lab, 2, 1)
        self.assertEqual(int(t.mask.sum()), 317)
        fn = self.kind("erode", t)
        np.testing.assert_array_equal(fn(0.5), morph_prob(t.prob, 1, (np.sqrt(101) + 1) / 2, dilate=False))
        self.assertEqual(int((fn(1.0).argmax(0) == 1).sum()), 0)

    def test_dilate(self):
        """Radius ``s (2 r + 1)`` with ``r = sqrt(317 / pi)``: severity 0.5 grows the disk to radius about 20.5,
        Dice ``2 x 10^2 / (10^2 + 20.5^2)``."""
        lab = disk(64, (32, 32), 10)
        fn = self.kind("dilate", failure_target(lab, 2, 1))
        radius = 0.5 * (2 * np.sqrt(317 / np.pi) + 1)
        np.testing.assert_array_equal(fn(0.5), morph_prob(soft_one_hot(lab, 2, 0.0).numpy().astype(np.float64), 1,
                                                          radius, dilate=True))  # fmt: skip
        d, _ = np_dice_iou(fn(0.5).argmax(0), lab[0], 2)
        np.testing.assert_allclose(d, [2 * 100 / (100 + 20.5**2)], atol=0.02)

    @parameterized.expand([(0,), (1,), (2,)])
    def test_shift(self, seed):
        """A 10 x 10 square moves by ``s (10 |u_0| + 10 |u_1| + 1)`` along the unit direction ``u`` of its move;
        at severity 1 it leaves its old place (Dice 0)."""
        lab = np.zeros((1, 64, 64), np.int64)
        lab[0, 27:37, 27:37] = 1
        fn = self.kind("shift", failure_target(lab, 2, 1, seed))
        moved = ndimage.center_of_mass(fn(0.5).argmax(0) == 1)
        step = np.subtract(moved, ndimage.center_of_mass(lab[0]))
        u = step / np.linalg.norm(step)
        self.assertAlmostEqual(np.linalg.norm(step), 0.5 * (10 * np.abs(u).sum() + 1), delta=0.75)
        np.testing.assert_array_equal(np_dice_iou(fn(1.0).argmax(0), lab[0], 2)[0], [0.0])

    @parameterized.expand([(0,), (1,)])
    def test_affine(self, seed):
        """Rotation, scale and shear about the image centre: a disk centred there stays centred (pixel (31.5,
        31.5) of 64 x 64), and changes its area."""
        lab = disk(64, (31.5, 31.5), 10)
        out = self.kind("affine", failure_target(lab, 2, 1, seed))(1.0)
        np.testing.assert_allclose(ndimage.center_of_mass(out[1]), (31.5, 31.5), atol=0.5)
        np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-12)
        self.assertNotEqual(int((out.argmax(0) == 1).sum()), int(lab.sum()))

    def test_hole(self):
        """Severity 1 moves all of class 1 to the background; class 2 is untouched: Dice (0, 1)."""
        lab = three_class_2d()
        out = self.kind("hole", failure_target(lab, 3, 1))(1.0)
        np.testing.assert_array_equal(np_dice_iou(out.argmax(0), lab[0], 3)[0], [0.0, 1.0])
        np.testing.assert_array_equal(out[2], soft_one_hot(lab, 3, 0.0).numpy()[2])

    def test_class_swap(self):
        """Severity 1 moves class 1 (A) to class 2 (B), the only other foreground class: Dice (0, 2|B| / (|A| +
        2|B|)); on a binary task the kind cannot act."""
        lab = three_class_2d()
        a, b = int((lab == 1).sum()), int((lab == 2).sum())
        out = self.kind("class_swap", failure_target(lab, 3, 1))(1.0)
        np.testing.assert_allclose(np_dice_iou(out.argmax(0), lab[0], 3)[0], [0.0, 2 * b / (a + 2 * b)])
        binary = disk(64, (32, 32), 10)
        with self.assertRaisesRegex(UnusableCase, "class_swap needs >= 2 foreground classes"):
            failure_function(soft_one_hot(binary, 2).numpy().astype(np.float64), binary[0], "class_swap", 2)

    @parameterized.expand([(0,), (1,), (2,), (3,)])
    def test_remove_component(self, seed):
        """Two disks of class 1 (317 and 81 pixels): severity 1 removes one whole, Dice ``2 x 317 / 715`` or
        ``2 x 81 / 479``."""
        lab = disk(64, (20, 20), 10) + disk(64, (48, 48), 5)
        out = self.kind("remove_component", failure_target(lab, 2, 1, seed))(1.0)
        d = float(np_dice_iou(out.argmax(0), lab[0], 2)[0][0])
        self.assertTrue(np.isclose(d, 2 * 317 / 715) or np.isclose(d, 2 * 81 / 479), d)

    @parameterized.expand([(0,), (1,)])
    def test_spurious_component(self, seed):
        """Class 1 keeps every pixel it had and gains a blob around a background pixel at least max(2, r / 4) = 2
        pixels from it (``r = sqrt(81 / pi)``)."""
        lab = disk(64, (14, 14), 5)
        out = self.kind("spurious_component", failure_target(lab, 2, 1, seed))(1.0)
        seg = out.argmax(0) == 1
        self.assertTrue(seg[lab[0] == 1].all())
        gained = seg & (ndimage.distance_transform_edt(lab[0] == 0) >= 2)
        self.assertGreater(int(gained.sum()), 0)

    @parameterized.expand([(0,), (1,)])
    def test_boundary_noise(self, seed):
        """Every pixel reads the map at most ``s r`` pixels away (``r = sqrt(317 / pi)``): pixels farther than that
        (+ 1.5 for the interpolation) from the disk's edge keep their class, and some pixel near the edge changes."""
        lab = disk(64, (32, 32), 10)
        s = 0.3
        out = self.kind("boundary_noise", failure_target(lab, 2, 1, seed))(s)
        rho = np.hypot(*np.meshgrid(np.arange(64) - 32.0, np.arange(64) - 32.0, indexing="ij"))
        far = np.abs(rho - 10) > s * np.sqrt(317 / np.pi) + 1.5
        np.testing.assert_array_equal(out.argmax(0)[far], lab[0][far])
        self.assertGreater(int((out.argmax(0) != lab[0]).sum()), 0)


class TestSegmentationFailure(unittest.TestCase):
    @parameterized.expand([(k,) for k in FAILURE_KINDS])
    def test_each_kind_returns_exact_quality_2d(self, kind):
        lab = three_class_2d()
        for source in (soft_one_hot(lab, 3, 1.0), realistic_prob(lab, 3).numpy()):
            t = SegmentationFailure(3, kinds=[kind], dice_range=(0.65, 0.85)).set_random_state(2)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                case = t(source, lab)
            self.assertEqual(case.kind, kind, t.skipped)
            self.assertLessEqual(abs(float(case.dice.mean()) - case.target), t.tolerance)
            check_case(self, case, lab, 3)

    @parameterized.expand([(k,) for k in FAILURE_KINDS])
    def test_each_kind_3d(self, kind):
        lab = three_class_3d()
        t = SegmentationFailure(3, kinds=[kind], dice_range=(0.7, 0.9)).set_random_state(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            case = t(soft_one_hot(lab, 3), torch.as_tensor(lab))  # numpy or torch inputs
        self.assertEqual(case.kind, kind, t.skipped)
        check_case(self, case, lab, 3)

    @parameterized.expand([("ground truth", None), ("blurred prob", 0)])
    @pytest.mark.slow
    def test_flat_spread_of_achieved_dice(self, _, prob_seed):
        lab = binary_2d()
        source = soft_one_hot(lab, 2, 1.0) if prob_seed is None else realistic_prob(lab, 2, prob_seed)
        t = SegmentationFailure(2).set_random_state(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cases = [t(source, lab) for _ in range(200)]
        achieved = np.array([float(c.dice[0]) for c in cases])
        error = np.abs(achieved - np.array([c.target for c in cases]))
        counts, _ = np.histogram(achieved, bins=10, range=(0.0, 1.0))
        self.assertGreaterEqual(counts.min(), 10, counts)  # every decile bin holds >= 5 % of the 200 draws
        self.assertLess(np.median(error), 0.01)
        self.assertGreaterEqual((error <= 0.05).mean(), 0.85 if prob_seed is not None else 0.95)
        self.assertGreater(len({c.kind for c in cases}), 5)

    def test_same_seed_same_outputs(self):
        lab = three_class_2d()
        data = {"label": lab, "prob": realistic_prob(lab, 3)}
        a, b = (SegmentationFailured(3, prob=0.8).set_random_state(5) for _ in range(2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(6):
                da, db = a(data), b(dict(data))
                self.assertEqual(da["failure"], db["failure"])
                for key in ("prob", "seg", "entropy", "true_dice", "true_iou") if da["failure"] else ():
                    np.testing.assert_array_equal(da[key].numpy(), db[key].numpy())

    def test_pass_through_when_prob_zero(self):
        """A case not drawn is the real case as loaded: its own seg, maps and Dice (here: stand-in values)."""
        lab = binary_2d()
        real = {"label": lab, "prob": realistic_prob(lab, 2), "seg": "seg.nii.gz", "entropy": "e", "true_dice": [0.3]}
        d = SegmentationFailured(2, prob=0.0, source="label").set_random_state(0)(dict(real))
        self.assertEqual(d, {**real, "failure": ""})

    def test_original_entropy_kept_when_entropy_key_none(self):
        lab = binary_2d()
        d = SegmentationFailured(2, entropy_key=None).set_random_state(1)(
            {"label": lab, "prob": realistic_prob(lab, 2), "entropy": "the uncorrupted map"})
        self.assertNotEqual(d["failure"], "")
        self.assertEqual(d["entropy"], "the uncorrupted map")
        np.testing.assert_array_equal(d["seg"].numpy(), d["prob"].numpy().argmax(0)[None])

    def test_empty_label_is_skipped_with_warning(self):
        lab = np.zeros((1, 32, 32), np.int64)
        t = SegmentationFailured(2, source="label").set_random_state(0)
        with self.assertWarnsRegex(UserWarning, "empty_label"):
            d = t({"label": lab})
        self.assertEqual(d["failure"], "")
        self.assertEqual(t.skipped["empty_label"], 1)
        self.assertEqual(d, {"label": lab, "failure": ""})  # passed through as it came

    def test_class_swap_on_binary_task_is_skipped(self):
        lab = binary_2d()
        t = SegmentationFailure(2, kinds=["class_swap"]).set_random_state(0)
        with self.assertWarnsRegex(UserWarning, "needs_two_foreground_classes"):
            case = t(soft_one_hot(lab, 2), lab)
        self.assertEqual(case.kind, "")
        self.assertEqual(t.skipped["class_swap:needs_two_foreground_classes"], 1)
        self.assertEqual(t.skipped["pass_through"], 1)
        self.assertGreater(float(case.dice[0]), 0.99)  # the blurred label's own argmax
        t2 = SegmentationFailure(2, kinds=["class_swap", "shift"], dice_range=(0.5, 0.5)).set_random_state(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cases = [t2(soft_one_hot(lab, 2), lab) for _ in range(4)]
        self.assertEqual({c.kind for c in cases}, {"shift"})  # the other kind is tried

    @parameterized.expand(
        [
            ("shape", np.full((2, 32, 32), 0.5), np.zeros((1, 30, 32), np.int64), "grid"),
            ("channels", np.full((3, 32, 32), 1 / 3), np.zeros((1, 32, 32), np.int64), "num_classes"),
            ("nan", np.where(np.eye(32)[None] > 0, np.nan, 0.5).repeat(2, 0), np.zeros((1, 32, 32)), "NaN"),
            ("sum", np.full((2, 32, 32), 0.7), np.zeros((1, 32, 32), np.int64), "softmax"),
        ]
    )
    def test_bad_input_raises(self, _, prob, label, message):
        with self.assertRaisesRegex(ValueError, message):
            SegmentationFailure(2)(prob, label)

    def test_bad_arguments_raise(self):
        with self.assertRaisesRegex(ValueError, "softmax"):
            SegmentationFailure(2, multi_label=True)
        with self.assertRaisesRegex(ValueError, "kinds"):
            SegmentationFailure(2, kinds=["melt"])
        with self.assertRaisesRegex(ValueError, "dice_range"):
            SegmentationFailure(2, dice_range=(0.8, 0.2))
        with self.assertRaisesRegex(ValueError, "source"):
            SegmentationFailured(2, source="image")

    def test_composes_with_quality_input_and_keeps_metadata(self):
        lab = three_class_2d()
        affine = torch.diag(torch.tensor([2.0, 2.0, 1.0, 1.0]))
        data = {"image": torch.rand(1, 64, 64), "label": MetaTensor(torch.as_tensor(lab).float(), affine=affine)}
        self.assertIs(SegmentationFailureD, SegmentationFailured)
        self.assertIs(SegmentationFailureDict, SegmentationFailured)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = SegmentationFailured(3, source="label", sigma=1.5).set_random_state(1)(data)
        self.assertIsInstance(d["seg"], MetaTensor)
        np.testing.assert_array_equal(d["seg"].affine.numpy(), affine.numpy())
        self.assertIn(d["failure"], FAILURE_KINDS)
        out = QualityInputd(keys=["image", "seg", "entropy"], num_classes=3)(d)["quality_input"]
        self.assertEqual(tuple(out.shape), (5, 64, 64))
        np.testing.assert_array_equal(out[1:4].argmax(0).numpy(), d["seg"][0].numpy())
        np.testing.assert_allclose(out[4].numpy(), d["entropy"][0].numpy())


if __name__ == "__main__":
    unittest.main()
