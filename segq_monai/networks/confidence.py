"""Learned confidence per voxel (DeVries & Taylor 2018, "Learning Confidence for Out-of-Distribution Detection in
Neural Networks", arXiv 1802.04865), for segmentation.

The network predicts, besides the class logits, one confidence logit ``s`` per voxel, ``c = sigmoid(s)`` in
(0, 1). In training the network may "ask for hints": its probabilities are pulled towards the one-hot label,
``p' = c p + (1 - c) y``, and the task loss is the NLL of ``p'``; a penalty ``λ (-log c)`` makes hints cost.
The network learns to lower ``c`` where it would otherwise be wrong, so ``1 - c`` is an uncertainty map.

Design (as :mod:`segq_monai.networks.aleatoric`): build the backbone with ``out_channels = num_classes + 1`` (C class
logits, then the confidence logit) and wrap it in :class:`ConfidenceNet`. In **train mode** ``forward`` returns
the raw ``[B, C + 1, ...]`` output for :class:`ConfidenceLoss`; in **eval mode** it returns the C class logits, so
the wrapper is a drop-in segmentation network for MONAI inferers and every :mod:`segq_monai.inferers.samplers` sampler.
:func:`confidence_map` gives ``1 - c`` as one more map.
"""

from __future__ import annotations

from typing import Any

import torch

from segq_monai.networks.extra_output import ExtraOutputNet

__all__ = ["ConfidenceNet"]


class ConfidenceNet(ExtraOutputNet):
    """A segmentation network with a per-voxel confidence output.

    Args:
        backbone: any network mapping ``[B, C_in, *spatial]`` to ``[B, num_classes + 1, *spatial]`` (class logits,
            then the confidence logit), e.g. ``monai.networks.nets.UNet(..., out_channels=num_classes + 1)``.
        num_classes: C (softmax, channel 0 = background).

    ``forward(x)``: in train mode the raw ``[B, C + 1, ...]`` output (for :class:`ConfidenceLoss`), in eval mode the
    class logits ``[B, C, ...]``. ``forward_with_confidence(x)`` returns ``(logits, c)`` with ``c`` ``[B, 1, ...]`` in
    (0, 1) in either mode.
    """

    layout = ("num_classes + 1", "class logits, then the confidence logit")

    def extra_channels(self) -> int:
        return 1

    def forward_with_confidence(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits [B, C, ...], c [B, 1, ...])``, ``c = sigmoid(confidence logit)`` in (0, 1)."""
        out = self._raw(x, *args, **kwargs)
        return out[:, : self.num_classes], torch.sigmoid(out[:, self.num_classes :])
