"""Network modes for sampling: which modules are stochastic, and a seeded random state that leaves the caller's."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

__all__ = ["dropout_modules", "network_modes", "seeded"]


def dropout_modules(network: nn.Module) -> list[nn.Module]:
    """The dropout modules of ``network`` with a non-zero drop probability."""
    return [m for m in network.modules() if isinstance(m, _DropoutNd) and m.p > 0]


@contextmanager
def network_modes(network: nn.Module, train: Sequence[nn.Module] = ()) -> Iterator[None]:
    """Put ``network`` in eval mode with only ``train`` in train mode; restore every module's mode on exit."""
    saved = [(m, m.training) for m in network.modules()]
    try:
        network.eval()
        for m in train:
            m.train()
        yield
    finally:
        for m, mode in saved:
            m.training = mode


@contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Run the block under ``torch.manual_seed(seed)`` without changing the caller's random state."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
