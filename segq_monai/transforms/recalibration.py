"""Recalibrated predicted quality with per-case intervals and the calibrated failure flag.

Array transform and its dictionary twin (aliases ``XD = XDict = Xd``). They take a
:class:`segq_monai.calibration.calibration_file.QualityCalibration` (one head at one site) and replace the
fixed-threshold :class:`~segq_monai.transforms.FailureFlagd` of an uncalibrated pipeline.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_numpy

from segq_monai.metrics.quality import dice_to_iou

if TYPE_CHECKING:
    from segq_monai.calibration.calibration_file import QualityCalibration

__all__ = ["RecalibrateQuality", "RecalibrateQualityD", "RecalibrateQualityd", "RecalibrateQualityDict"]


class RecalibrateQuality(Transform):
    """One case's raw predicted Dice ``[K]`` -> recalibrated Dice, its interval and the calibrated flag.

    Args:
        calibration: the site's calibration (its classes must be the head's ``K`` foreground classes).

    ``__call__(pred_dice, pred_sd=None)``: raw ``[K]`` in [0, 1] (and the head's spread ``[K]``, Dice units, as
    ``PredictQuality(num_samples > 1)`` gives it) -> dict of float32 ``[K]`` tensors ``pred_dice`` (the recorded
    recalibration map), ``pred_dice_raw`` (the input), ``pred_iou`` (``= pred_dice / (2 - pred_dice)``),
    ``pred_dice_lo`` / ``pred_dice_hi`` (conformal interval at ``calibration.coverage``: normalised by ``pred_sd``
    where the calibration is, absolute without ``pred_sd``), and ``flagged``, a bool ``[]`` tensor: the minimum raw
    Dice over classes is below the calibrated ``λ̂``.
    """

    def __init__(self, calibration: QualityCalibration) -> None:
        self.calibration = calibration

    def __call__(self, pred_dice: NdarrayOrTensor, pred_sd: NdarrayOrTensor | None = None) -> dict[str, torch.Tensor]:
        raw = convert_to_numpy(pred_dice).reshape(-1)
        sd = None if pred_sd is None else convert_to_numpy(pred_sd).reshape(-1)
        dice, lo, hi = (torch.as_tensor(a, dtype=torch.float32) for a in self.calibration.apply(raw, sd))
        return {
            "pred_dice": dice,
            "pred_dice_raw": torch.as_tensor(raw, dtype=torch.float32),
            "pred_iou": dice_to_iou(dice),
            "pred_dice_lo": lo,
            "pred_dice_hi": hi,
            "flagged": torch.tensor(self.calibration.flagged(raw)),
        }


class RecalibrateQualityd(MapTransform):
    """Dictionary twin of :class:`RecalibrateQuality`: reads each of ``keys`` (raw ``[K]`` predicted Dice, as
    :class:`~segq_monai.transforms.PredictQualityd` writes it) and, where present, ``sd_key`` (the head's spread),
    and writes the key it read, recalibrated, beside ``<key>_raw``, ``<key>_lo`` and ``<key>_hi`` (for the default
    key: ``pred_dice``, ``pred_dice_raw``, ``pred_dice_lo``, ``pred_dice_hi``), and ``iou_key`` and ``flag_key``.
    With ``allow_missing_keys``, a case without the key passes through unchanged."""

    def __init__(
        self,
        calibration: QualityCalibration,
        keys: KeysCollection = "pred_dice",
        sd_key: str = "pred_dice_sd",
        iou_key: str = "pred_iou",
        flag_key: str = "flagged",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.sd_key, self.iou_key, self.flag_key = sd_key, iou_key, flag_key
        self.recalibrate = RecalibrateQuality(calibration)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            out = self.recalibrate(d[key], d.get(self.sd_key))
            d[key], d[self.iou_key], d[self.flag_key] = out["pred_dice"], out["pred_iou"], out["flagged"]
            for part in ("raw", "lo", "hi"):
                d[f"{key}_{part}"] = out[f"pred_dice_{part}"]
        return d


RecalibrateQualityD = RecalibrateQualityDict = RecalibrateQualityd
