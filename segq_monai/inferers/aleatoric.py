"""Sampling an :class:`~segq_monai.networks.AleatoricNet`: logit noise (optionally with MC dropout), the variance map."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.inferers import SimpleInferer
from torch import nn

from segq_monai.inferers.modes import dropout_modules, mc_dropout_masks, network_modes, seeded
from segq_monai.inferers.samplers import Sampler, check_num_samples
from segq_monai.networks.aleatoric import split_mean_log_var

__all__ = ["AleatoricSampler", "aleatoric_variance"]


class _WithVariance(nn.Module):
    """``network.forward_with_variance`` concatenated to ``[B, 2C, ...]``, so a MONAI inferer (which calls
    ``network(x)`` and may stitch windows) carries both halves."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        if not callable(getattr(network, "forward_with_variance", None)):
            raise ValueError(
                f"{type(network).__name__} has no forward_with_variance(x) -> (mean_logits, log_var); wrap the "
                "segmentation backbone (out_channels = 2 * num_classes) in segq_monai.networks.aleatoric.AleatoricNet."
            )
        self.network = network

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return torch.cat(self.network.forward_with_variance(x, *args, **kwargs), dim=1)


class AleatoricSampler(Sampler):
    """Samples of ``softmax((f + σ ε_t) / temperature)``, ``ε_t ~ N(0, 1)`` per voxel and class, from an
    :class:`AleatoricNet` (or any network with ``forward_with_variance``).

    Without MC dropout the network is run once (eval mode) and the T samples differ by the logit noise only:
    the sample spread (``mutual_information``, ``variance``, ``agreement`` of
    :class:`~segq_monai.inferers.streaming.StreamingUncertainty`) is then aleatoric. With ``mc_dropout=True`` only the
    dropout modules are switched to train mode, as in :class:`~segq_monai.inferers.samplers.MCDropoutSampler` (BatchNorm
    and the rest stay in eval mode, every mode is restored on exit), and each sample is one forward pass with
    its own dropout mask *and* its own logit noise: the predictive ``entropy`` then holds epistemic and
    aleatoric uncertainty and the sample spread mixes both. The aleatoric part alone is
    :func:`aleatoric_variance`.

    Args:
        num_samples: T.
        mc_dropout: also sample dropout masks (one forward pass per sample; ``ValueError`` when the network has
            no dropout module with ``p > 0``).
        seed: seed of the noise (and dropout masks); the caller's random state is left untouched. ``None`` draws
            from the global generator.
        temperature: each sampled logit ``f + σ ε_t`` is divided by it before the softmax (temperature scaling;
            dimensionless, finite, > 0); 1.0: none.
    """

    def __init__(
        self, num_samples: int = 20, mc_dropout: bool = False, seed: int | None = 0, temperature: float = 1.0
    ) -> None:
        super().__init__("softmax", temperature)
        self._num_samples = check_num_samples(num_samples)
        self.mc_dropout = bool(mc_dropout)
        self.seed = seed

    @property
    def num_samples(self) -> int:
        return self._num_samples

    def __call__(self, inputs, network, inferer, *args, **kwargs):
        raw = _WithVariance(network)
        train = dropout_modules(network) if self.mc_dropout else []
        if self.mc_dropout and not train:
            raise ValueError(
                f"{type(network).__name__} has no dropout module with p > 0, so mc_dropout=True would only add "
                "logit noise; build the backbone with dropout or use AleatoricSampler(mc_dropout=False)."
            )
        modes = network_modes(network, train=train)
        with modes, mc_dropout_masks(train), torch.no_grad(), seeded(self.seed, inputs.device):
            mean = log_var = None
            for _ in range(self._num_samples):
                if mean is None or self.mc_dropout:
                    mean, log_var = split_mean_log_var(inferer(inputs, raw, *args, **kwargs).float())
                    std = torch.exp(0.5 * log_var)
                yield self.activate(mean + std * torch.randn_like(mean))


def aleatoric_variance(
    network: nn.Module,
    inputs: torch.Tensor,
    inferer: Callable[..., torch.Tensor] | None = None,
    *args: Any,
    **kwargs: Any,
) -> torch.Tensor:
    """The aleatoric map: mean over classes of the predicted logit variance σ², ``[B, 1, *spatial]``.

    One deterministic pass (eval mode, dropout off, modes restored afterwards) through ``inferer`` (default
    ``SimpleInferer()``; a ``SlidingWindowInferer`` stitches the variances like logits). Units: logits squared,
    ``>= 0``; 0 where the network is sure of the labels. It complements the maps of
    :class:`~segq_monai.inferers.inferer.UncertaintyInferer`, which knows only the sample statistics.
    """
    inferer = inferer if inferer is not None else SimpleInferer()
    with network_modes(network), torch.no_grad():
        _, log_var = split_mean_log_var(inferer(inputs, _WithVariance(network), *args, **kwargs).float())
    return torch.exp(log_var).mean(dim=1, keepdim=True)
