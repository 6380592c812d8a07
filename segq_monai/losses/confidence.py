"""The learned-confidence loss with hints and the budget rule (DeVries & Taylor 2018), for
:class:`~segq_monai.networks.ConfidenceNet`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConfidenceLoss", "confidence_loss"]


def _class_indices(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    if target.ndim == logits.ndim - 1:
        target = target.unsqueeze(1)
    if target.ndim != logits.ndim or target.shape[1] != 1 or target.shape[2:] != logits.shape[2:]:
        raise ValueError(
            f"target must hold class indices [B, 1, ...] on the logits' grid {tuple(logits.shape[2:])}, got "
            f"{tuple(target.shape)}; for one-hot labels use argmax(dim=1, keepdim=True)."
        )
    return target.long()


def confidence_loss(
    logits: torch.Tensor,
    confidence_logit: torch.Tensor,
    target: torch.Tensor,
    hint_mask: torch.Tensor,
    lmbda: float | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DeVries & Taylor's loss for given hints, in log space (finite even where ``c`` saturates to 0 or 1).

    Args:
        logits: class logits ``[B, C, *spatial]``.
        confidence_logit: ``s`` ``[B, 1, *spatial]``, ``c = sigmoid(s)``.
        target: class indices ``[B, 1, *spatial]``.
        hint_mask: bool ``[B, 1, *spatial]`` (or broadcastable): voxels that get a hint. Elsewhere ``c' = 1``.
        lmbda: weight λ of the confidence penalty.

    Returns:
        ``(total, penalty)``: ``total = mean(-log p'[y]) + λ * penalty`` with ``p' = c' p + (1 - c') y`` and
        ``penalty = mean(-log c)`` over all voxels (hinted or not), both scalars in nats.
    """
    target = _class_indices(target, logits)
    log_p_y = torch.log_softmax(logits.float(), dim=1).gather(1, target)
    s = confidence_logit.float()
    hint = hint_mask.to(torch.bool).expand_as(s)
    log_c = torch.where(hint, F.logsigmoid(s), torch.zeros_like(s))
    log_one_minus_c = torch.where(hint, F.logsigmoid(-s), torch.full_like(s, float("-inf")))
    nll = -torch.logaddexp(log_c + log_p_y, log_one_minus_c).mean()  # p'[y] = c p_y + (1 - c)
    penalty = -F.logsigmoid(s).mean()
    return nll + lmbda * penalty, penalty


class ConfidenceLoss(nn.Module):
    """The learned-confidence loss of DeVries & Taylor (2018), per voxel, with their budget rule for λ.

    ``loss(output, target)``: ``output`` the raw ``[B, C + 1, *spatial]`` output of a :class:`ConfidenceNet` in train
    mode (class logits, then the confidence logit); ``target`` class indices ``[B, 1, *spatial]``. Each voxel gets a
    hint with probability ``hint_prob`` (a fresh Bernoulli mask from the global generator each call; the paper
    hints half of each batch). See :func:`confidence_loss`.

    λ is state: the buffer ``lmbda`` (saved in ``state_dict``; add the loss to a ``CheckpointSaver``'s
    ``save_dict`` to resume it). After every call made with gradients enabled (a training step; evaluation under
    ``torch.no_grad()`` leaves it alone) it follows the reference implementation of the paper: if the penalty
    ``mean(-log c)`` exceeds ``budget`` the network asks for too many hints and hints are made dearer,
    ``λ ← λ / 0.99``; otherwise ``λ ← λ / 1.01``. The loss returned uses λ from before the update.

    Args:
        lmbda: initial λ (paper: 0.1).
        budget: β, the target of ``mean(-log c)`` in nats (paper: 0.3; smaller β: higher confidence overall).
        hint_prob: probability that a voxel gets a hint (paper: 0.5).
    """

    lmbda: torch.Tensor

    def __init__(self, lmbda: float = 0.1, budget: float = 0.3, hint_prob: float = 0.5) -> None:
        super().__init__()
        if lmbda < 0 or budget <= 0 or not 0.0 <= hint_prob <= 1.0:
            raise ValueError(
                f"Need lmbda >= 0, budget > 0 and hint_prob in [0, 1]; got lmbda={lmbda}, budget={budget}, "
                f"hint_prob={hint_prob}."
            )
        self.register_buffer("lmbda", torch.tensor(float(lmbda), dtype=torch.float64))
        self.budget = float(budget)
        self.hint_prob = float(hint_prob)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.ndim < 3 or output.shape[1] < 3:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise ValueError(
                f"Expected the raw ConfidenceNet output [B, C + 1, ...] (C >= 2 class logits, then the confidence "
                f"logit), got {shape}; use ConfidenceNet in train mode (its eval-mode forward drops the confidence)."
            )
        logits, s = output[:, :-1], output[:, -1:]
        hint = torch.rand(s.shape, device=s.device) < self.hint_prob
        lmbda = self.lmbda.to(s.device, torch.float32)
        total, penalty = confidence_loss(logits, s, target, hint, lmbda)
        if torch.is_grad_enabled():
            with torch.no_grad():
                up = (penalty > self.budget).to(self.lmbda.device)
                self.lmbda.copy_(torch.where(up, self.lmbda / 0.99, self.lmbda / 1.01))
        return total
