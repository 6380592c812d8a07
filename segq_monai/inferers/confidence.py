"""The learned-confidence uncertainty map ``1 - c`` of a :class:`~segq_monai.networks.ConfidenceNet`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.inferers import SimpleInferer
from torch import nn

from segq_monai.inferers.modes import network_modes

__all__ = ["confidence_map"]


def confidence_map(
    network: nn.Module,
    inputs: torch.Tensor,
    inferer: Callable[..., torch.Tensor] | None = None,
    *args: Any,
    **kwargs: Any,
) -> torch.Tensor:
    """Uncertainty from the learned confidence: ``1 - c``, ``[B, 1, *spatial]`` in [0, 1] (1 = no confidence).

    ``network`` is a :class:`ConfidenceNet` (or has ``forward_with_confidence``); one pass in eval mode (modes
    restored afterwards) through ``inferer`` (default ``SimpleInferer()``; a ``SlidingWindowInferer`` averages the
    confidence of overlapping windows).
    """
    if not callable(getattr(network, "forward_with_confidence", None)):
        raise ValueError(
            f"{type(network).__name__} has no forward_with_confidence(x) -> (logits, c); wrap the backbone "
            "(out_channels = num_classes + 1) in segq_monai.networks.confidence.ConfidenceNet."
        )
    inferer = inferer if inferer is not None else SimpleInferer()

    def confidence(x: torch.Tensor, *a: Any, **k: Any) -> torch.Tensor:
        return network.forward_with_confidence(x, *a, **k)[1]

    with network_modes(network), torch.no_grad():
        c = inferer(inputs, confidence, *args, **kwargs).float()
    return 1.0 - c
