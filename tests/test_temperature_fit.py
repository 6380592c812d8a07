"""Fitting the stage-1 temperature (``fit_temperature``) on synthetic logits of a known temperature, and the
calibration error (``expected_calibration_error``) it reduces."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from parameterized import parameterized

from segq_monai.calibration.temperature import expected_calibration_error, fit_temperature


def synthetic(t_true, m=40_000, num_classes=4, seed=0):
    """Observed logits ``[M, C]`` whose calibrated probabilities are ``softmax(logits / t_true)``; labels drawn
    from those probabilities."""
    g = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(m, num_classes, generator=g, dtype=torch.float64)
    labels = torch.multinomial(torch.softmax(logits / t_true, dim=1), 1, generator=g)[:, 0]
    return logits, labels


def ref_ece(prob, labels, num_bins):
    """numpy class-wise ECE: bins (k/B, (k+1)/B] (0 in the first), mean over classes."""
    prob = np.asarray(prob, dtype=np.float64)
    onehot = np.eye(prob.shape[1])[np.asarray(labels)]
    out = []
    for c in range(prob.shape[1]):
        b = np.clip(np.ceil(prob[:, c] * num_bins) - 1, 0, num_bins - 1).astype(int)
        err = sum(
            abs(prob[b == k, c].mean() - onehot[b == k, c].mean()) * np.sum(b == k)
            for k in range(num_bins)
            if np.any(b == k)
        )
        out.append(err / len(prob))
    return float(np.mean(out))


# Hand-computed ECE, 3 classes, 4 voxels, 2 bins ([0, 0.5], (0.5, 1]); per bin |mean p - label frequency| * count:
#   class 0: p (.7 .6 .1 .2), y (1 0 0 1): high {.7 .6}: |.65 - .5| * 2 = .3; low {.1 .2}: |.15 - .5| * 2 = .7
#            -> 1.0 / 4 = 0.25
#   class 1: p (.2 .3 .8 .2), y (0 1 1 0): high {.8}: |.8 - 1| = .2; low {.2 .3 .2}: |.7/3 - 1/3| * 3 = .3 -> 0.125
#   class 2: p (.1 .1 .1 .6), y (0 0 0 0): high {.6}: .6; low: |.1 - 0| * 3 = .3 -> 0.9 / 4 = 0.225
#   mean over classes: 0.6 / 3 = 0.2; without background (class 0): (0.125 + 0.225) / 2 = 0.175
HAND_PROB = torch.tensor([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
HAND_LABELS = torch.tensor([0, 1, 1, 0])


class TestTemperature(unittest.TestCase):
    @parameterized.expand([("overconfident", 2.0), ("underconfident", 0.5), ("calibrated", 1.0)])
    def test_recovers_temperature(self, _, t_true):
        logits, labels = synthetic(t_true)
        t = fit_temperature(logits, labels)
        self.assertLess(abs(t / t_true - 1), 0.05)
        # optimality: d NLL / d(1/T) = mean(E_p[z] - z_label) = 0 at the fitted T
        p = torch.softmax(logits / t, dim=1)
        grad = ((p * logits).sum(1) - logits.gather(1, labels[:, None])[:, 0]).mean()
        self.assertLess(abs(float(grad)), 1e-4)
        ece_before = expected_calibration_error(torch.softmax(logits, 1), labels)
        ece_after = expected_calibration_error(torch.softmax(logits / t, 1), labels)
        self.assertLessEqual(ece_after, ece_before + (1e-3 if t_true == 1.0 else 0.0))
        if t_true != 1.0:
            self.assertLess(ece_after, 0.5 * ece_before)

    def test_spatial_layout_matches_flat(self):
        logits, labels = synthetic(1.5, m=2 * 30 * 40, num_classes=3, seed=1)
        spatial = logits.reshape(2, 30, 40, 3).movedim(-1, 1)  # [N, C, H, W]
        lab = labels.reshape(2, 1, 30, 40)
        self.assertAlmostEqual(fit_temperature(spatial, lab), fit_temperature(logits, labels), places=12)
        self.assertAlmostEqual(fit_temperature(spatial.float(), lab[:, 0]), fit_temperature(logits, labels), places=5)

    def test_bound_warning(self):
        logits = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
        with self.assertWarnsRegex(UserWarning, "search bound"):
            t = fit_temperature(logits, torch.tensor([0, 1]))
        self.assertLess(t, 0.2)  # the NLL is 0 to float64 precision for every T below ~0.1

    def test_bad_input(self):
        logits = torch.zeros(4, 3)
        cases = [
            (lambda: fit_temperature(logits, torch.zeros(5, dtype=torch.long)), "one class index"),
            (lambda: fit_temperature(torch.zeros(4, 1), torch.zeros(4)), "one channel"),
            (lambda: fit_temperature(logits, torch.tensor([0, 1, 2, 3])), "\\[0, 3\\)"),
            (lambda: fit_temperature(logits, torch.tensor([0.0, 0.5, 1.0, 2.0])), "integers"),
            (lambda: fit_temperature(torch.full((4, 3), float("nan")), torch.zeros(4)), "NaN"),
            (lambda: fit_temperature(logits, torch.zeros(4), bounds=(0.0, 1.0)), "bounds"),
            (lambda: expected_calibration_error(logits, torch.zeros(4), num_bins=0), "num_bins"),
        ]
        for call, msg in cases:
            with self.subTest(msg=msg), self.assertRaisesRegex(ValueError, msg):
                call()


class TestECE(unittest.TestCase):
    @parameterized.expand([("all_classes", True, 0.2), ("no_background", False, 0.175)])
    def test_hand_computed(self, _, include_background, want):
        got = expected_calibration_error(HAND_PROB, HAND_LABELS, num_bins=2, include_background=include_background)
        self.assertAlmostEqual(got, want, places=6)
        # the same voxels as two cases of two voxels, [N, C, W] with labels [N, 1, W]: voxels are pooled
        spatial = HAND_PROB.reshape(2, 2, 3).movedim(-1, 1)
        got = expected_calibration_error(spatial, HAND_LABELS.reshape(2, 1, 2), 2, include_background)
        self.assertAlmostEqual(got, want, places=6)

    def test_against_numpy_reference(self):
        logits, labels = synthetic(2.0, m=5000, num_classes=3, seed=2)
        prob = torch.softmax(logits, 1)
        for num_bins in (1, 10, 15):
            with self.subTest(num_bins=num_bins):
                got = expected_calibration_error(prob, labels, num_bins=num_bins)
                self.assertAlmostEqual(got, ref_ece(prob.numpy(), labels.numpy(), num_bins), places=5)


if __name__ == "__main__":
    unittest.main()
