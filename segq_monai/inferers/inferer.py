"""``UncertaintyInferer``: a MONAI inferer that samples a network and returns a segmentation and uncertainty maps."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer, SimpleInferer
from monai.utils import convert_to_dst_type
from torch import nn

from segq_monai.inferers.samplers import Sampler
from segq_monai.networks.signature import input_convolution
from segq_monai.inferers.streaming import MAPS, StreamingUncertainty

__all__ = ["UncertaintyInferer"]


class UncertaintyInferer(Inferer):
    """Samples ``network`` with ``sampler`` through a base ``inferer`` and reduces the samples as they arrive.

    Returns a dictionary (keys from :data:`segq_monai.inferers.streaming.MAPS`, chosen by ``maps``): ``prob`` the mean
    class probability ``[B, C, *spatial]``, ``seg`` ``[B, 1, *spatial]``, ``entropy``, ``expected_entropy``,
    ``mutual_information`` ``[B, 1, *spatial]`` (nats), ``variance`` ``[B, C, *spatial]``, ``agreement``
    ``[B, 1, *spatial]`` and ``pairwise_dice`` ``[B, K]``. Spatial outputs are on the input's grid and carry its
    metadata when the input is a ``MetaTensor``. Memory does not grow with the number of samples.

    In a ``SupervisedEvaluator`` the dictionary lands in ``engine.state.output["pred"]``; MONAI's
    ``FlattenSubKeysd(keys="pred")`` at the head of the postprocessing moves the maps to top-level keys.

    Args:
        sampler: a :class:`segq_monai.inferers.samplers.Sampler` (MC dropout, TTA, ensemble, single pass).
        inferer: the base MONAI inferer, e.g. ``SlidingWindowInferer``; default ``SimpleInferer()``.
        maps: the outputs to return; default all of :data:`~segq_monai.inferers.streaming.MAPS`.
        in_channels: the number of input channels the network takes; checked before any work is done.
            ``None``: read from the first convolution of the network when it has one.
        extra_maps: maps that come from the network itself rather than from the samples, each computed once per
            call as ``fn(network, inputs, inferer, *args, **kwargs)`` -> ``[B, C_m, *spatial]`` and returned under
            its name, e.g. ``{"confidence": segq_monai.confidence_map}`` (``1 - c`` of a learned-confidence
            network) or ``{"aleatoric": segq_monai.aleatoric_variance}``. Names must not clash with ``MAPS``.

    Example::

        inferer = UncertaintyInferer(MCDropoutSampler(num_samples=20), SlidingWindowInferer((96, 96, 96)))
        out = inferer(image, network)  # image [B, C_in, H, W, D]
        out["mutual_information"].shape  # [B, 1, H, W, D]

    Raises:
        ValueError: inputs that are not ``[B, C, H, W]`` or ``[B, C, H, W, D]``, that hold NaN or Inf, or whose
            channel count differs from the network's.
    """

    def __init__(
        self,
        sampler: Sampler,
        inferer: Callable[..., Any] | None = None,
        maps: Sequence[str] | None = None,
        in_channels: int | None = None,
        extra_maps: Mapping[str, Callable[..., torch.Tensor]] | None = None,
    ) -> None:
        super().__init__()
        self.sampler = sampler
        self.inferer = inferer if inferer is not None else SimpleInferer()
        self.maps = tuple(maps) if maps is not None else MAPS
        unknown = sorted(set(self.maps) - set(MAPS))
        if unknown:
            raise ValueError(f"Unknown maps {unknown}; choose from {list(MAPS)}.")
        self.in_channels = in_channels
        self.extra_maps = dict(extra_maps or {})
        clash = sorted(set(self.extra_maps) & set(MAPS))
        if clash:
            raise ValueError(f"extra_maps {clash} clash with the sampled maps {list(MAPS)}; rename them.")

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Sample ``network`` on ``inputs`` ``[B, C_in, *spatial]`` and return the maps (see the class docstring)."""
        self._check_inputs(inputs, network)
        x = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        accumulator = StreamingUncertainty(self.sampler.activation)
        for prob in self.sampler(x, network, self.inferer, *args, **kwargs):
            accumulator.update(prob)
        out = {name: value for name, value in accumulator.compute().items() if name in self.maps}
        for name, fn in self.extra_maps.items():
            out[name] = fn(network, x, self.inferer, *args, **kwargs)
        result = {}
        for name, value in out.items():
            if isinstance(inputs, MetaTensor) and value.ndim == inputs.ndim:
                value = convert_to_dst_type(value, inputs, dtype=value.dtype, device=value.device)[0]
            result[name] = value
        return result

    def _check_inputs(self, inputs: torch.Tensor, network: nn.Module) -> None:
        if inputs.ndim not in (4, 5):
            raise ValueError(
                f"UncertaintyInferer takes a batch [B, C, H, W] (2D) or [B, C, H, W, D] (3D), got shape "
                f"{tuple(inputs.shape)}; add the batch and channel axes (e.g. EnsureChannelFirstd and a DataLoader)."
            )
        if not torch.isfinite(inputs).all():
            raise ValueError(
                f"The input holds {int((~torch.isfinite(inputs)).sum())} NaN/Inf values; fix or mask them in "
                "preprocessing (e.g. monai.transforms.NormalizeIntensityd with nonzero=True, or nan_to_num)."
            )
        expected = self.in_channels if self.in_channels is not None else _first_conv_in_channels(network)
        if expected is not None and inputs.shape[1] != expected:
            raise ValueError(
                f"The input has {inputs.shape[1]} channels but the network takes {expected}; check the "
                "preprocessing (EnsureChannelFirstd, concatenated modalities) or the network's in_channels."
            )


def _first_conv_in_channels(network: nn.Module) -> int | None:
    """``in_channels`` of :func:`input_convolution`, or ``None`` if the network has no convolution."""
    conv = input_convolution(network)
    return None if conv is None else int(conv.in_channels)
