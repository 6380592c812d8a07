"""``padded_collate``: a batch of training cases whose images differ in size (slices of several planes).

MONAI's ``pad_list_data_collate`` pads with ``SpatialPad`` and records each pad in the ``MetaTensor``s for an
inverse that training never takes; on small 2D cases that record cost a third of the quality head's epoch (cProfile).
:func:`padded_collate` pads plain tensors with zeros at the end of each spatial axis and stacks them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

__all__ = ["padded_collate", "prepare_quality_batch"]


def _pad_to(tensor: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``tensor`` ``[C, *spatial]`` zero-padded at the end of each spatial axis to ``shape`` (``[C, *spatial]``)."""
    widths = [w for have, want in zip(reversed(tensor.shape[1:]), reversed(shape[1:])) for w in (0, want - have)]
    return F.pad(torch.as_tensor(tensor), widths) if any(widths) else tensor


def padded_collate(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate dictionaries whose tensors of one key may differ in their spatial sizes (``[C, *spatial]``, the same
    ``C`` and number of axes): each is zero-padded at the end of its axes to the largest size in the batch, then
    ``torch.utils.data.default_collate`` stacks them. Keys whose values agree in shape are collated as they are."""
    out = [dict(item) for item in batch]
    for key, value in batch[0].items():
        if not isinstance(value, torch.Tensor) or value.ndim < 2:
            continue
        shapes = [tuple(item[key].shape) for item in batch]
        if len(set(shapes)) > 1:
            largest = [max(s[i] for s in shapes) for i in range(len(shapes[0]))]
            for item in out:
                item[key] = _pad_to(item[key], largest)
    return default_collate(out)


def prepare_quality_batch(
    batch: Mapping[str, Any], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
) -> tuple[Any, ...]:
    """The quality head's ``prepare_batch`` for MONAI's ``SupervisedTrainer``: ``(quality_input, true_dice)`` moved to
    ``device``, ``quality_input`` ``[B, C, *spatial]`` and ``true_dice`` ``[B, K]``; with ``"scalars"`` in the batch
    also ``((), {"scalars": scalars})``, the head's keyword argument, ``[B, S]``. ``kwargs`` (the trainer's
    ``to`` arguments) are not used."""
    inputs = (batch["quality_input"].to(device, non_blocking=non_blocking),
              batch["true_dice"].to(device, non_blocking=non_blocking))  # fmt: skip
    if "scalars" not in batch:
        return inputs
    return inputs + ((), {"scalars": batch["scalars"].to(device, non_blocking=non_blocking)})
