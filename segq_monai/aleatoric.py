"""Aleatoric uncertainty: a network that predicts the variance of its own logits (Kendall & Gal 2017).

Kendall & Gal, "What Uncertainties Do We Need in Bayesian Deep Learning for Computer Vision?" (NeurIPS 2017),
§3.3: the network predicts, per voxel and class, mean logits ``f`` and a log-variance ``s = log σ²``; the logits
are Gaussian, ``x̂ = f + σ ε`` with ``ε ~ N(0, 1)``, and training minimises the sampled-logit cross-entropy
(their Eq. 12)::

    L = -log (1/T) Σ_t softmax(x̂_t)[y],    x̂_t = f + σ ε_t

computed stably as ``log T - logsumexp_t (x̂_t[y] - logsumexp_c x̂_t[c])``. Where the labels are noisy the
network learns a larger σ² than where they are clean: σ² is *aleatoric* (data) uncertainty, which more
training data does not remove, unlike the *epistemic* (model) uncertainty that MC dropout estimates. Under the
softmax, smaller mean logits explain label noise as well as a larger σ² does, and the finite-T loss slightly
penalises σ², so the learned σ² can be small in absolute terms (0.01 against 0.001 logits² in the test's toy
task, whose noisy region instead gets |f_1 - f_0| ≈ 0.8 against ≈ 13): read it as a relative map.

Design (one way to do it, works with any MONAI network):

- build the backbone with ``out_channels = 2 * num_classes``: channels ``[0, C)`` are the mean logits ``f``,
  channels ``[C, 2C)`` the log-variances ``log σ²`` (natural log, logit units squared);
- wrap it in :class:`AleatoricNet`. In **train mode** ``forward`` returns the raw ``2C``-channel output, the
  input :class:`SampledLogitLoss` takes, so the wrapped network is trained directly (``SupervisedTrainer`` with
  ``loss_function=SampledLogitLoss()``; the checkpoint keys are those of the inference network). In **eval
  mode** ``forward`` returns the mean logits ``[B, C, ...]`` only, so the wrapper is a drop-in segmentation
  network for ``SimpleInferer`` / ``SlidingWindowInferer``, validation metrics and every
  :mod:`segq_monai.samplers` sampler (they all put the network in eval mode);
- :class:`AleatoricSampler` draws logit samples from ``N(f, σ²)`` (optionally together with MC dropout), and
  :func:`aleatoric_variance` gives the mean predicted σ² as one more map.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from monai.inferers import SimpleInferer
from torch import nn

from segq_monai.modes import dropout_modules, mc_dropout_masks, network_modes, seeded
from segq_monai.samplers import Sampler, check_num_samples

__all__ = [
    "AleatoricNet",
    "AleatoricSampler",
    "ExtraOutputNet",
    "SampledLogitLoss",
    "aleatoric_variance",
    "sampled_logit_loss",
    "split_mean_log_var",
]


def split_mean_log_var(output: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a ``[B, 2C, *spatial]`` output into mean logits and log-variances, each ``[B, C, *spatial]``.

    A ``(mean, log_var)`` pair is returned as given (after a shape check).
    """
    if isinstance(output, (tuple, list)):
        if len(output) != 2 or output[0].shape != output[1].shape:
            raise ValueError(
                "Expected a pair (mean_logits, log_var) of equal shapes [B, C, ...], got "
                f"{[tuple(o.shape) for o in output]}."
            )
        return output[0], output[1]
    if not isinstance(output, torch.Tensor) or output.ndim < 3 or output.shape[1] % 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(
            f"Expected the raw aleatoric output [B, 2C, ...] (mean logits then log-variances), got {shape}; build "
            "the backbone with out_channels = 2 * num_classes and use AleatoricNet in train mode (its eval-mode "
            "forward returns the C mean logits only)."
        )
    c = output.shape[1] // 2
    return output[:, :c], output[:, c:]


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


class ExtraOutputNet(nn.Module):
    """Base of networks whose backbone returns C class logits followed by extra channels (a variance, a confidence).

    ``forward(x)`` returns the raw backbone output in train mode (what the matching loss reads) and the C class
    logits in eval mode, so that the network is a drop-in segmentation network for MONAI inferers, validation
    metrics and every :mod:`segq_monai.samplers` sampler (they all put the network in eval mode), and its
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


class AleatoricNet(ExtraOutputNet):
    """A segmentation network that also predicts the log-variance of its logits, per voxel and class.

    Args:
        backbone: any network mapping ``[B, C_in, *spatial]`` to ``[B, 2 * num_classes, *spatial]``, e.g.
            ``monai.networks.nets.UNet(..., out_channels=2 * num_classes)``.
        num_classes: C, the number of classes (softmax, channel 0 = background).

    ``forward(x)``: in train mode the raw ``[B, 2C, ...]`` output (for :class:`SampledLogitLoss`), in eval mode
    the mean logits ``[B, C, ...]`` (a drop-in segmentation network). ``forward_with_variance(x)`` returns
    ``(mean_logits, log_var)`` in either mode.

    Example::

        net = AleatoricNet(UNet(2, 1, 2 * 3, channels=(16, 32, 64), strides=(2, 2), dropout=0.1), num_classes=3)
        trainer = SupervisedTrainer(..., network=net, loss_function=SampledLogitLoss(num_samples=10))
        maps = UncertaintyInferer(AleatoricSampler(20, mc_dropout=True))(image, net)
    """

    layout = ("2 * num_classes", "mean logits, then log-variances")

    def extra_channels(self) -> int:
        return self.num_classes

    def forward_with_variance(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean_logits, log_var)``, each ``[B, C, *spatial]``; ``log_var = log σ²`` of the logits."""
        return split_mean_log_var(self._raw(x, *args, **kwargs))


class _WithVariance(nn.Module):
    """``network.forward_with_variance`` concatenated to ``[B, 2C, ...]``, so a MONAI inferer (which calls
    ``network(x)`` and may stitch windows) carries both halves."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        if not callable(getattr(network, "forward_with_variance", None)):
            raise ValueError(
                f"{type(network).__name__} has no forward_with_variance(x) -> (mean_logits, log_var); wrap the "
                "segmentation backbone (out_channels = 2 * num_classes) in segq_monai.aleatoric.AleatoricNet."
            )
        self.network = network

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return torch.cat(self.network.forward_with_variance(x, *args, **kwargs), dim=1)


class AleatoricSampler(Sampler):
    """Samples of ``softmax((f + σ ε_t) / temperature)``, ``ε_t ~ N(0, 1)`` per voxel and class, from an
    :class:`AleatoricNet` (or any network with ``forward_with_variance``).

    Without MC dropout the network is run once (eval mode) and the T samples differ by the logit noise only:
    the sample spread (``mutual_information``, ``variance``, ``agreement`` of
    :class:`~segq_monai.streaming.StreamingUncertainty`) is then aleatoric. With ``mc_dropout=True`` only the
    dropout modules are switched to train mode, as in :class:`~segq_monai.samplers.MCDropoutSampler` (BatchNorm
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
    :class:`~segq_monai.inferer.UncertaintyInferer`, which knows only the sample statistics.
    """
    inferer = inferer if inferer is not None else SimpleInferer()
    with network_modes(network), torch.no_grad():
        _, log_var = split_mean_log_var(inferer(inputs, _WithVariance(network), *args, **kwargs).float())
    return torch.exp(log_var).mean(dim=1, keepdim=True)
