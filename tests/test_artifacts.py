"""Graded MR artifacts: identity at severity 0, error grows with severity, deterministic, validated."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage
from parameterized import parameterized

from segq_monai.data import demo_datalist_path, load_datalist
from segq_monai.transforms.artifacts import (
    ARTIFACT_KINDS,
    EXTRA_ARTIFACT_KINDS,
    MRArtifact,
    MRArtifactD,
    MRArtifactd,
    MRArtifactDict,
    _aliasing,
    _motion,
    _signal_void,
    apply_mr_artifact,
    graded_artifact_plan,
)

KINDS = [(k,) for k in ARTIFACT_KINDS + EXTRA_ARTIFACT_KINDS]
SEVERITIES = (0.0, 0.25, 0.5, 0.75, 1.0)


def _demo_slice(index: int = 35) -> MetaTensor:
    items = load_datalist(demo_datalist_path())
    return LoadImage(image_only=True, ensure_channel_first=True)(items[index]["image"])  # [1, 96, 112], 0..255


class TestMRArtifact(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.img = _demo_slice()

    @parameterized.expand(KINDS)
    def test_severity_zero_is_identity(self, kind):
        for data in (self.img, self.img.numpy().astype(np.uint8)):
            out = MRArtifact(kind, 0.0, seed=1)(data)
            self.assertEqual(out.dtype, torch.float32)
            np.testing.assert_array_equal(np.asarray(out), np.asarray(data, dtype=np.float32))

    @parameterized.expand(KINDS)
    def test_error_grows_with_severity(self, kind):
        for seed in (0, 1):
            mse = [float(((MRArtifact(kind, s, seed=seed)(self.img) - self.img) ** 2).mean()) for s in SEVERITIES]
            self.assertEqual(mse[0], 0.0)
            self.assertTrue(all(b > a for a, b in zip(mse, mse[1:])), f"{kind}, seed {seed}: {mse}")
            self.assertGreater(mse[-1], 25.0, kind)  # visible at severity 1: RMSE > 5 grey levels out of 160

    @parameterized.expand(KINDS)
    def test_same_seed_same_output_and_range(self, kind):
        a = MRArtifact(kind, 0.6, seed=7)(self.img)
        b = MRArtifact(kind, 0.6, seed=7)(self.img.clone())
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        t = MRArtifact(kind, 0.6, seed=7)
        np.testing.assert_array_equal(t(self.img).numpy(), t(self.img).numpy())  # every call, not just the first
        self.assertEqual(a.shape, self.img.shape)
        self.assertIsInstance(a, MetaTensor)
        np.testing.assert_allclose(a.affine, self.img.affine)
        self.assertGreaterEqual(float(a.min()), float(self.img.min()))
        self.assertLessEqual(float(a.max()), float(self.img.max()))

    @parameterized.expand([("bias_field",), ("noise",), ("spikes",), ("contrast",), *[(k,) for k in EXTRA_ARTIFACT_KINDS]])
    def test_seed_matters(self, kind):
        outs = [MRArtifact(kind, 1.0, seed=s)(self.img).numpy() for s in range(4)]
        self.assertTrue(any(not np.array_equal(outs[0], o) for o in outs[1:]), kind)

    @parameterized.expand(KINDS)
    def test_3d_multichannel(self, kind):
        vol = torch.rand(2, 16, 20, 12, generator=torch.Generator().manual_seed(0)) * 100
        out = apply_mr_artifact(vol, kind, 0.7, seed=3)
        self.assertEqual(out.shape, vol.shape)
        self.assertGreater(float(((out - vol) ** 2).mean()), 0.0)

    @parameterized.expand(
        [("blur", 0.5), ("noise", -0.1), ("noise", 1.5), ("noise", float("nan")), ("gibbs", "high"), ("gibbs", True)]
    )
    def test_bad_arguments(self, kind, severity):
        with self.assertRaises(ValueError):
            MRArtifact(kind, severity)
        with self.assertRaises(ValueError):
            MRArtifactd("image", kind, severity)

    def test_dictionary_twin(self):
        self.assertIs(MRArtifactD, MRArtifactd)
        self.assertIs(MRArtifactDict, MRArtifactd)
        data = {"image": self.img, "label": torch.ones(1, 96, 112)}
        out = MRArtifactd("image", "noise", 0.5, seed=2)(data)
        np.testing.assert_array_equal(out["image"].numpy(), MRArtifact("noise", 0.5, seed=2)(self.img).numpy())
        self.assertIs(out["label"], data["label"])
        with self.assertRaises(KeyError):
            MRArtifactd("missing", "noise", 0.5)(data)
        self.assertIn("image", MRArtifactd(["image", "missing"], "noise", 0.5, allow_missing_keys=True)(data))


class TestWrittenKinds(unittest.TestCase):
    """The kinds written here, against what the physics says before clipping."""

    def test_motion_keeps_the_energy(self):
        """A phase on some k-space lines is unitary: the complex image keeps its energy (Parseval); its magnitude
        has that energy too. A constant image (all energy in the DC line, whose phase is 1) does not change."""
        img = torch.rand(1, 48, 40, generator=torch.Generator().manual_seed(0)) * 100
        out = _motion(img, 0.8, np.random.RandomState(3))
        self.assertAlmostEqual(float((out.double() ** 2).sum() / (img.double() ** 2).sum()), 1.0, places=5)
        self.assertGreater(float((out - img).abs().max()), 1.0)
        flat = torch.full((1, 48, 40), 7.0)
        torch.testing.assert_close(_motion(flat, 1.0, np.random.RandomState(3)), flat)

    def test_aliasing_drops_every_other_outer_line(self):
        """``1 + cos(2 pi 13 y / 64)`` has k-space on lines 0, 13 and 51 only; at severity 1 the centre kept is
        |f| <= 0.04, so lines 13 and 51 (both odd) are dropped when the seed's parity is odd: the image becomes 1;
        when it is even, nothing changes."""
        y = torch.arange(64, dtype=torch.float64)[:, None].expand(64, 32)
        img = (1.0 + torch.cos(2 * torch.pi * 13 * y / 64))[None].float()
        for seed in range(4):
            parity = np.random.RandomState(seed).randint(2)
            expected = torch.ones_like(img) if parity == 1 else img
            torch.testing.assert_close(_aliasing(img, 1.0, np.random.RandomState(seed)), expected, atol=1e-5, rtol=0)

    def test_signal_void_only_darkens(self):
        """A constant image keeps 100 far from the ellipse and reaches about 100 * (1 - 0.9 * severity) inside."""
        flat = torch.full((1, 96, 112), 100.0)
        out = _signal_void(flat, 0.5, np.random.RandomState(2))
        self.assertLessEqual(float(out.max()), 100.0)
        self.assertAlmostEqual(float(out.min()), 100.0 * (1 - 0.9 * 0.5), delta=1.0)
        self.assertGreater(float(out[0, 0, 0]), 98.0)  # a corner: at least one radius beyond the ellipse's edge


class TestGradedPlan(unittest.TestCase):
    def test_every_block_gets_every_severity(self):
        plan = graded_artifact_plan(72, seed=0)
        self.assertEqual(len(plan), 72)
        sev = [s for _, s in plan]
        for start in range(0, 72 - 9 + 1):  # any 2 * 5 - 1 consecutive cases
            self.assertEqual(set(sev[start : start + 9]), set(SEVERITIES))
        for cycle in range(72 // 5):  # each cycle of 5 holds every severity once
            self.assertEqual(sorted(sev[5 * cycle : 5 * cycle + 5]), list(SEVERITIES))

    def test_pairs_balanced_and_kinds_valid(self):
        plan = graded_artifact_plan(25, seed=3)
        self.assertEqual(len(set(plan)), 25)  # 5 kinds x 5 severities, each once
        self.assertTrue(all(k in ARTIFACT_KINDS for k, _ in plan))

    def test_deterministic_and_custom(self):
        self.assertEqual(graded_artifact_plan(30, seed=1), graded_artifact_plan(30, seed=1))
        self.assertNotEqual(graded_artifact_plan(30, seed=1), graded_artifact_plan(30, seed=2))
        plan = graded_artifact_plan(7, severities=(0.0, 1.0), kinds=("noise",))
        self.assertEqual([k for k, _ in plan], ["noise"] * 7)
        self.assertEqual(graded_artifact_plan(0), [])

    @parameterized.expand(
        [({"num_cases": -1},), ({"num_cases": 5, "kinds": ("x",)},), ({"num_cases": 5, "severities": (2,)},)]
    )
    def test_bad(self, kwargs):
        with self.assertRaises(ValueError):
            graded_artifact_plan(**kwargs)


if __name__ == "__main__":
    unittest.main()
