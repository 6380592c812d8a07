"""Streaming reductions against a brute-force numpy reference computed from explicitly stacked samples."""

from __future__ import annotations

import itertools
import unittest

import numpy as np
import torch
from parameterized import parameterized

from segq_monai.inferers.streaming import StreamingUncertainty, entropy


def _reference(samples: np.ndarray, activation: str) -> dict[str, np.ndarray]:
    """Every map from stacked samples ``[T, B, C, *spatial]``, written out the slow, obvious way."""
    t = samples.shape[0]

    def h(p):
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, -p * np.log(p), 0.0)
            if activation == "sigmoid":
                q = 1 - p
                terms = terms + np.where(q > 0, -q * np.log(q), 0.0)
        return terms.sum(axis=1, keepdims=True)

    mean = samples.mean(axis=0)
    predictive = h(mean)
    expected = np.mean([h(s) for s in samples], axis=0)
    if activation == "softmax":
        seg = mean.argmax(axis=1)[:, None]
        labels = samples.argmax(axis=2)[:, :, None]
        agreement = (labels == seg[None]).mean(axis=0)
        masks = [np.concatenate([(lab == c) for c in range(1, samples.shape[2])], axis=1) for lab in labels]
    else:
        seg = (mean > 0.5).astype(np.int64)
        labels = samples > 0.5
        agreement = (labels == seg[None].astype(bool)).mean(axis=0).mean(axis=1, keepdims=True)
        masks = list(labels)
    # pooled pairwise Dice, pair by pair
    b, k = masks[0].shape[:2]
    pairwise = np.ones((b, k))
    if t > 1:
        for i_b, i_k in itertools.product(range(b), range(k)):
            inter = sum(2 * np.logical_and(masks[i][i_b, i_k], masks[j][i_b, i_k]).sum() for i, j in itertools.combinations(range(t), 2))
            sizes = sum(masks[i][i_b, i_k].sum() + masks[j][i_b, i_k].sum() for i, j in itertools.combinations(range(t), 2))
            pairwise[i_b, i_k] = inter / sizes if sizes else 1.0
    return {
        "prob": mean,
        "seg": seg,
        "entropy": predictive,
        "expected_entropy": expected,
        "mutual_information": predictive - expected,
        "variance": samples.var(axis=0),
        "agreement": agreement,
        "pairwise_dice": pairwise,
    }


def _samples(t: int, shape: tuple[int, ...], activation: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(t, *shape))
    if activation == "softmax":
        e = np.exp(logits - logits.max(axis=2, keepdims=True))
        return e / e.sum(axis=2, keepdims=True)
    return 1 / (1 + np.exp(-logits))


CASES = [
    ("softmax_2d", 7, (2, 3, 5, 6), "softmax"),
    ("softmax_3d", 4, (1, 2, 4, 3, 5), "softmax"),
    ("sigmoid_2d", 6, (2, 2, 5, 4), "sigmoid"),
    ("single_sample", 1, (1, 4, 3, 3), "softmax"),
]


