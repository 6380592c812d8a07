"""The quality head's loss: squared error on Dice plus an optional pairwise ranking term within the batch.

The rule that chooses the head (docs/head_choice_rule.md) scores it by rank (Spearman, AURC): the ranking term asks the
head to order the cases of a batch as their true Dice does, beside the squared error that keeps it in Dice units. Two
ranking terms: ``"logistic"`` (RankNet's; it keeps rewarding a wider lead, so it stretches the predictions) and
``"gap"`` (a hinge in Dice units: a pair costs the part of its true Dice gap that the predictions do not show, and
nothing once they show all of it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RANK_LOSSES", "QualityRankLoss", "gap_rank_loss", "pairwise_rank_loss", "quality_rank_loss"]


def pairwise_rank_loss(pred: torch.Tensor, target: torch.Tensor, scale: float = 10.0) -> torch.Tensor:
    """RankNet's logistic loss over the ordered pairs of a batch, per class, then the mean over classes.

    For class ``k`` and each pair ``(i, j)`` with ``target[i, k] > target[j, k]`` (ties are left out), the loss is
    ``softplus(-scale * (pred[i, k] - pred[j, k]))`` = ``log(1 + exp(-scale * (pred_i - pred_j)))``: ``log 2`` for
    equal predictions, towards 0 as the better case is predicted ahead. The mean over a class's pairs, then over the
    classes that have at least one untied pair; 0 when none has.

    Args:
        pred: predicted Dice ``[B, K]``.
        target: true Dice ``[B, K]``.
        scale: the logistic's slope, per unit of Dice (10: a lead of 0.1 Dice costs ``log(1 + e^-1)`` = 0.31).

    Returns:
        a scalar tensor, nats.
    """
    diff = pred[:, None, :] - pred[None, :, :]  # [B, B, K]: pred_i - pred_j
    ordered = target[:, None, :] > target[None, :, :]  # pairs with target_i > target_j
    losses = F.softplus(-scale * diff) * ordered
    pairs = ordered.sum(dim=(0, 1))  # [K]
    ranked = pairs > 0
    if not ranked.any():
        return pred.sum() * 0.0  # keeps the graph (and the device) for backward
    per_class = losses.sum(dim=(0, 1))[ranked] / pairs[ranked]
    return per_class.mean()


def gap_rank_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A hinge on the ordered pairs of a batch in Dice units, per class, then the mean over classes.

    For class ``k`` and each pair ``(i, j)`` with ``target[i, k] > target[j, k]`` (ties are left out), the loss is
    ``max(0, (target_i - target_j) - (pred_i - pred_j))``: the part of the true gap the predictions do not show (a
    reversed pair costs the true gap plus the reversed lead; a pair predicted at least its true gap apart costs 0, so
    unlike :func:`pairwise_rank_loss` it never asks for a wider spread than the truth's). The mean over a class's
    pairs, then over the classes that have at least one untied pair; 0 when none has.

    Args:
        pred: predicted Dice ``[B, K]``.
        target: true Dice ``[B, K]``.

    Returns:
        a scalar tensor, Dice units.
    """
    shortfall = (target[:, None, :] - target[None, :, :]) - (pred[:, None, :] - pred[None, :, :])  # [B, B, K]
    ordered = target[:, None, :] > target[None, :, :]
    losses = F.relu(shortfall) * ordered
    pairs = ordered.sum(dim=(0, 1))  # [K]
    ranked = pairs > 0
    if not ranked.any():
        return pred.sum() * 0.0  # keeps the graph (and the device) for backward
    return (losses.sum(dim=(0, 1))[ranked] / pairs[ranked]).mean()


#: ranking term name -> its function of ``(pred, target, scale)`` (``scale`` is the logistic's slope; the gap has none)
RANK_LOSSES = {
    "logistic": pairwise_rank_loss,
    "gap": lambda pred, target, scale: gap_rank_loss(pred, target),
}


def quality_rank_loss(
    pred: torch.Tensor, target: torch.Tensor, rank_weight: float = 0.0, scale: float = 10.0, rank_loss: str = "logistic"
) -> torch.Tensor:
    """``mse(pred, target) + rank_weight * R(pred, target)``, ``R`` the ranking term named ``rank_loss``
    (:data:`RANK_LOSSES`: ``"logistic"``, :func:`pairwise_rank_loss` with ``scale``; ``"gap"``, :func:`gap_rank_loss`).

    Args:
        pred: predicted Dice ``[B, K]``, or ``[B, M, K]`` from a :class:`~segq_monai.networks.QualityEnsemble` of
            ``M`` heads: then the loss of each member against ``target``, averaged over the members.
        target: true Dice ``[B, K]``.
        rank_weight: weight of the ranking term, >= 0; 0 gives :func:`torch.nn.functional.mse_loss` exactly.
        scale: see :func:`pairwise_rank_loss`.
        rank_loss: a key of :data:`RANK_LOSSES`.
    """
    if pred.ndim == target.ndim + 1:  # an ensemble's members [B, M, K]
        return torch.stack(
            [quality_rank_loss(pred[:, m], target, rank_weight, scale, rank_loss) for m in range(pred.shape[1])]
        ).mean()
    if pred.shape != target.shape or pred.ndim != 2:
        raise ValueError(
            f"pred and target must both be [B, K] (predicted and true Dice per foreground class; pred may be "
            f"[B, M, K] for M ensemble members), got pred {tuple(pred.shape)} and target {tuple(target.shape)}."
        )
    mse = F.mse_loss(pred, target)
    if rank_weight == 0:
        return mse
    return mse + rank_weight * RANK_LOSSES[rank_loss](pred, target, scale)


class QualityRankLoss(nn.Module):
    """Config-friendly :func:`quality_rank_loss`: ``loss(pred, target)``, ``pred`` ``[B, K]`` or ``[B, M, K]``,
    ``target`` ``[B, K]`` (Dice), returns a scalar.

    Args:
        rank_weight: weight of the ranking term, >= 0; 0 (the default) is ``torch.nn.MSELoss()`` exactly.
        scale: slope of the logistic ranking term per unit of Dice, > 0.
        rank_loss: the ranking term, a key of :data:`RANK_LOSSES` (``"logistic"`` or ``"gap"``).

    Example::

        loss = QualityRankLoss(rank_weight=1.0, rank_loss="gap")
        loss(torch.tensor([[0.9], [0.5]]), torch.tensor([[0.8], [0.6]]))
    """

    def __init__(self, rank_weight: float = 0.0, scale: float = 10.0, rank_loss: str = "logistic") -> None:
        super().__init__()
        if rank_weight < 0:
            raise ValueError(f"rank_weight must be >= 0 (0: squared error only), got {rank_weight}.")
        if scale <= 0:
            raise ValueError(f"scale is the ranking term's slope per unit of Dice and must be > 0, got {scale}.")
        if rank_loss not in RANK_LOSSES:
            raise ValueError(f"rank_loss must be one of {sorted(RANK_LOSSES)}, got {rank_loss!r}.")
        self.rank_weight = float(rank_weight)
        self.scale = float(scale)
        self.rank_loss = rank_loss

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return quality_rank_loss(pred, target, self.rank_weight, self.scale, self.rank_loss)
