"""Transforms: array classes and their dictionary twins."""

from __future__ import annotations

from segq_monai.transforms.artifacts import (
    ARTIFACT_KINDS,
    MRArtifact,
    MRArtifactd,
    MRArtifactD,
    MRArtifactDict,
    apply_mr_artifact,
    graded_artifact_plan,
)
from segq_monai.transforms.checks import CheckImage, CheckImaged, CheckImageD, CheckImageDict, SafeLoadImaged
from segq_monai.transforms.quality import (
    FailureFlag,
    FailureFlagd,
    FailureFlagD,
    FailureFlagDict,
    PredictQuality,
    PredictQualityd,
    PredictQualityD,
    PredictQualityDict,
    QualityInput,
    QualityInputd,
    QualityInputD,
    QualityInputDict,
    SegmentationQuality,
    SegmentationQualityd,
    SegmentationQualityD,
    SegmentationQualityDict,
    quality_input_channels,
)
