"""Stage 1 samplers: several sources of class-probability samples behind one interface.

A sampler is called as ``sampler(inputs, network, inferer)`` and yields ``num_samples`` tensors of class
probabilities ``[B, C, *spatial]`` on the grid of ``inputs`` ``[B, C_in, *spatial]``. ``inferer`` is any MONAI
inferer (``SimpleInferer``, ``SlidingWindowInferer``) that maps inputs to logits. Samplers never change the
network for good: every module's train/eval mode is restored when sampling ends, also after an exception.
Every sampler takes a ``temperature``: each sample is ``softmax(logits / temperature)`` (or the sigmoid), the
temperature scaling of :mod:`segq_monai.calibration.temperature`.

- :class:`SinglePassSampler`: the single deterministic pass (one sample, softmax or sigmoid): the baseline of DeVries
  & Taylor.
- :class:`MCDropoutSampler`: Monte-Carlo dropout (Gal & Ghahramani 2016): only dropout modules are switched to
  train mode; BatchNorm, InstanceNorm and every other module stay in eval mode. When dropout sits late in the
  network, the part before it is computed once and only the rest T times (:func:`split_at_dropout`).
- :class:`TTASampler`: test-time augmentation (flips, 90° rotations, intensity perturbations), each sample mapped
  back exactly onto the input grid.
- :class:`~segq_monai.inferers.ensemble.EnsembleSampler`: one sample per member of an ensemble of networks or
  checkpoints.

:func:`~segq_monai.inferers.factory.build_sampler` builds any of them by name from one set of arguments.
"""

from __future__ import annotations

import itertools
import math
import logging
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import torch
from monai.inferers import SimpleInferer
from torch import nn

from segq_monai.inferers.modes import dropout_modules, mc_dropout_masks, network_modes, seeded
from segq_monai.inferers.shared_prefix import SharedPrefix, network_fingerprint, split_at_dropout

__all__ = [
    "Sampler",
    "SinglePassSampler",
    "MCDropoutSampler",
    "TTASampler",
    "check_num_samples",
    "check_temperature",
]

Inferer = Callable[..., torch.Tensor]

logger = logging.getLogger(__name__)


def _activate(logits: Any, activation: str, temperature: float) -> torch.Tensor:
    """``softmax`` (over dim 1) or ``sigmoid`` of ``logits / temperature`` in float32, ``[B, C, *spatial]``."""
    if not isinstance(logits, torch.Tensor):
        raise ValueError(
            f"The network returned {type(logits).__name__}, not a tensor of logits [B, C, ...]; wrap a network "
            "with several outputs so that it returns the segmentation logits alone."
        )
    scaled = logits.float() if temperature == 1.0 else logits.float() / temperature  # T = 1: no pass over the logits
    if activation == "softmax":
        return torch.softmax(scaled, dim=1)
    return torch.sigmoid(scaled)


class Sampler(ABC):
    """Yields class-probability samples ``[B, C, *spatial]`` for a batch of inputs.

    Every sample is ``activation(logits / temperature)``: temperature scaling (Guo et al. 2017) of the stage-1
    probabilities, with a temperature fitted on held-out cases (:func:`segq_monai.calibration.temperature.fit_temperature`,
    ``bundle/configs/fit_temperature.json``). ``temperature > 1`` softens over-confident probabilities, ``< 1`` sharpens
    them; the argmax of each sample is unchanged.

    Args:
        activation: ``"softmax"`` for mutually exclusive classes (channel 0 = background), ``"sigmoid"`` for
            independent labels.
        temperature: the logits are divided by it before the activation; dimensionless, finite and > 0. 1.0 (the
            default) leaves the probabilities as the network gives them.
    """

    def __init__(self, activation: str = "softmax", temperature: float = 1.0) -> None:
        if activation not in ("softmax", "sigmoid"):
            raise ValueError(f"activation must be 'softmax' or 'sigmoid', got {activation!r}.")
        self.activation = activation
        self.temperature = check_temperature(temperature)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``activation(logits / temperature)``, float32, of logits ``[B, C, *spatial]``."""
        return _activate(logits, self.activation, self.temperature)

    @property
    @abstractmethod
    def num_samples(self) -> int:
        """The number T of samples each call yields."""

    @abstractmethod
    def __call__(
        self, inputs: torch.Tensor, network: nn.Module, inferer: Inferer, *args: Any, **kwargs: Any
    ) -> Iterator[torch.Tensor]:
        """Yield ``num_samples`` probability tensors ``[B, C, *spatial]``; ``args``/``kwargs`` go to the network."""


def check_num_samples(num_samples: int) -> int:
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}; use 1 for a single pass.")
    return int(num_samples)


def check_temperature(temperature: Any) -> float:
    """``temperature`` as a python float; ``ValueError`` unless it is a finite number > 0 (dimensionless)."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(temperature, bool) or not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"temperature must be a finite number > 0 (1.0: no scaling), got {temperature!r}; fit one on held-out "
            "cases with segq_monai.calibration.temperature.fit_temperature (bundle/configs/fit_temperature.json)."
        )
    return value


