"""segq-monai: uncertainty maps and predicted segmentation quality for MONAI pipelines.

The package is laid out by kind, as MONAI lays out its own:

* stage 1, the uncertainty sampler: :mod:`segq_monai.inferers` (``UncertaintyInferer``, the samplers, the streaming
  maps, the MC-dropout internals);
* stage 2, the quality head: :mod:`segq_monai.networks` (``QualityRegressor`` and its checkpoint, the stage-1
  networks with extra outputs, a host network's signature), :mod:`segq_monai.losses`, :mod:`segq_monai.transforms`
  (array and dictionary transforms), :mod:`segq_monai.metrics` (true and predicted quality, baselines,
  ``FAILURE_DICE``);
* calibration on a labelled calibration split: :mod:`segq_monai.calibration` (the guaranteed flag, recalibration with
  per-case intervals, the drift check, the stage-1 temperature fit, the calibration file);
* workflows: :mod:`segq_monai.handlers` (Ignite handlers), :mod:`segq_monai.evaluation` (the ``quality.csv`` scheme,
  ``report.json``, tables, figures), :mod:`segq_monai.data` (also the fit folder, ``fit.json``),
  :mod:`segq_monai.monailabel`, :mod:`segq_monai.apps` (the ``python -m segq_monai`` commands).

The rooms import only downward (CONTRIBUTING.md, "Rooms"; ``tests/test_import_graph.py``).

Every public name of a bundle config's ``_target_`` is importable from here.
"""

from __future__ import annotations

from segq_monai.calibration import (
    DiceRecalibration,
    QualityCalibration,
    calibrate_crc_threshold,
    calibrate_dice,
    calibrate_quality_csvs,
    calibrate_selective_threshold,
    expected_calibration_error,
    fit_temperature,
    load_quality_calibration,
)
from segq_monai.data.datalist import load_stage2_items
from segq_monai.data.outputs import items_to_run
from segq_monai.data.fit_folder import load_fit
from segq_monai.handlers import (
    AURC,
    CalibrationReport,
    CohortPage,
    FailureAUROC,
    HostBinding,
    ProgressUpdate,
    QualityRegression,
    QualityReport,
    QualityWriter,
    TemperatureFit,
    rank_handlers,
)
from segq_monai.handlers.resume import EpochSeed, ResumeCheckpoint
from segq_monai.inferers import (
    MAPS,
    PLAIN_NETWORK_SAMPLERS,
    SAMPLERS,
    AleatoricSampler,
    EnsembleSampler,
    ForegroundBandSampler,
    MCDropoutSampler,
    Sampler,
    SinglePassSampler,
    StreamingUncertainty,
    TTASampler,
    UncertaintyInferer,
    aleatoric_variance,
    build_sampler,
    confidence_map,
    entropy,
)
from segq_monai.losses import ConfidenceLoss, QualityRankLoss, SampledLogitLoss
from segq_monai.metrics import BASELINES, FAILURE_DICE, dice_to_iou, iou_to_dice, segmentation_quality
from segq_monai.networks import (
    HEAD_RECIPE,
    AleatoricNet,
    ConfidenceNet,
    QualityEnsemble,
    QualityRegressor,
    load_quality_head,
    mean_over_members,
    network_signature,
    quality_ensemble,
    quality_strides,
)
from segq_monai.transforms import (
    Untracked,
    PLAIN_NETWORK_VARIANTS,
    QUALITY_SCALARS,
    QUALITY_VARIANTS,
    FAILURE_KINDS,
    CheckImaged,
    CheckLabeld,
    FailureFlagd,
    InverseActivation,
    MRArtifactd,
    PredictQualityd,
    QualityInputd,
    QualityScalarsd,
    RecalibrateQualityd,
    SafeLoadImaged,
    ScalarBaselinesd,
    SegmentationFailure,
    SegmentationFailured,
    SegmentationQualityd,
    inverted_keys,
    quality_input_channels,
    scalar_map_keys,
    soft_one_hot,
)

from segq_monai.utils.log_once import say_once

say_once()  # MONAI logs its nvImageCodec warning at every LoadImage: once is enough

__version__ = "0.1.0"

__all__ = [
    "AURC",
    "CalibrationReport",
    "CohortPage",
    "EpochSeed",
    "FailureAUROC",
    "HostBinding",
    "ProgressUpdate",
    "QualityRegression",
    "QualityReport",
    "QualityWriter",
    "ResumeCheckpoint",
    "TemperatureFit",
    "rank_handlers",
    "InverseActivation",
    "inverted_keys",
    "scalar_map_keys",
    "HEAD_RECIPE",
    "Untracked",
    "AleatoricNet",
    "AleatoricSampler",
    "BASELINES",
    "FAILURE_DICE",
    "ConfidenceLoss",
    "ConfidenceNet",
    "DiceRecalibration",
    "QualityCalibration",
    "QualityEnsemble",
    "QualityRankLoss",
    "SampledLogitLoss",
    "aleatoric_variance",
    "build_sampler",
    "calibrate_crc_threshold",
    "calibrate_dice",
    "calibrate_quality_csvs",
    "calibrate_selective_threshold",
    "confidence_map",
    "expected_calibration_error",
    "fit_temperature",
    "CheckImaged",
    "CheckLabeld",
    "load_fit",
    "load_stage2_items",
    "items_to_run",
    "load_quality_head",
    "load_quality_calibration",
    "network_signature",
    "MAPS",
    "PLAIN_NETWORK_VARIANTS",
    "QUALITY_SCALARS",
    "QUALITY_VARIANTS",
    "PLAIN_NETWORK_SAMPLERS",
    "SAMPLERS",
    "FAILURE_KINDS",
    "FailureFlagd",
    "MRArtifactd",
    "PredictQualityd",
    "QualityInputd",
    "QualityRegressor",
    "QualityScalarsd",
    "RecalibrateQualityd",
    "SafeLoadImaged",
    "ScalarBaselinesd",
    "SegmentationFailure",
    "SegmentationFailured",
    "SegmentationQualityd",
    "dice_to_iou",
    "iou_to_dice",
    "mean_over_members",
    "quality_ensemble",
    "quality_input_channels",
    "quality_strides",
    "segmentation_quality",
    "soft_one_hot",
    "EnsembleSampler",
    "ForegroundBandSampler",
    "MCDropoutSampler",
    "Sampler",
    "SinglePassSampler",
    "StreamingUncertainty",
    "TTASampler",
    "UncertaintyInferer",
    "entropy",
]