class TestStreamingUncertainty(unittest.TestCase):
    @parameterized.expand(CASES)
    def test_matches_stacked_reference(self, _, t, shape, activation):
        samples = _samples(t, shape, activation, seed=t)
        acc = StreamingUncertainty(activation)
        for s in samples:
            acc.update(torch.as_tensor(s, dtype=torch.float32))
        got = acc.compute()
        want = _reference(samples, activation)
        for name, value in want.items():
            np.testing.assert_allclose(got[name].double().numpy(), value, rtol=1e-4, atol=1e-5, err_msg=name)

    def test_mutual_information_by_hand(self):
        # voxel 0: two one-hot samples that disagree: predictive entropy log 2, expected entropy 0, MI = log 2;
        # voxel 1: two equal samples (0.7, 0.3): MI = 0, entropy = expected entropy = h(0.7)
        first = torch.tensor([[[[1.0, 0.7]], [[0.0, 0.3]]]])  # [B=1, C=2, H=1, W=2]
        second = torch.tensor([[[[0.0, 0.7]], [[1.0, 0.3]]]])
        acc = StreamingUncertainty()
        acc.update(first)
        acc.update(second)
        out = acc.compute()
        h = -(0.7 * np.log(0.7) + 0.3 * np.log(0.3))
        for name, want in (("entropy", [np.log(2), h]), ("expected_entropy", [0.0, h]),
                           ("mutual_information", [np.log(2), 0.0])):  # fmt: skip
            np.testing.assert_allclose(out[name].double().numpy().reshape(-1), want, atol=1e-6, err_msg=name)

    @parameterized.expand([(2, 4), (3, 5), (5, 2)])
    def test_mutual_information_at_most_log_samples_and_classes(self, t, c):
        # MI is the information between the sample index and the class, so MI <= log T and MI <= H <= log C;
        # one-hot samples that all disagree reach log T where T <= C
        acc = StreamingUncertainty()
        for s in _samples(t, (2, c, 6, 5), "softmax", seed=t):
            acc.update(torch.as_tensor(s, dtype=torch.float32))
        out = acc.compute()
        self.assertLessEqual(float(out["mutual_information"].max()), np.log(t) + 1e-5)
        self.assertLessEqual(float(out["entropy"].max()), np.log(c) + 1e-5)
        onehot = StreamingUncertainty()
        for k in range(min(t, c)):
            onehot.update(torch.nn.functional.one_hot(torch.full((1, 3, 3), k), c).movedim(-1, 1).float())
        np.testing.assert_allclose(onehot.compute()["mutual_information"].numpy(), np.log(min(t, c)), atol=1e-5)

    def test_single_sample_has_no_epistemic_uncertainty(self):
        acc = StreamingUncertainty()
        acc.update(torch.as_tensor(_samples(1, (1, 3, 4, 4), "softmax", 0)[0], dtype=torch.float32))
        out = acc.compute()
        self.assertEqual(float(out["mutual_information"].abs().max()), 0.0)
        self.assertEqual(float(out["variance"].abs().max()), 0.0)
        self.assertEqual(float(out["agreement"].min()), 1.0)
        np.testing.assert_allclose(out["entropy"].numpy(), out["expected_entropy"].numpy(), atol=1e-6)

    def test_pooled_pairwise_dice_hand_computed(self):
        # three binary samples of 4 pixels, foreground = class 1
        masks = [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]]
        acc = StreamingUncertainty()
        for m in masks:
            fg = torch.tensor(m, dtype=torch.float32).reshape(1, 1, 2, 2)
            acc.update(torch.cat([1 - fg, fg], dim=1))
        # pairs: (0,1): 2*1/(2+1); (0,2): 2*2/(2+3); (1,2): 2*1/(1+3) -> pooled (2+4+2)/(3+5+4) = 8/12
        self.assertAlmostEqual(float(acc.compute()["pairwise_dice"][0, 0]), 8 / 12, places=6)

    def test_class_never_predicted_has_pairwise_dice_one(self):
        acc = StreamingUncertainty()
        for _ in range(3):
            acc.update(torch.tensor([0.9, 0.1]).reshape(1, 2, 1, 1).expand(1, 2, 3, 3))
        self.assertEqual(float(acc.compute()["pairwise_dice"][0, 0]), 1.0)

    def test_entropy_of_uniform_is_log_c(self):
        self.assertAlmostEqual(float(entropy(torch.full((1, 4, 1, 1), 0.25))), np.log(4), places=6)
        self.assertAlmostEqual(float(entropy(torch.full((1, 2, 1, 1), 0.5), "sigmoid")), 2 * np.log(2), places=6)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "activation"):
            StreamingUncertainty("relu")
        with self.assertRaisesRegex(ValueError, "update"):
            StreamingUncertainty().compute()
        acc = StreamingUncertainty()
        acc.update(torch.rand(1, 2, 4, 4))
        with self.assertRaisesRegex(ValueError, "same grid"):
            acc.update(torch.rand(1, 2, 4, 5))


if __name__ == "__main__":
    unittest.main()
