"""Stage-1 samplers by name, built from one set of arguments: the one place that maps a config's ``sampler`` id onto
a sampler class and its arguments, shared by the bundle's configs and by ``configs/segq_overlay.json``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segq_monai.inferers.aleatoric import AleatoricSampler
from segq_monai.inferers.ensemble import EnsembleSampler
from segq_monai.inferers.foreground import ForegroundBandSampler
from segq_monai.inferers.samplers import MCDropoutSampler, Sampler, SinglePassSampler, TTASampler

__all__ = ["PLAIN_NETWORK_SAMPLERS", "SAMPLERS", "build_sampler"]

#: The samplers by the names a config's ``sampler`` id takes.
SAMPLERS: dict[str, type[Sampler]] = {
    "mc_dropout": MCDropoutSampler,
    "tta": TTASampler,
    "ensemble": EnsembleSampler,
    "single_pass": SinglePassSampler,
    "aleatoric": AleatoricSampler,
}

#: The samplers that run any segmentation network as it is (all but ``aleatoric``, which needs an
#: :class:`~segq_monai.networks.AleatoricNet`): the ``--sampler`` choices of ``demo`` and ``fit``.
PLAIN_NETWORK_SAMPLERS: tuple[str, ...] = tuple(name for name in SAMPLERS if name != "aleatoric")


def build_sampler(
    name: str,
    num_samples: int = 20,
    seed: int | None = 0,
    activation: str = "softmax",
    temperature: float = 1.0,
    checkpoints: Sequence[str | Path] = (),
    checkpoint_key: str | None = None,
    foreground_band: int | None = None,
    **kwargs: Any,
) -> Sampler:
    """The sampler ``name`` (a key of :data:`SAMPLERS`), given the arguments it takes of these.

    Args:
        name: ``"mc_dropout"``, ``"tta"``, ``"ensemble"``, ``"single_pass"`` or ``"aleatoric"`` (logit noise of an
            :class:`~segq_monai.networks.AleatoricNet`, with MC dropout unless ``mc_dropout=False``).
        num_samples: samples per case (``mc_dropout``, ``tta``, ``aleatoric``).
        seed: seed of the sampling noise (``mc_dropout``, ``tta``, ``aleatoric``); None: not reseeded.
        activation: ``"softmax"`` or ``"sigmoid"`` (``aleatoric``: softmax only).
        temperature: stage-1 temperature scaling: the logits are divided by it (dimensionless, > 0; 1.0: none).
        checkpoints: the members' state-dict files (``ensemble``).
        checkpoint_key: key of the state dict inside each member file (``ensemble``); None: the file is the dict.
        foreground_band: sample only in a box this many voxels around the host's predicted foreground
            (:class:`~segq_monai.inferers.foreground.ForegroundBandSampler`: one full pass, then T passes over the
            box); None: sample the whole input.
        kwargs: further arguments of the sampler class, e.g. ``chunk_size`` of :class:`MCDropoutSampler` or
            ``flips`` of :class:`TTASampler` (a config's ``sampler_kwargs``).

    Example::

        "sampler_object": "$segq_monai.build_sampler(@sampler, num_samples=@num_samples, seed=@seed)"
    """
    if name not in SAMPLERS:
        raise ValueError(f"sampler {name!r} is not one of {sorted(SAMPLERS)}; set the config id `sampler` to one.")
    sampler = _build(name, num_samples, seed, activation, temperature, checkpoints, checkpoint_key, **kwargs)
    return sampler if foreground_band is None else ForegroundBandSampler(sampler, margin=foreground_band)


def _build(
    name: str,
    num_samples: int,
    seed: int | None,
    activation: str,
    temperature: float,
    checkpoints: Sequence[str | Path],
    checkpoint_key: str | None,
    **kwargs: Any,
) -> Sampler:
    if name == "single_pass":
        return SinglePassSampler(activation=activation, temperature=temperature, **kwargs)
    if name == "ensemble":
        return EnsembleSampler(
            checkpoints=list(checkpoints), checkpoint_key=checkpoint_key, activation=activation,
            temperature=temperature, **kwargs,
        )  # fmt: skip
    if name == "aleatoric":
        if activation != "softmax":
            raise ValueError(f"the aleatoric sampler draws softmax probabilities; got activation {activation!r}.")
        kwargs.setdefault("mc_dropout", True)
        return AleatoricSampler(num_samples=num_samples, seed=seed, temperature=temperature, **kwargs)
    return SAMPLERS[name](num_samples=num_samples, seed=seed, activation=activation, temperature=temperature, **kwargs)
