"""Network modes for sampling: which modules are stochastic, how their masks are drawn, and a seeded random state that
leaves the caller's."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

__all__ = ["dropout_modules", "mc_dropout_masks", "network_modes", "seeded"]


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


def _uniform_mask_dropout(module: nn.Dropout, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` with its mask drawn as ``U >= p``, ``U ~ U[0, 1)`` in float32 (CPU tensors in train mode)."""
    if not module.training or x.device.type != "cpu":
        return nn.Dropout.forward(module, x)
    if module.p >= 1.0:
        return x.zero_() if module.inplace else torch.zeros_like(x)
    keep = torch.rand(x.shape, dtype=torch.float32, device=x.device) >= module.p  # P(keep) = 1 - p
    scale = 1.0 / (1.0 - module.p)
    return x.mul_(keep).mul_(scale) if module.inplace else x * keep * scale


@contextmanager
def mc_dropout_masks(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Inside the block, the ``nn.Dropout`` modules among ``modules`` draw their masks from uniform numbers on CPUs.

    PyTorch's dropout draws an element-wise mask with ``torch.bernoulli_``, about 10 ns per element on a CPU core,
    five times ``torch.rand`` (``benchmarks/bench_prefix.py`` prints it): for MC dropout at full resolution the masks
    cost as much as the network. Here each element is kept when ``U >= p`` for ``U ~ U[0, 1)`` (float32), so
    ``P(keep) = 1 - p`` and kept values are scaled by ``1 / (1 - p)``, exactly the distribution of
    ``nn.Dropout``, from other random numbers than ``network.train()`` would draw. Exact ``nn.Dropout`` only
    (subclasses and whole-channel dropout keep their own forward); CUDA tensors, eval mode and ``p = 0`` keep
    PyTorch's kernel. Forwards are restored on exit, also after an exception.
    """
    patched = [m for m in modules if type(m) is nn.Dropout]
    saved = [(m, m.__dict__.get("forward")) for m in patched]
    try:
        for m in patched:
            m.forward = functools.partial(_uniform_mask_dropout, m)
        yield
    finally:
        for m, forward in saved:
            if forward is None:
                m.__dict__.pop("forward", None)
            else:
                m.forward = forward


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