class SinglePassSampler(Sampler):
    """The single deterministic pass of the network in eval mode (one sample): every uncertainty map but the
    predictive entropy is zero. Softmax or sigmoid probabilities, as ``activation`` says.

    Args:
        activation: ``"softmax"`` or ``"sigmoid"``.
        temperature: the logits are divided by it before the activation (temperature scaling; dimensionless,
            finite, > 0); 1.0: none.
    """

    @property
    def num_samples(self) -> int:
        return 1

    def __call__(self, inputs, network, inferer, *args, **kwargs):
        with network_modes(network), torch.no_grad():
            yield self.activate(inferer(inputs, network, *args, **kwargs))



class MCDropoutSampler(Sampler):
    """Monte-Carlo dropout: T passes with only the dropout modules in train mode.

    BatchNorm / InstanceNorm and all other modules stay in eval mode, so running statistics are neither used
    from the batch nor updated. Samples are drawn in chunks: a chunk of ``k`` samples is one call of the
    inferer on the inputs repeated ``k`` times along the batch axis (``[k * B, C_in, ...]``). On CPUs the masks of
    ``nn.Dropout`` modules are drawn from uniform numbers, five times faster than PyTorch's kernel and with the
    same distribution (:func:`segq_monai.inferers.modes.mc_dropout_masks`).

    Shared prefix: when dropout sits late in the network (before the output convolution only, or in the last
    decoder stages), everything that precedes every dropout module is the same in all T samples. With
    ``shared_prefix`` the network is split by :func:`split_at_dropout` (torch.fx): the part before dropout runs
    once per call, on one chunk ``[k * B, C_in, ...]`` (once more for a shorter last chunk), and only the rest
    runs for every chunk, reading the cached activations (several with skip connections). The samples equal
    those of full passes for the same seed and chunk size: the shared part draws no random numbers (whole-channel
    dropout before a 1×1 convolution is folded into its weights: equal up to floating-point rounding). Full passes
    are used, with a log message, when the base inferer is not exactly a MONAI ``SimpleInferer`` (a
    ``SlidingWindowInferer`` calls the network once per window batch), or when :func:`split_at_dropout` cannot
    split the network (it does not trace or traces wrongly, dropout acts on the input, ...).

    The split (trace and check: about 50 ms for a MONAI UNet on 2 CPU cores) is kept for the next calls with
    the same network while its modules, their plain attributes (numbers, strings), parameters, buffers, hooks and
    the input's number of dimensions, dtype and device stay the same (not its size: torch.fx cannot follow Python
    branches on sizes, so a graph that traces holds for every size). Change any other state a network's
    ``forward`` reads, and use a new sampler.

    Args:
        num_samples: T, the number of samples.
        chunk_size: samples per forward pass. 1 by default: on 2 CPU cores batching samples is no faster
            (``benchmarks/bench_sampler.py``); on a GPU larger chunks use the device better.
        seed: the random seed of the dropout masks (the caller's random state is left untouched); ``None``
            draws from the global generator. The same seed and chunk size give the same samples.
        activation: ``"softmax"`` or ``"sigmoid"``.
        shared_prefix: compute the part of the network before dropout once (see above; timings in
            ``benchmarks/bench_prefix.py``); ``False``: T full passes always.
        temperature: the logits are divided by it before the activation (temperature scaling; dimensionless,
            finite, > 0); 1.0: none.

    Raises:
        ValueError: when the network has no dropout module with ``p > 0`` (MC dropout would return T copies
            of one prediction).
    """

    def __init__(
        self,
        num_samples: int = 20,
        chunk_size: int = 1,
        seed: int | None = 0,
        activation: str = "softmax",
        shared_prefix: bool = True,
        temperature: float = 1.0,
    ) -> None:
        super().__init__(activation, temperature)
        self._num_samples = check_num_samples(num_samples)
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}.")
        self.chunk_size = int(chunk_size)
        self.seed = seed
        self.shared_prefix = bool(shared_prefix)
        # the latest split of each network (None: full passes), with the fingerprint it was made for
        self._splits: weakref.WeakKeyDictionary[nn.Module, tuple[Any, SharedPrefix | None]] = (
            weakref.WeakKeyDictionary()
        )

    def __getstate__(self) -> dict[str, Any]:  # pickled without the splits, which hold modules
        return {k: v for k, v in self.__dict__.items() if k != "_splits"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _splits=weakref.WeakKeyDictionary())

    @property
    def num_samples(self) -> int:
        return self._num_samples

    def _split(
        self, network: nn.Module, dropout: list[nn.Module], inferer: Inferer, inputs: torch.Tensor, args, kwargs
    ) -> SharedPrefix | None:
        """The network split at dropout, or ``None`` for full passes."""
        if not self.shared_prefix:
            return None
        if type(inferer) is not SimpleInferer:
            logger.debug(
                "MC dropout runs full passes: the shared prefix needs a plain SimpleInferer, got %s.",
                type(inferer).__name__,
            )
            return None
        key = None if args or kwargs else network_fingerprint(network, dropout, inputs)
        cached = self._splits.get(network)
        if key is not None and cached is not None and cached[0] == key:
            return cached[1]
        try:
            split = split_at_dropout(network, inputs, dropout, args, kwargs)
        except ValueError as e:
            logger.info("MC dropout runs full passes of %s, no shared prefix: %s", type(network).__name__, e)
            split = None
        if key is not None:
            self._splits[network] = (key, split)
        return split

    def __call__(self, inputs, network, inferer, *args, **kwargs):
        dropout = dropout_modules(network)
        if not dropout:
            raise ValueError(
                f"{type(network).__name__} has no dropout module with p > 0, so MC dropout would repeat one "
                "prediction. Build the network with dropout (e.g. monai.networks.nets.UNet(..., dropout=0.1)) "
                "or use TTASampler / EnsembleSampler."
            )
        batch = inputs.shape[0]
        with network_modes(network, train=dropout), mc_dropout_masks(dropout), torch.no_grad():
            split = self._split(network, dropout, inferer, inputs, args, kwargs)
            frontier: dict[int, tuple[Any, ...]] = {}  # the prefix's output for the latest chunk size
            with seeded(self.seed, inputs.device):
                for start in range(0, self._num_samples, self.chunk_size):
                    k = min(self.chunk_size, self._num_samples - start)
                    if split is None or k not in frontier:
                        chunk = inputs if k == 1 else inputs.repeat(k, *([1] * (inputs.ndim - 1)))
                    if split is None:
                        logits = inferer(chunk, network, *args, **kwargs)
                    else:
                        if k not in frontier:
                            frontier = {k: split.prefix(chunk, *args, **kwargs)}
                        logits = split.remainder(*frontier[k])
                    prob = self.activate(logits)
                    yield from prob.split(batch, dim=0)


