"""True segmentation quality (Dice, IoU per foreground class) and the exact Dice <-> IoU relation.

Functional core used by :mod:`segq_monai.transforms.quality` and the evaluation code.

Dice and IoU are MONAI's ``compute_dice`` / ``compute_iou`` with ``ignore_empty=False``, whose convention for empty
masks is this project's: the Dice (and IoU) of two empty masks is 1; of an empty and a non-empty mask it is 0.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.metrics import compute_dice, compute_iou
from monai.utils import convert_to_tensor

__all__ = ["FAILURE_DICE", "segmentation_quality", "dice_to_iou", "iou_to_dice", "as_class_indices"]

#: the failure Dice τ (``tau``): a case (class) whose true Dice is strictly below it is a failure; also the default
#: acceptance threshold of an uncalibrated pipeline (:class:`~segq_monai.transforms.FailureFlagd`)
FAILURE_DICE = 0.8

_T = TypeVar("_T", float, np.ndarray, torch.Tensor)


def as_class_indices(x: NdarrayOrTensor, name: str, num_classes: int) -> torch.Tensor:
    """Check ``x`` holds integer class indices in ``[0, num_classes - 1]`` and return it as an int64 tensor."""
    t = convert_to_tensor(x, track_meta=False)
    if t.dtype == torch.bool:
        t = t.long()
    if t.is_floating_point():
        if not torch.isfinite(t).all() or not torch.equal(t, torch.round(t)):
            bad = torch.unique(t[~torch.isfinite(t) | (t != torch.round(t))])[:5].tolist()
            raise ValueError(
                f"{name} must hold integer class indices, found non-integer values {bad}; pass the argmax / "
                "thresholded segmentation (e.g. AsDiscrete(argmax=True)), not probabilities."
            )
    elif t.is_complex():
        raise ValueError(f"{name} must hold integer class indices, got dtype {t.dtype}.")
    t = t.long()
    bad_mask = (t < 0) | (t >= num_classes)
    if bad_mask.any():
        bad = torch.unique(t[bad_mask])[:10].tolist()
        raise ValueError(
            f"{name} has values {bad} outside [0, {num_classes - 1}] (num_classes={num_classes}); set num_classes "
            f"to at least {int(t.max()) + 1} or remap the labels to 0..{num_classes - 1} "
            "(e.g. with MapLabelValued)."
        )
    return t


def segmentation_quality(
    seg: NdarrayOrTensor, label: NdarrayOrTensor, num_classes: int, batched: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dice and IoU of a segmentation against its label, per foreground class.

    Args:
        seg: predicted class indices, ``[1, H, W[, D]]`` (one case) or ``[B, 1, H, W[, D]]`` when ``batched``.
            Integer values in ``[0, num_classes - 1]``, 0 = background.
        label: ground-truth class indices, same shape as ``seg``.
        num_classes: number of classes including background (>= 2); 2 for a binary task.
        batched: whether the first dimension of ``seg`` and ``label`` is a batch dimension. It must be given
            because ``[1, H, W, D]`` (one 3D case) and ``[B, 1, H, W]`` (a 2D batch) have the same rank.

    Returns:
        ``(dice, iou)``, float32 tensors in [0, 1] of shape ``[K]`` (or ``[B, K]`` when ``batched``) with
        ``K = num_classes - 1``; entry ``k`` is class ``k + 1``. Two empty masks score 1, an empty against a
        non-empty mask scores 0.

    Raises:
        ValueError: shapes differ, there is not exactly one channel, ``num_classes < 2``, or a value is not an
            integer class index in ``[0, num_classes - 1]``.

    Example::

        seg = torch.tensor([[[0, 1, 1, 0]]])    # [1, 1, 4]
        label = torch.tensor([[[0, 1, 0, 0]]])
        segmentation_quality(seg, label, 2)  # (tensor([0.6667]), tensor([0.5000]))
    """
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}.")
    if tuple(seg.shape) != tuple(label.shape):
        raise ValueError(
            f"seg and label must have the same shape, got seg {tuple(seg.shape)} and label {tuple(label.shape)}; "
            "resample the segmentation onto the label's grid first."
        )
    channel_dim = 1 if batched else 0
    min_rank = 3 + channel_dim
    if seg.ndim < min_rank or seg.shape[channel_dim] != 1:
        layout = "[B, 1, H, W[, D]]" if batched else "[1, H, W[, D]]"
        raise ValueError(
            f"seg and label must be channel-first class-index maps {layout} (batched={batched}), got shape "
            f"{tuple(seg.shape)}; convert one-hot maps with argmax and set `batched` to match the input."
        )
    s = as_class_indices(seg, "seg", num_classes)
    lab = as_class_indices(label, "label", num_classes).to(s.device)
    if not batched:
        s, lab = s[None], lab[None]
    s, lab = s.flatten(1)[:, None], lab.flatten(1)[:, None]  # [B, 1, N]
    dices, ious = [], []
    for k in range(1, num_classes):  # one class at a time: memory stays at one mask per case
        s_k, l_k = (s == k).double(), (lab == k).double()  # float64 counts are exact up to 2**53 voxels
        dices.append(compute_dice(s_k, l_k, include_background=True, ignore_empty=False))
        ious.append(compute_iou(s_k, l_k, include_background=True, ignore_empty=False))
    dice, iou = torch.cat(dices, 1).float(), torch.cat(ious, 1).float()  # [B, K]
    return (dice, iou) if batched else (dice[0], iou[0])


def dice_to_iou(dice: _T) -> _T:
    """IoU of a pair of masks from their Dice: ``IoU = D / (2 - D)``; maps [0, 1] onto [0, 1] exactly."""
    return dice / (2 - dice)


def iou_to_dice(iou: _T) -> _T:
    """Dice of a pair of masks from their IoU: ``D = 2 J / (1 + J)``; inverse of :func:`dice_to_iou`."""
    return 2 * iou / (1 + iou)
