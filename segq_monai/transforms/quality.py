"""Quality transforms: true Dice/IoU, the stage-2 input stack, predicted quality and the failure flag.

Array transforms and their dictionary twins (:class:`PredictQuality` lives in :mod:`segq_monai.transforms.predict`
and is imported here too) (aliases ``XD = XDict = Xd``). Keys follow the data keys table of
CONTRIBUTING.md: ``seg``/``label`` are ``[1, H, W[, D]]`` class-index maps, ``true_dice``/``true_iou``/``pred_dice``/
``pred_iou`` are ``[K]`` with ``K = num_classes - 1`` foreground classes, ``flagged`` is a ``[]`` bool tensor.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.networks.utils import one_hot
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_tensor, ensure_tuple

from segq_monai.metrics.quality import FAILURE_DICE, as_class_indices, segmentation_quality
from segq_monai.transforms.predict import PredictQuality, PredictQualityD, PredictQualityd, PredictQualityDict

__all__ = [
    "PLAIN_NETWORK_VARIANTS",
    "QUALITY_VARIANTS",
    "SegmentationQuality",
    "SegmentationQualityd",
    "SegmentationQualityD",
    "SegmentationQualityDict",
    "QualityInput",
    "QualityInputd",
    "QualityInputD",
    "QualityInputDict",
    "quality_input_channels",
    "FailureFlag",
    "FailureFlagd",
    "FailureFlagD",
    "FailureFlagDict",
    "PredictQuality",
    "PredictQualityd",
    "PredictQualityD",
    "PredictQualityDict",
]


# --------------------------------------------------------------------------------------------- true quality
class SegmentationQuality(Transform):
    """True Dice and IoU of one segmentation against its label, per foreground class.

    Args:
        num_classes: classes including background (>= 2); with ``multi_label``, the number of mask channels.
        multi_label: ``seg`` and ``label`` are ``[C, H, W[, D]]`` binary masks, one per channel (a sigmoid
            network's output, e.g. BraTS' tumour regions), scored channel by channel.

    ``__call__(seg, label)``: both ``[1, H, W[, D]]`` class indices (multi-label: ``[C, ...]`` masks) on the same
    grid; returns ``(dice, iou)``, float32 ``[K]`` in [0, 1] with ``K = num_classes - 1`` (multi-label:
    ``K = C``); see :func:`segq_monai.metrics.quality.segmentation_quality` for the empty-mask convention. If both
    are MetaTensors their affines must agree (same grid).
    """

    def __init__(self, num_classes: int, multi_label: bool = False) -> None:
        self.num_classes = num_classes
        self.multi_label = multi_label

    def __call__(self, seg: NdarrayOrTensor, label: NdarrayOrTensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(seg, MetaTensor) and isinstance(label, MetaTensor):
            a_seg = seg.affine.detach().cpu().double().numpy()
            a_lab = label.affine.detach().cpu().double().numpy()
            if a_seg.shape != a_lab.shape or not np.allclose(a_seg, a_lab, rtol=1e-5, atol=1e-4):
                raise ValueError(
                    "seg and label lie on different grids (their affines differ):\n"
                    f"seg affine:\n{a_seg}\nlabel affine:\n{a_lab}\n"
                    "resample the segmentation onto the label's grid (e.g. Invertd, or ResampleToMatchd) first."
                )
        if not self.multi_label:
            return segmentation_quality(seg, label, self.num_classes)
        if seg.shape[0] != self.num_classes or tuple(seg.shape) != tuple(label.shape):
            raise ValueError(
                f"multi-label seg and label must both be [{self.num_classes}, *spatial] masks, got seg "
                f"{tuple(seg.shape)} and label {tuple(label.shape)}."
            )
        scores = [segmentation_quality(seg[c : c + 1], label[c : c + 1], 2) for c in range(self.num_classes)]
        return torch.cat([d for d, _ in scores]), torch.cat([i for _, i in scores])


class SegmentationQualityd(MapTransform):
    """Dictionary twin of :class:`SegmentationQuality`: reads ``keys`` = (segmentation, label), writes ``dice_key``
    and ``iou_key`` (float32 ``[num_classes - 1]`` in [0, 1]).

    With ``allow_missing_keys``, a case without one of the two keys (e.g. unlabelled) passes through unchanged.
    """

    def __init__(
        self,
        num_classes: int,
        keys: KeysCollection = ("seg", "label"),
        dice_key: str = "true_dice",
        iou_key: str = "true_iou",
        multi_label: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 2:
            raise ValueError(f"SegmentationQualityd keys are (segmentation, label), got {self.keys}.")
        self.dice_key, self.iou_key = dice_key, iou_key
        self.quality = SegmentationQuality(num_classes, multi_label)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        present = list(self.key_iterator(d))
        if len(present) < 2:  # only reached with allow_missing_keys
            return d
        d[self.dice_key], d[self.iou_key] = self.quality(d[present[0]], d[present[1]])
        return d


# ------------------------------------------------------------------------------------------ stage-2 input
#: The quality head's input variants from the literature, by name: the keys :class:`QualityInputd` stacks (one source
#: for the bundle configs, ``"quality_variants": "$segq_monai.QUALITY_VARIANTS"``, and the command lines).
#: ``image_seg_confidence`` needs a stage-1 network with a learned-confidence output (``confidence_network.json``).
QUALITY_VARIANTS: dict[str, tuple[str, ...]] = {
    "image": ("image",),
    "image_seg": ("image", "seg"),
    "seg_entropy": ("seg", "entropy"),
    "image_seg_entropy": ("image", "seg", "entropy"),
    "image_seg_confidence": ("image", "seg", "confidence"),
}
#: The variants any segmentation network feeds (all but those reading a learned-confidence map): the
#: ``--quality_variant(s)`` choices of ``fit`` and ``demo``.
PLAIN_NETWORK_VARIANTS: tuple[str, ...] = tuple(v for v, keys in QUALITY_VARIANTS.items() if "confidence" not in keys)

def _stack(
    parts: Sequence[tuple[str, NdarrayOrTensor, bool]], num_classes: int, multi_label: bool = False
) -> torch.Tensor:
    """Concatenate ``(name, array [C, *spatial], is_seg)`` parts along channels as float32; a segmentation is
    one-hot encoded (multi-label: checked to be ``num_classes`` binary masks and kept)."""
    if not parts:
        raise ValueError("QualityInput needs at least one input array (image, seg or an uncertainty map).")
    tensors, shapes = [], []
    for name, x, is_seg in parts:
        t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
        if t.ndim < 3:
            raise ValueError(
                f"'{name}' must be channel-first [C, H, W[, D]], got shape {tuple(t.shape)}; add a channel "
                "dimension (EnsureChannelFirstd)."
            )
        if is_seg and multi_label:
            if t.shape[0] != num_classes:
                raise ValueError(
                    f"'{name}' is a multi-label segmentation and must hold {num_classes} masks [C, H, W[, D]], got "
                    f"shape {tuple(t.shape)}."
                )
            t = torch.stack([as_class_indices(c, name, 2) for c in t])
        elif is_seg:
            if t.shape[0] != 1:
                raise ValueError(
                    f"'{name}' is one-hot encoded and must be a class-index map [1, H, W[, D]], got shape "
                    f"{tuple(t.shape)}; take the argmax over channels first."
                )
            t = one_hot(as_class_indices(t, name, num_classes), num_classes, dim=0)
        tensors.append(t.float())
        shapes.append(f"{name} {tuple(t.shape[1:])}")
    if len({tuple(t.shape[1:]) for t in tensors}) > 1:
        raise ValueError(
            f"QualityInput parts must share one spatial shape, got {', '.join(shapes)}; resample them to one grid."
        )
    device = tensors[0].device
    return torch.cat([t.to(device) for t in tensors], dim=0)


class QualityInput(Transform):
    """Stage-2 input stack: image channels, one-hot segmentation, then each uncertainty map.

    Args:
        num_classes: classes including background; the segmentation becomes ``num_classes`` channels.
        multi_label: the segmentation is ``[num_classes, *spatial]`` binary masks (a sigmoid network's), used as
            they are.

    ``__call__(image, seg, *maps)``: ``image`` ``[C_img, *spatial]`` or ``None``, ``seg`` ``[1, *spatial]``
    class indices or ``None``, each map ``[C_m, *spatial]`` (e.g. entropy, nats). Returns float32
    ``[C_img + num_classes + sum(C_m), *spatial]`` in that order; a ``None`` part is left out, so the ablation
    variants (image only; image+seg; seg+uncertainty; image+seg+uncertainty) are calls with other arguments.
    """

    def __init__(self, num_classes: int, multi_label: bool = False) -> None:
        if num_classes < 2 and not multi_label:
            raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}.")
        self.num_classes = num_classes
        self.multi_label = multi_label

    def __call__(
        self, image: NdarrayOrTensor | None, seg: NdarrayOrTensor | None, *maps: NdarrayOrTensor
    ) -> torch.Tensor:
        parts = [("image", image, False), ("seg", seg, True)]
        parts += [(f"map {i}", m, False) for i, m in enumerate(maps)]
        return _stack([p for p in parts if p[1] is not None], self.num_classes, self.multi_label)


class QualityInputd(MapTransform):
    """Dictionary twin of :class:`QualityInput`: stacks ``keys`` in the given order into ``output_key``.

    The key equal to ``seg_key`` is one-hot encoded (``num_classes`` channels; with ``multi_label`` it holds
    ``num_classes`` binary masks already and is kept); every other key is copied as is.
    The paper's variants are key lists::

        ["image"]                                 # image only
        ["image", "seg"]                          # image + segmentation
        ["seg", "entropy"]                        # segmentation + uncertainty
        ["image", "seg", "entropy"]               # image + segmentation + uncertainty (DeVries & Taylor)

    Use :func:`quality_input_channels` for the regressor's ``in_channels``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        num_classes: int,
        seg_key: str = "seg",
        output_key: str = "quality_input",
        multi_label: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if num_classes < 2 and not multi_label:
            raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}.")
        self.num_classes = num_classes
        self.seg_key = seg_key
        self.output_key = output_key
        self.multi_label = multi_label

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        missing = [k for k in self.keys if k not in d]
        if missing and not self.allow_missing_keys:
            raise ValueError(f"QualityInputd keys {missing} are missing from the data (has {list(d)}).")
        parts = [(str(k), d[k], k == self.seg_key) for k in self.key_iterator(d)]
        d[self.output_key] = _stack(parts, self.num_classes, self.multi_label)
        return d


