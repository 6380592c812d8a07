"""Base of segmentation networks whose backbone returns extra channels after the class logits."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["ExtraOutputNet"]


class ExtraOutputNet(nn.Module):
    """Base of networks whose backbone returns C class logits followed by extra channels (a variance, a confidence).

    ``forward(x)`` returns the raw backbone output in train mode (what the matching loss reads) and the C class
    logits in eval mode, so that the network is a drop-in segmentation network for MONAI inferers, validation
    metrics and every :mod:`segq_monai.inferers.samplers` sampler (they all put the network in eval mode), and its
    checkpoint serves training and inference alike. Subclasses set ``layout`` and :meth:`extra_channels`.

    Args:
        backbone: any network mapping ``[B, C_in, *spatial]`` to ``[B, C + extra_channels(), *spatial]``.
        num_classes: C, the number of classes (softmax, channel 0 = background).
    """

    #: ``(out_channels as an expression of num_classes, what the channels hold)``, for error messages.
    layout: tuple[str, str] = ("", "")

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be at least 2 (softmax, background included), got {num_classes}.")
        self.backbone = backbone
        self.num_classes = int(num_classes)

    def extra_channels(self) -> int:
        """How many channels follow the C class logits."""
        raise NotImplementedError

    def _raw(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.backbone(x, *args, **kwargs)
        expected = self.num_classes + self.extra_channels()
        if out.shape[1] != expected:
            raise ValueError(
                f"The backbone returned {out.shape[1]} channels; {type(self).__name__} with num_classes="
                f"{self.num_classes} needs out_channels = {self.layout[0]} = {expected} ({self.layout[1]})."
            )
        return out

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self._raw(x, *args, **kwargs)
        return out if self.training else out[:, : self.num_classes]

