"""segq-monai: uncertainty maps and predicted segmentation quality for MONAI pipelines.

Stage 1 (:mod:`segq_monai.samplers`, :mod:`segq_monai.streaming`, :mod:`segq_monai.inferer`) samples a
segmentation network and reduces the samples to a segmentation and spatial uncertainty maps. Stage 2
(:mod:`segq_monai.networks`, :mod:`segq_monai.transforms`, :mod:`segq_monai.metrics`) predicts each image's
Dice / IoU from the image, the segmentation and the maps, and scores that prediction.
"""

from __future__ import annotations

from segq_monai.aleatoric import AleatoricNet, AleatoricSampler, SampledLogitLoss, aleatoric_variance
from segq_monai.apps import load_fit, load_quality_head, network_signature
from segq_monai.baselines import BASELINES, ScalarBaselinesd
from segq_monai.calibration import TemperatureScaling, expected_calibration_error, fit_temperature
from segq_monai.confidence import ConfidenceLoss, ConfidenceNet, confidence_map
from segq_monai.conformal import ConformalFlagger, calibrate_crc_threshold, calibrate_selective_threshold
from segq_monai.inferer import UncertaintyInferer
from segq_monai.networks import QualityRegressor
from segq_monai.quality import dice_to_iou, iou_to_dice, segmentation_quality
from segq_monai.samplers import EnsembleSampler, MCDropoutSampler, Sampler, SoftmaxSampler, TTASampler
from segq_monai.streaming import MAPS, StreamingUncertainty, entropy
from segq_monai.transforms import (
    CheckImaged,
    CheckLabeld,
    FailureFlagd,
    MRArtifactd,
    PredictQualityd,
    QualityInputd,
    SafeLoadImaged,
    SegmentationQualityd,
    quality_input_channels,
)

__version__ = "0.1.0"

#: The samplers by the names a bundle config's ``sampler`` id takes.
SAMPLERS: dict[str, type[Sampler]] = {
    "mc_dropout": MCDropoutSampler,
    "tta": TTASampler,
    "ensemble": EnsembleSampler,
    "softmax": SoftmaxSampler,
    "aleatoric": AleatoricSampler,
}

__all__ = [
    "AleatoricNet",
    "AleatoricSampler",
    "BASELINES",
    "ConfidenceLoss",
    "ConfidenceNet",
    "ConformalFlagger",
    "SampledLogitLoss",
    "TemperatureScaling",
    "aleatoric_variance",
    "calibrate_crc_threshold",
    "calibrate_selective_threshold",
    "confidence_map",
    "expected_calibration_error",
    "fit_temperature",
    "CheckImaged",
    "CheckLabeld",
    "load_fit",
    "load_quality_head",
    "network_signature",
    "MAPS",
    "SAMPLERS",
    "FailureFlagd",
    "MRArtifactd",
    "PredictQualityd",
    "QualityInputd",
    "QualityRegressor",
    "SafeLoadImaged",
    "ScalarBaselinesd",
    "SegmentationQualityd",
    "dice_to_iou",
    "iou_to_dice",
    "quality_input_channels",
    "segmentation_quality",
    "EnsembleSampler",
    "MCDropoutSampler",
    "Sampler",
    "SoftmaxSampler",
    "StreamingUncertainty",
    "TTASampler",
    "UncertaintyInferer",
    "entropy",
]
