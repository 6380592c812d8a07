"""Streaming reduction of class-probability samples into a segmentation and uncertainty maps.

The samples of stage 1 (MC dropout, test-time augmentation, an ensemble) arrive one at a time and are folded
into running statistics, never stacked: the memory held is a fixed number of ``[B, C, *spatial]`` buffers
whatever the number of samples ``T``.

Definitions (``p_t`` the class probabilities of sample ``t``, ``p̄`` their mean, entropies in nats):

- predictive entropy ``H[p̄] = -Σ_c p̄_c log p̄_c``;
- expected entropy ``E_t[H[p_t]]``;
- mutual information (BALD) ``H[p̄] - E_t[H[p_t]]``, >= 0 by Jensen's inequality;
- variance ``Var_t[p_t,c]`` per class, population variance (ddof=0), by Welford's update;
- agreement: the fraction of samples whose label at a voxel equals the final segmentation's label;
- pooled pairwise Dice between the samples' segmentations, per class ``c``:
  ``Σ_{i<j} 2|s_i ∩ s_j| / Σ_{i<j} (|s_i| + |s_j|) = Σ_v n_v (n_v - 1) / ((T - 1) Σ_v n_v)``, where ``n_v`` is the
  number of samples that give voxel ``v`` class ``c`` (so it too is computed from running vote counts). It equals
  the mean pairwise Dice when all samples' masks have the same size. ``T = 1`` or a class no sample predicts: 1.

With ``activation="sigmoid"`` (multi-label) every channel is an independent Bernoulli variable: entropies are
summed over channels, the segmentation is ``p̄ > 0.5`` per channel, agreement is averaged over channels and the
pairwise Dice is reported for every channel.
"""

from __future__ import annotations

import torch

__all__ = ["MAPS", "StreamingUncertainty", "entropy"]

#: Names of the outputs of :meth:`StreamingUncertainty.compute`.
MAPS = (
    "prob",
    "seg",
    "entropy",
    "expected_entropy",
    "mutual_information",
    "variance",
    "agreement",
    "pairwise_dice",
)


def entropy(prob: torch.Tensor, activation: str = "softmax") -> torch.Tensor:
    """Entropy in nats of class probabilities ``[B, C, *spatial]`` -> ``[B, 1, *spatial]``.

    ``softmax``: categorical entropy over C. ``sigmoid``: sum over channels of each channel's Bernoulli entropy.
    ``0 log 0`` is taken as 0.
    """
    if activation == "softmax":
        return -torch.special.xlogy(prob, prob).sum(dim=1, keepdim=True)
    q = 1.0 - prob
    return -(torch.special.xlogy(prob, prob) + torch.special.xlogy(q, q)).sum(dim=1, keepdim=True)


class StreamingUncertainty:
    """Running statistics over class-probability samples ``[B, C, *spatial]``.

    Args:
        activation: ``"softmax"`` (mutually exclusive classes, channel 0 is background) or ``"sigmoid"``
            (independent labels).

    Example::

        acc = StreamingUncertainty()
        for prob in sampler(inputs, network, inferer):
            acc.update(prob)
        maps = acc.compute()  # {"prob": ..., "entropy": ..., ...}
    """

    def __init__(self, activation: str = "softmax") -> None:
        if activation not in ("softmax", "sigmoid"):
            raise ValueError(f"activation must be 'softmax' or 'sigmoid', got {activation!r}.")
        self.activation = activation
        self.count = 0
        self._mean: torch.Tensor | None = None
        self._m2: torch.Tensor | None = None
        self._entropy_sum: torch.Tensor | None = None
        self._votes: torch.Tensor | None = None

    def _labels(self, prob: torch.Tensor) -> torch.Tensor:
        """Hard labels of probabilities: argmax ``[B, 1, ...]`` (softmax) or ``p > 0.5`` ``[B, C, ...]``."""
        if self.activation == "softmax":
            return prob.max(dim=1, keepdim=True).indices  # as argmax (first maximum on ties), many times faster on CPU
        return prob > 0.5

    def _one_hot_votes(self, prob: torch.Tensor) -> torch.Tensor:
        """One vote per voxel for the sample's label, ``[B, C, ...]`` int32."""
        labels = self._labels(prob)
        if self.activation == "softmax":
            return torch.zeros_like(prob, dtype=torch.int32).scatter_(1, labels, 1)
        return labels.to(torch.int32)

    def update(self, prob: torch.Tensor) -> None:
        """Fold one sample of class probabilities ``[B, C, *spatial]`` (values in [0, 1]) into the statistics."""
        prob = prob.float()
        if self._mean is None:
            self._mean = torch.zeros_like(prob)
            self._m2 = torch.zeros_like(prob)
            self._entropy_sum = torch.zeros_like(prob[:, :1])
            self._votes = torch.zeros_like(prob, dtype=torch.int32)
        elif prob.shape != self._mean.shape:
            raise ValueError(
                f"Sample of shape {tuple(prob.shape)} does not match the earlier samples' {tuple(self._mean.shape)}; "
                "every sample of one batch must come out on the same grid."
            )
        self.count += 1
        delta = prob - self._mean
        self._mean += delta / self.count
        self._m2 += delta * (prob - self._mean)
        self._entropy_sum += entropy(prob, self.activation)
        self._votes += self._one_hot_votes(prob)

    def compute(self) -> dict[str, torch.Tensor]:
        """The reductions over the samples seen so far.

        Returns:
            ``prob`` ``[B, C, ...]`` mean probability; ``seg`` ``[B, 1, ...]`` class indices (sigmoid: ``[B, C, ...]``
            binary); ``entropy``, ``expected_entropy``, ``mutual_information`` ``[B, 1, ...]`` in nats;
            ``variance`` ``[B, C, ...]``; ``agreement`` ``[B, 1, ...]`` in [1/T, 1] (sigmoid: channel mean);
            ``pairwise_dice`` ``[B, K]`` for the K foreground classes (softmax: ``C - 1``; sigmoid: ``C``).
        """
        if self.count == 0:
            raise ValueError("No samples were given: call update() at least once before compute().")
        t = self.count
        prob = self._mean
        seg = self._labels(prob)
        predictive = entropy(prob, self.activation)
        expected = self._entropy_sum / t
        votes = self._votes
        if self.activation == "softmax":
            agreement = votes.gather(1, seg).float() / t
            fg_votes = votes[:, 1:]
        else:
            positive = votes.float() / t
            agreement = torch.where(seg, positive, 1.0 - positive).mean(dim=1, keepdim=True)
            fg_votes = votes
        return {
            "prob": prob,
            "seg": seg.to(torch.int64),
            "entropy": predictive,
            "expected_entropy": expected,
            "mutual_information": (predictive - expected).clamp_min(0.0),
            "variance": self._m2 / t,
            "agreement": agreement,
            "pairwise_dice": _pooled_pairwise_dice(fg_votes, t),
        }


def _pooled_pairwise_dice(votes: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Pooled pairwise Dice ``[B, K]`` from vote counts ``[B, K, *spatial]`` of ``num_samples`` samples."""
    n = votes.flatten(2).double()
    total = n.sum(-1)
    if num_samples < 2:
        return torch.ones_like(total, dtype=torch.float32)
    overlap = (n * (n - 1)).sum(-1)
    dice = overlap / ((num_samples - 1) * total).clamp_min(1.0)
    return torch.where(total > 0, dice, torch.ones_like(dice)).float()
