"""An ensemble of quality heads, trained together in one loop: their disagreement is the head's spread.

``M`` heads of one architecture, each initialised from its own seed, read the same batches; each is trained on its
own loss (:func:`segq_monai.losses.quality_rank_loss` averages the members' losses), so they share no weight. At
inference :class:`segq_monai.transforms.PredictQuality` takes the mean over members as the predicted Dice and their
standard deviation as ``pred_dice_sd`` (instead of MC dropout in one head). One checkpoint holds every member
(``members.<m>.*`` in its state dict).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["QualityEnsemble", "mean_over_members", "quality_ensemble"]


def _reinitialise(module: nn.Module, seed: int) -> nn.Module:
    """``module`` with every parameter drawn again (each submodule's ``reset_parameters``) from ``seed``; the global
    random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in module.modules():
            if m is not module and hasattr(m, "reset_parameters"):
                m.reset_parameters()
    return module


class QualityEnsemble(nn.Module):
    """``M`` quality heads run side by side.

    Args:
        members: the heads (e.g. :class:`~segq_monai.networks.QualityRegressor`), each mapping ``[B, C_in, *spatial]``
            (and ``scalars`` ``[B, S]`` when given) to Dice ``[B, K]``; at least 2.

    ``forward(x, scalars=None)``: ``[B, C_in, *spatial]`` -> ``[B, M, K]``, member ``m``'s predicted Dice in
    ``[:, m]``. :func:`mean_over_members` gives the point prediction ``[B, K]``.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(
                f"A QualityEnsemble needs at least 2 members, got {len(members)}; use the head itself for one "
                "(quality_members 1)."
            )
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor, scalars: torch.Tensor | None = None) -> torch.Tensor:
        kwargs = {} if scalars is None else {"scalars": scalars}
        return torch.stack([member(x, **kwargs) for member in self.members], dim=1)


def quality_ensemble(network: nn.Module, members: int = 1, seed: int = 0) -> nn.Module:
    """The head of a config with ``members`` copies: ``network`` itself for 1, else a :class:`QualityEnsemble` of
    ``members`` deep copies, member ``m`` initialised from seed ``seed + m`` (``network``'s own weights are not used).

    Args:
        network: one head, as the config's ``quality_network_def`` builds it.
        members: number of heads, >= 1 (config id ``quality_members``).
        seed: the first member's initialisation seed (the run's ``seed``).
    """
    if members < 1:
        raise ValueError(f"quality_members must be >= 1 (1: one head, no ensemble), got {members}.")
    if members == 1:
        return network
    return QualityEnsemble([_reinitialise(copy.deepcopy(network), seed + m) for m in range(members)])


def mean_over_members(pred: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pred, label)`` with an ensemble's member axis averaged out of ``pred``: ``[B, M, K]`` (or a list of ``[M, K]``)
    becomes ``[B, K]`` (``[K]``) to match ``label``; a single head's ``pred`` is returned unchanged. For the output
    transform of the train loop's metric handlers."""

    def mean(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return p.mean(dim=-2) if p.ndim == y.ndim + 1 else p

    if isinstance(pred, torch.Tensor):
        return mean(pred, label), label
    return [mean(p, y) for p, y in zip(pred, label)], label
