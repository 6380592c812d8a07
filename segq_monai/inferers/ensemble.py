"""Ensembles as a stage-1 sampler: one sample per member network or checkpoint (e.g. the k fold models of stage 1)."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from segq_monai.inferers.modes import network_modes
from segq_monai.inferers.samplers import Sampler

__all__ = ["EnsembleSampler"]


class EnsembleSampler(Sampler):
    """One sample per member of an ensemble: given ``networks``, or ``checkpoints`` loaded into copies of the
    network passed at call time (e.g. the k fold models of stage 1).

    Args:
        networks: the member networks (the ``network`` argument of a call is then ignored).
        checkpoints: paths of state dicts, loaded with ``torch.load(..., weights_only=True)``.
        checkpoint_key: key of the state dict inside each checkpoint file (e.g. ``"network"`` for files
            written by MONAI's ``CheckpointSaver`` with ``save_dict={"network": net}``); ``None``: the file is the
            state dict.
        activation: ``"softmax"`` or ``"sigmoid"``.
        temperature: the logits of every member are divided by it before the activation (temperature scaling;
            dimensionless, finite, > 0); 1.0: none.
    """

    def __init__(
        self,
        networks: Sequence[nn.Module] | None = None,
        checkpoints: Sequence[str | Path] | None = None,
        checkpoint_key: str | None = None,
        activation: str = "softmax",
        temperature: float = 1.0,
    ) -> None:
        super().__init__(activation, temperature)
        if bool(networks) == bool(checkpoints):
            raise ValueError(
                "EnsembleSampler needs a non-empty list of either `networks` or `checkpoints` (not both); "
                f"got {len(networks or [])} networks and {len(checkpoints or [])} checkpoints."
            )
        self.networks = list(networks or [])
        self.state_dicts = [_load_state_dict(Path(p), checkpoint_key) for p in checkpoints or []]

    @property
    def num_samples(self) -> int:
        return len(self.networks) or len(self.state_dicts)

    def _members(self, network: nn.Module) -> Iterator[nn.Module]:
        yield from self.networks
        if self.state_dicts:
            member = copy.deepcopy(network)
            for state in self.state_dicts:
                member.load_state_dict(state)
                yield member

    def __call__(self, inputs, network, inferer, *args, **kwargs):
        for member in self._members(network):
            with network_modes(member), torch.no_grad():
                yield self.activate(inferer(inputs, member, *args, **kwargs))


def _load_state_dict(path: Path, key: str | None) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"Ensemble checkpoint {path} does not exist; train the member or fix the path.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if key is not None:
        if key not in state:
            raise ValueError(f"Checkpoint {path} has no key {key!r} (keys: {sorted(state)}); set checkpoint_key.")
        state = state[key]
    return state