def quality_input_channels(
    keys: KeysCollection,
    num_classes: int,
    image_channels: int = 1,
    map_channels: int | Mapping[str, int] = 1,
    seg_key: str = "seg",
    image_key: str = "image",
) -> int:
    """Channels of the :class:`QualityInputd` stack, for ``QualityRegressor(in_channels=...)``.

    ``seg_key`` counts ``num_classes``, ``image_key`` counts ``image_channels``, every other key counts
    ``map_channels`` (an int, or a per-key mapping defaulting to 1, e.g. ``{"variance": num_classes}``).

    Example::

        quality_input_channels(["image", "seg", "entropy"], num_classes=2)  # 1 + 2 + 1 = 4
    """
    total = 0
    for k in ensure_tuple(keys):
        if k == seg_key:
            total += num_classes
        elif k == image_key:
            total += image_channels
        elif isinstance(map_channels, Mapping):
            total += map_channels.get(k, 1)
        else:
            total += map_channels
    return total


# ------------------------------------------------------------------------------------- predicted quality
class FailureFlag(Transform):
    """Predicted failure: any foreground class's *predicted* Dice is below the ``acceptance_threshold``.

    ``acceptance_threshold`` is a Dice in [0, 1]: without a calibration the bundle sets it to the failure Dice τ
    (``tau``, the line on the *true* Dice); with one, to the calibrated λ̂ (:mod:`segq_monai.calibration.flag`),
    which may be ``inf``: flag every case (no threshold could be certified).

    ``__call__(pred_dice)``: ``[K]`` -> bool ``[]`` (or ``[B, K]`` -> ``[B]``).
    """

    def __init__(self, acceptance_threshold: float = FAILURE_DICE) -> None:
        if not (0.0 <= acceptance_threshold <= 1.0 or acceptance_threshold == float("inf")):
            raise ValueError(
                "acceptance_threshold is a predicted Dice and must be in [0, 1] (or inf: flag all), got "
                f"{acceptance_threshold}."
            )
        self.acceptance_threshold = acceptance_threshold

    def __call__(self, pred_dice: NdarrayOrTensor) -> torch.Tensor:
        t = convert_to_tensor(pred_dice, track_meta=False)
        if t.ndim == 0:
            t = t[None]
        return (t < self.acceptance_threshold).any(dim=-1)


class FailureFlagd(MapTransform):
    """Dictionary twin of :class:`FailureFlag`: reads ``keys`` (each ``[K]`` predicted Dice), writes ``output_key``:
    flagged when any of them is (a missing key, with ``allow_missing_keys``, flags nothing)."""

    def __init__(
        self,
        keys: KeysCollection = "pred_dice",
        acceptance_threshold: float = FAILURE_DICE,
        output_key: str = "flagged",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_key = output_key
        self.flag = FailureFlag(acceptance_threshold)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        flags = [self.flag(d[k]) for k in self.key_iterator(d)]
        if flags:
            d[self.output_key] = torch.stack(flags).any(dim=0)
        return d


SegmentationQualityD = SegmentationQualityDict = SegmentationQualityd
QualityInputD = QualityInputDict = QualityInputd
FailureFlagD = FailureFlagDict = FailureFlagd
