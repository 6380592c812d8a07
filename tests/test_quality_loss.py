"""QualityRankLoss: squared error + a pairwise ranking term (logistic or gap), against values worked by hand."""

from __future__ import annotations

import math
import unittest

import torch
import torch.nn.functional as F
from parameterized import parameterized

from segq_monai.losses import QualityRankLoss, gap_rank_loss, pairwise_rank_loss, quality_rank_loss

# one class, 3 cases; cases 0 and 1 tie on the true Dice, so only the pairs (0, 2) and (1, 2) count
PRED = torch.tensor([[0.6], [0.5], [0.9]])
TRUE = torch.tensor([[0.8], [0.8], [0.3]])
MSE = (0.2**2 + 0.3**2 + 0.6**2) / 3


def softplus(x: float) -> float:
    return math.log(1 + math.exp(x))


class TestPairwiseRankLoss(unittest.TestCase):
    @parameterized.expand([(1.0,), (10.0,)])
    def test_three_cases_by_hand_ties_ignored(self, scale):
        # pair (0, 2): pred_0 - pred_2 = -0.3; pair (1, 2): -0.4; loss = softplus(-scale * diff), mean over 2 pairs
        expected = (softplus(0.3 * scale) + softplus(0.4 * scale)) / 2
        self.assertAlmostEqual(float(pairwise_rank_loss(PRED, TRUE, scale)), expected, places=5)

    def test_mean_over_classes_with_pairs(self):
        # class 2: every case ties -> no pair, left out of the mean; class 3: one pair (0 above 1), pred lead +0.2
        pred = torch.cat([PRED, torch.full((3, 1), 0.5), torch.tensor([[0.7], [0.5], [0.6]])], dim=1)
        true = torch.cat([TRUE, torch.full((3, 1), 0.9), torch.tensor([[0.9], [0.2], [0.2]])], dim=1)
        # class 3 pairs: (0, 1) diff 0.2 and (0, 2) diff 0.1; (1, 2) tie
        third = (softplus(-0.2) + softplus(-0.1)) / 2
        expected = ((softplus(0.3) + softplus(0.4)) / 2 + third) / 2
        self.assertAlmostEqual(float(pairwise_rank_loss(pred, true, 1.0)), expected, places=5)

    def test_no_pair_is_zero_with_a_graph(self):
        pred = torch.tensor([[0.3], [0.6]], requires_grad=True)
        loss = pairwise_rank_loss(pred, torch.tensor([[0.5], [0.5]]))
        self.assertEqual(float(loss.detach()), 0.0)
        loss.backward()
        torch.testing.assert_close(pred.grad, torch.zeros_like(pred))


class TestGapRankLoss(unittest.TestCase):
    def test_three_cases_by_hand_ties_ignored(self):
        # pair (0, 2): true gap 0.5, predicted gap -0.3 -> 0.8 short; pair (1, 2): 0.5 - (-0.4) = 0.9; mean of 2 pairs
        self.assertAlmostEqual(float(gap_rank_loss(PRED, TRUE)), 0.85, places=6)

    def test_a_pair_shown_wider_than_its_true_gap_costs_nothing(self):
        # true gap 0.1; predicted gaps 0.1 (exact) and 0.5 (wider): both 0, unlike the logistic term
        true = torch.tensor([[0.9], [0.8]])
        for pred in (torch.tensor([[0.7], [0.6]]), torch.tensor([[1.0], [0.5]])):
            self.assertAlmostEqual(float(gap_rank_loss(pred, true)), 0.0, places=6)
        self.assertGreater(float(pairwise_rank_loss(torch.tensor([[1.0], [0.5]]), true)), 0.0)

    def test_mean_over_classes_with_pairs(self):
        # class 2 all tied (left out); class 3: pairs (0, 1) true gap 0.7, pred gap 0.2 -> 0.5; (0, 2) 0.7 - 0.1 -> 0.6
        pred = torch.cat([PRED, torch.full((3, 1), 0.5), torch.tensor([[0.7], [0.5], [0.6]])], dim=1)
        true = torch.cat([TRUE, torch.full((3, 1), 0.9), torch.tensor([[0.9], [0.2], [0.2]])], dim=1)
        self.assertAlmostEqual(float(gap_rank_loss(pred, true)), (0.85 + 0.55) / 2, places=6)

    def test_no_pair_is_zero_with_a_graph(self):
        pred = torch.tensor([[0.3], [0.6]], requires_grad=True)
        loss = gap_rank_loss(pred, torch.tensor([[0.5], [0.5]]))
        self.assertEqual(float(loss.detach()), 0.0)
        loss.backward()
        torch.testing.assert_close(pred.grad, torch.zeros_like(pred))


class TestQualityRankLoss(unittest.TestCase):
    def test_weight_zero_is_mse_exactly(self):
        pred, true = torch.rand(16, 3), torch.rand(16, 3)
        self.assertTrue(torch.equal(QualityRankLoss()(pred, true), torch.nn.MSELoss()(pred, true)))
        self.assertAlmostEqual(float(QualityRankLoss()(PRED, TRUE)), MSE, places=6)

    def test_mse_plus_weighted_rank_by_hand(self):
        expected = MSE + 0.5 * (softplus(3.0) + softplus(4.0)) / 2  # scale 10: softplus(10 * 0.3), softplus(10 * 0.4)
        self.assertAlmostEqual(float(QualityRankLoss(rank_weight=0.5)(PRED, TRUE)), expected, places=5)

    def test_mse_plus_weighted_gap_by_hand(self):
        loss = QualityRankLoss(rank_weight=0.5, rank_loss="gap")
        self.assertAlmostEqual(float(loss(PRED, TRUE)), MSE + 0.5 * 0.85, places=5)

    def test_ensemble_members_averaged(self):
        members = torch.stack([PRED, torch.full((3, 1), 0.5)], dim=1)  # [B=3, M=2, K=1]
        second = F.mse_loss(torch.full((3, 1), 0.5), TRUE).item() + math.log(2)  # equal preds: log 2 per pair
        expected = (MSE + (softplus(0.3) + softplus(0.4)) / 2 + second) / 2
        self.assertAlmostEqual(float(quality_rank_loss(members, TRUE, 1.0, 1.0)), expected, places=5)

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, "rank_weight must be >= 0"):
            QualityRankLoss(rank_weight=-1)
        with self.assertRaisesRegex(ValueError, "must be > 0"):
            QualityRankLoss(scale=0)
        with self.assertRaisesRegex(ValueError, r"rank_loss must be one of \['gap', 'logistic'\], got 'listwise'"):
            QualityRankLoss(rank_loss="listwise")
        with self.assertRaisesRegex(ValueError, r"pred and target must both be \[B, K\]"):
            QualityRankLoss()(torch.rand(4), torch.rand(4))


if __name__ == "__main__":
    unittest.main()
