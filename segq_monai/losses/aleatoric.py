"""The sampled-logit loss of Kendall & Gal 2017 (their Eq. 12) for :class:`~segq_monai.networks.AleatoricNet`."""

from __future__ import annotations

import math

import torch
from torch import nn

from segq_monai.inferers.samplers import check_num_samples
from segq_monai.networks.aleatoric import split_mean_log_var

__all__ = ["SampledLogitLoss", "sampled_logit_loss"]


def sampled_logit_loss(
    mean: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor, noise: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Sampled-logit cross-entropy of Kendall & Gal (2017, Eq. 12) for given noise.

    Args:
        mean: mean logits ``f`` ``[B, C, *spatial]``.
        log_var: log-variances ``log σ²`` of the logits ``[B, C, *spatial]``.
        target: class indices ``[B, 1, *spatial]`` (MONAI style; ``[B, *spatial]`` is accepted too), any dtype.
        noise: standard normal draws ``ε`` ``[T, B, C, *spatial]``; logit sample ``t`` is ``f + exp(log_var / 2) ε_t``.
        reduction: ``"mean"`` (over batch and voxels), ``"sum"`` or ``"none"`` (``[B, 1, *spatial]``).

    Returns:
        ``-log (1/T) Σ_t softmax(f + σ ε_t)[y]`` in nats, reduced. With ``σ = 0`` it is the cross-entropy of ``f``.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")
    if target.ndim == mean.ndim:
        if target.shape[1] != 1:
            raise ValueError(
                f"target must hold class indices [B, 1, ...], got {tuple(target.shape)}; for one-hot labels use "
                "argmax(dim=1, keepdim=True) (or AsDiscreted(argmax=True))."
            )
    elif target.ndim == mean.ndim - 1:
        target = target.unsqueeze(1)
    else:
        raise ValueError(f"target of shape {tuple(target.shape)} does not match logits {tuple(mean.shape)}.")
    if noise.shape[1:] != mean.shape:
        raise ValueError(f"noise must be [T, *{tuple(mean.shape)}], got {tuple(noise.shape)}.")
    mean, log_var = mean.float(), log_var.float()
    logits = mean.unsqueeze(0) + torch.exp(0.5 * log_var).unsqueeze(0) * noise.float()  # [T, B, C, ...]
    index = target.long().unsqueeze(0).expand(noise.shape[0], *target.shape)
    log_p = logits.gather(2, index) - torch.logsumexp(logits, dim=2, keepdim=True)  # [T, B, 1, ...]
    loss = math.log(noise.shape[0]) - torch.logsumexp(log_p, dim=0)  # [B, 1, ...]
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


class SampledLogitLoss(nn.Module):
    """Kendall & Gal's sampled-logit cross-entropy (Eq. 12) as a ``SupervisedTrainer`` loss.

    ``loss(output, target)``: ``output`` the raw ``[B, 2C, *spatial]`` output of an :class:`AleatoricNet` in train
    mode (or of its backbone), or a pair ``(mean_logits, log_var)``; ``target`` class indices ``[B, 1, *spatial]``.
    Each call draws ``num_samples`` fresh ``ε ~ N(0, 1)`` from the global generator (like dropout in training),
    so memory is ``num_samples`` times that of the logits. See :func:`sampled_logit_loss`.

    Args:
        num_samples: T, logit samples per voxel (Kendall & Gal use 10s-100s; 10 is enough to train).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    def __init__(self, num_samples: int = 10, reduction: str = "mean") -> None:
        super().__init__()
        self.num_samples = check_num_samples(num_samples)
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")
        self.reduction = reduction

    def forward(self, output: torch.Tensor | tuple[torch.Tensor, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        mean, log_var = split_mean_log_var(output)
        noise = torch.randn((self.num_samples, *mean.shape), device=mean.device)
        return sampled_logit_loss(mean, log_var, target, noise, self.reduction)
