"""segq-monai: uncertainty maps and predicted segmentation quality for MONAI pipelines.

Stage 1 (:mod:`segq_monai.samplers`, :mod:`segq_monai.streaming`, :mod:`segq_monai.inferer`) samples a
segmentation network and reduces the samples to a segmentation and spatial uncertainty maps. Stage 2
(:mod:`segq_monai.networks`, :mod:`segq_monai.transforms`, :mod:`segq_monai.metrics`) predicts each image's
Dice / IoU from the image, the segmentation and the maps, and scores that prediction.
"""

from __future__ import annotations

from segq_monai.baselines import BASELINES, ScalarBaselinesd
from segq_monai.inferer import UncertaintyInferer
from segq_monai.networks import QualityRegressor
from segq_monai.quality import dice_to_iou, iou_to_dice, segmentation_quality
from segq_monai.samplers import SAMPLERS, EnsembleSampler, MCDropoutSampler, Sampler, SoftmaxSampler, TTASampler
from segq_monai.streaming import MAPS, StreamingUncertainty, entropy
from segq_monai.transforms import (
    CheckImaged,
    FailureFlagd,
    MRArtifactd,
    PredictQualityd,
    QualityInputd,
    SafeLoadImaged,
    SegmentationQualityd,
    quality_input_channels,
)

__version__ = "0.1.0"

__all__ = [
    "BASELINES",
    "CheckImaged",
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
