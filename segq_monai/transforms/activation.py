"""``InverseActivation``: logits whose activation gives back a probability map, for a host's postprocessing that
starts from logits."""

from __future__ import annotations

import torch
from monai.transforms import Transform

__all__ = ["InverseActivation"]


class InverseActivation(Transform):
    """Map class probabilities ``p`` (any shape, values in [0, 1]) to logits that ``activation`` maps back to ``p``.

    ``"softmax"``: ``log(p)`` (``p`` clamped to at least 1e-30), exact since ``softmax(log p) = p`` when the channels
    sum to 1. ``"sigmoid"``: ``logit(p)`` with ``p`` clamped to [1e-6, 1 - 1e-6], so ``sigmoid`` gives back ``p``
    within 1e-6. The output has the input's shape and dtype.

    Args:
        activation: ``"softmax"`` or ``"sigmoid"``, the activation the host's postprocessing applies.

    Raises:
        ValueError: another activation.
    """

    ACTIVATIONS = ("softmax", "sigmoid")

    def __init__(self, activation: str = "softmax") -> None:
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"InverseActivation: activation {activation!r} is not one of {self.ACTIVATIONS}; set "
                             "segq#activation to 'softmax' or 'sigmoid'.")  # fmt: skip
        self.activation = activation

    def __call__(self, prob: torch.Tensor) -> torch.Tensor:
        if self.activation == "sigmoid":
            return torch.logit(prob, eps=1e-6)
        return torch.log(prob.clamp_min(1e-30))
