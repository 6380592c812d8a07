"""An ensemble of quality heads: construction, its members' mean and sd at prediction (numpy by hand), scalars."""

from __future__ import annotations

import unittest

import numpy as np
import torch
from parameterized import parameterized

from segq_monai.networks import QualityEnsemble, QualityRegressor, mean_over_members, quality_ensemble
from segq_monai.transforms import PredictQuality, PredictQualityd


class _FixedDice(torch.nn.Module):
    """A stand-in head whose output is a given Dice vector, plus ``shift`` times the scalars' sum when given."""

    def __init__(self, dice: list[float], shift: float = 0.0) -> None:
        super().__init__()
        self.dice = torch.nn.Parameter(torch.tensor(dice))
        self.shift = shift

    def forward(self, x: torch.Tensor, scalars: torch.Tensor | None = None) -> torch.Tensor:
        out = self.dice.expand(x.shape[0], -1)
        return out if scalars is None else out + self.shift * scalars.sum(dim=1, keepdim=True)


MEMBERS = [[0.2, 0.9], [0.5, 0.7], [0.8, 0.8]]  # 3 members, K = 2 classes


def _head(**kwargs) -> QualityRegressor:
    return QualityRegressor(2, 4, 1, channels=(4, 8), strides=(2, 2), dropout=0.2, **kwargs)


class TestQualityEnsemble(unittest.TestCase):
    def test_one_member_is_the_head_itself(self):
        head = _head()
        self.assertIs(quality_ensemble(head, 1, seed=3), head)

    def test_members_from_seeds(self):
        torch.manual_seed(0)
        head = _head()
        state = torch.random.get_rng_state()
        ens = quality_ensemble(head, 3, seed=5)
        self.assertTrue(torch.equal(torch.random.get_rng_state(), state))  # the global random state is left alone
        self.assertIsInstance(ens, QualityEnsemble)
        self.assertEqual(len(ens.members), 3)
        weights = [m.head[1].weight for m in ens.members]
        self.assertFalse(torch.equal(weights[0], weights[1]))
        again = quality_ensemble(_head(), 3, seed=5)  # the same seeds, whatever the template's own weights
        torch.testing.assert_close(again.members[2].head[1].weight, weights[2])
        shifted = quality_ensemble(_head(), 2, seed=6)  # member m draws from seed + m
        torch.testing.assert_close(shifted.members[0].head[1].weight, weights[1])
        self.assertTrue(all(k.startswith("members.") for k in ens.state_dict()))

    def test_forward_stacks_members(self):
        ens = QualityEnsemble([_FixedDice(d) for d in MEMBERS])
        out = ens(torch.rand(4, 1, 8, 8))
        self.assertEqual(tuple(out.shape), (4, 3, 2))
        torch.testing.assert_close(out[1], torch.tensor(MEMBERS))

    def test_mean_over_members(self):
        pred, label = torch.tensor([MEMBERS]), torch.rand(1, 2)  # [B=1, M=3, K=2]
        mean, same = mean_over_members(pred, label)
        torch.testing.assert_close(mean, torch.tensor(np.mean(MEMBERS, axis=0)[None], dtype=torch.float32))
        self.assertIs(same, label)
        single = torch.rand(1, 2)
        self.assertIs(mean_over_members(single, label)[0], single)  # one head: unchanged
        listed, _ = mean_over_members([pred[0]], [label[0]])  # decollated: a list of [M, K]
        torch.testing.assert_close(listed[0], mean[0])

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, "at least 2 members"):
            QualityEnsemble([_head()])
        with self.assertRaisesRegex(ValueError, "quality_members must be >= 1"):
            quality_ensemble(_head(), 0)


class TestPredictEnsemble(unittest.TestCase):
    @parameterized.expand([("module",), ("list",)])
    def test_mean_and_sd_over_members_by_hand(self, given):
        nets = [_FixedDice(d) for d in MEMBERS]
        network = QualityEnsemble(nets) if given == "module" else nets
        out = PredictQualityd(network)({"quality_input": torch.rand(1, 8, 8)})
        members = np.array(MEMBERS, np.float64)
        mean, sd = members.mean(axis=0), np.sqrt(((members - members.mean(axis=0)) ** 2).mean(axis=0))  # ddof 0
        np.testing.assert_allclose(out["pred_dice"].numpy(), mean, rtol=1e-6)
        np.testing.assert_allclose(out["pred_dice_sd"].numpy(), sd, rtol=1e-6)
        np.testing.assert_allclose(out["pred_iou"].numpy(), mean / (2 - mean), rtol=1e-6)

    def test_one_network_in_a_list_is_one_head(self):
        dice, _, sd = PredictQuality([_FixedDice([0.4])])(torch.rand(1, 4, 4))
        torch.testing.assert_close(dice, torch.tensor([0.4]))
        self.assertIsNone(sd)

    def test_real_heads_eval_mode_and_modes_restored(self):
        torch.manual_seed(0)
        ens = quality_ensemble(_head(), 2, seed=0).train()
        x = torch.rand(4, 16, 16)
        dice, _, sd = PredictQuality(ens)(x)
        self.assertTrue(ens.training)  # modes restored
        with torch.no_grad():
            each = np.array([m.eval()(x[None])[0].numpy() for m in ens.members], np.float64)
        np.testing.assert_allclose(dice.numpy(), each.mean(axis=0), rtol=1e-5)
        np.testing.assert_allclose(sd.numpy(), each.std(axis=0), rtol=1e-4, atol=1e-7)

    def test_mc_dropout_refused_for_an_ensemble(self):
        with self.assertRaisesRegex(ValueError, "members' disagreement is its spread; set num_samples=0"):
            PredictQuality([_FixedDice([0.4]), _FixedDice([0.5])], num_samples=20)

    def test_scalars_reach_every_member(self):
        nets = [_FixedDice([0.2], shift=0.1), _FixedDice([0.4], shift=0.1)]
        out = PredictQualityd(nets, scalars_key="scalars")(
            {"quality_input": torch.rand(1, 4, 4), "scalars": torch.tensor([0.5, 1.5])}
        )
        torch.testing.assert_close(out["pred_dice"], torch.tensor([0.5]))  # mean(0.2, 0.4) + 0.1 * 2
        torch.testing.assert_close(out["pred_dice_sd"], torch.tensor([0.1]))


if __name__ == "__main__":
    unittest.main()
