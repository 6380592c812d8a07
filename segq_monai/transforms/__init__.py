"""Transforms: array classes and their dictionary twins."""

from __future__ import annotations

from segq_monai.transforms.activation import InverseActivation
from segq_monai.transforms.artifacts import (
    ARTIFACT_KINDS,
    EXTRA_ARTIFACT_KINDS,
    MRArtifact,
    MRArtifactD,
    MRArtifactd,
    MRArtifactDict,
    apply_mr_artifact,
    graded_artifact_plan,
)
from segq_monai.transforms.baselines import ScalarBaselinesD, ScalarBaselinesd, ScalarBaselinesDict
from segq_monai.transforms.checks import CheckImage, CheckImageD, CheckImaged, CheckImageDict, SafeLoadImaged
from segq_monai.transforms.failure_kinds import FAILURE_KIND_REGISTRY, FAILURE_KINDS, FailureKind, corrupt_prob
from segq_monai.transforms.failure_maps import morph_prob, soft_one_hot, translate_prob
from segq_monai.transforms.failures import (
    FailureCase,
    SegmentationFailure,
    SegmentationFailureD,
    SegmentationFailured,
    SegmentationFailureDict,
)
from segq_monai.transforms.keys import inverted_keys, scalar_map_keys
from segq_monai.transforms.labels import CheckLabel, CheckLabelD, CheckLabeld, CheckLabelDict
from segq_monai.transforms.quality import (
    PLAIN_NETWORK_VARIANTS,
    QUALITY_VARIANTS,
    FailureFlag,
    FailureFlagD,
    FailureFlagd,
    FailureFlagDict,
    PredictQuality,
    PredictQualityD,
    PredictQualityd,
    PredictQualityDict,
    QualityInput,
    QualityInputD,
    QualityInputd,
    QualityInputDict,
    SegmentationQuality,
    SegmentationQualityD,
    SegmentationQualityd,
    SegmentationQualityDict,
    quality_input_channels,
)
from segq_monai.transforms.recalibration import (
    RecalibrateQuality,
    RecalibrateQualityD,
    RecalibrateQualityd,
    RecalibrateQualityDict,
)
from segq_monai.transforms.untracked import Untracked
from segq_monai.transforms.scalars import (
    QUALITY_SCALARS,
    QualityScalars,
    QualityScalarsD,
    QualityScalarsd,
    QualityScalarsDict,
    foreground_fraction,
)