class TTASampler(Sampler):
    """Test-time augmentation: each sample is a flipped / rotated / intensity-perturbed input, its prediction
    mapped back onto the input grid with the exact inverse of the geometric part.

    Sample 0 is the untouched input. The others use the distinct elements of the group generated by flips of
    the spatial axes and 90° rotations in the plane of the first two spatial axes (8 in 2D, 16 in 3D when
    ``rotations`` and ``flips`` are on), in a seeded random order, cycling when T exceeds their number. Every
    sample but the first also gets a random intensity change ``x * (1 + a) + b * std(x)`` with
    ``a ~ U(-intensity_scale, intensity_scale)``, ``b ~ U(-intensity_shift, intensity_shift)``, plus Gaussian
    noise of ``noise_std * std(x)``.

    Args:
        num_samples: T.
        flips: use flips of the spatial axes.
        rotations: use 90° rotations (needs equal sizes in the rotation plane only if the inferer does).
        intensity_scale, intensity_shift, noise_std: intensity perturbation ranges (relative to the image's
            standard deviation); 0 turns each off.
        seed: random seed of the order and the perturbations; the caller's random state is left untouched.
        activation: ``"softmax"`` or ``"sigmoid"``.
        temperature: the logits are divided by it before the activation (temperature scaling; dimensionless,
            finite, > 0); 1.0: none.
    """

    def __init__(
        self,
        num_samples: int = 8,
        flips: bool = True,
        rotations: bool = True,
        intensity_scale: float = 0.1,
        intensity_shift: float = 0.1,
        noise_std: float = 0.0,
        seed: int | None = 0,
        activation: str = "softmax",
        temperature: float = 1.0,
    ) -> None:
        super().__init__(activation, temperature)
        self._num_samples = check_num_samples(num_samples)
        self.flips = flips
        self.rotations = rotations
        self.intensity_scale = float(intensity_scale)
        self.intensity_shift = float(intensity_shift)
        self.noise_std = float(noise_std)
        self.seed = seed

    @property
    def num_samples(self) -> int:
        return self._num_samples

    def geometric_transforms(self, spatial_dims: int) -> list[tuple[tuple[int, ...], int]]:
        """Distinct ``(flip_axes, quarter_turns)`` pairs for ``spatial_dims`` (2 or 3), the identity first.

        Axes are indices into ``[B, C, *spatial]``; rotations act on axes ``(2, 3)``.
        """
        axes = tuple(range(2, 2 + spatial_dims))
        flip_sets = [()]
        if self.flips:
            flip_sets = [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]
        turns = range(4) if self.rotations else range(1)
        probe = torch.arange(3 ** spatial_dims).reshape(1, 1, *([3] * spatial_dims))
        seen, unique = set(), []
        for flip_axes, k in itertools.product(flip_sets, turns):
            key = tuple(self._forward(probe, flip_axes, k).flatten().tolist())
            if key not in seen:
                seen.add(key)
                unique.append((flip_axes, k))
        return unique

    @staticmethod
    def _forward(x: torch.Tensor, flip_axes: tuple[int, ...], k: int) -> torch.Tensor:
        x = torch.flip(x, flip_axes) if flip_axes else x
        return torch.rot90(x, k, dims=(2, 3)) if k else x

    @staticmethod
    def _inverse(x: torch.Tensor, flip_axes: tuple[int, ...], k: int) -> torch.Tensor:
        x = torch.rot90(x, -k, dims=(2, 3)) if k else x
        return torch.flip(x, flip_axes) if flip_axes else x

    def __call__(self, inputs, network, inferer, *args, **kwargs):
        generator = torch.Generator().manual_seed(self.seed) if self.seed is not None else torch.Generator()
        if self.seed is None:
            generator.seed()
        identity, *others = self.geometric_transforms(inputs.ndim - 2)
        order = [others[i] for i in torch.randperm(len(others), generator=generator).tolist()]
        plan = [identity] + [order[i % len(order)] if order else identity for i in range(self._num_samples - 1)]
        dims = tuple(range(1, inputs.ndim))
        std = inputs.float().std(dim=dims, keepdim=True).clamp_min(1e-8)
        with network_modes(network), torch.no_grad():
            for t, (flip_axes, k) in enumerate(plan):
                x = inputs
                if t > 0:
                    x = self._perturb(inputs, std, generator)
                logits = inferer(self._forward(x, flip_axes, k), network, *args, **kwargs)
                yield self.activate(self._inverse(logits, flip_axes, k))

    def _perturb(self, inputs: torch.Tensor, std: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random intensity change of ``inputs`` ``[B, C, ...]``, one draw per batch item."""
        shape = (inputs.shape[0],) + (1,) * (inputs.ndim - 1)
        a = (torch.rand(shape, generator=generator) * 2 - 1) * self.intensity_scale
        b = (torch.rand(shape, generator=generator) * 2 - 1) * self.intensity_shift
        x = inputs * (1 + a.to(inputs.device)) + b.to(inputs.device) * std
        if self.noise_std > 0:
            noise = torch.randn(inputs.shape, generator=generator).to(inputs.device)
            x = x + noise * self.noise_std * std
        return x
