"""Ignite metric handlers over the stage-2 quality metrics of :mod:`segq_monai.metrics`.

Each handler expects ``engine.state.output`` (after ``output_transform``) to be ``(y_pred, y)``: a predicted quality
or confidence and the true quality, batch-first ``[B, K]`` tensors (or lists of ``[K]`` tensors), K foreground
classes. Values are buffered over the epoch and scored once on completion; with ``save_details`` the buffered
``[y_pred, y]`` (each ``[N, K]``) are stored in ``engine.state.metric_details[name]``.

Example::

    evaluator = SupervisedEvaluator(..., key_val_metric={
        "val_spearman": QualityRegression("spearman", output_transform=from_engine(["pred_dice", "true_dice"])),
    })
"""

from __future__ import annotations

from collections.abc import Callable

from monai.handlers import IgniteMetricHandler
from monai.utils import MetricReduction

from segq_monai.metrics import FAILURE_DICE, AURCMetric, FailureAUROCMetric, QualityRegressionMetric

__all__ = ["QualityRegression", "FailureAUROC", "AURC"]


class QualityRegression(IgniteMetricHandler):
    """MAE, RMSE, Pearson, Spearman or R² of predicted against true quality (:class:`QualityRegressionMetric`).

    Args:
        metric_name: ``"mae"``, ``"rmse"``, ``"pearson"``, ``"spearman"`` or ``"r2"``.
        reduction: ``"mean"`` over classes (ignoring NaN) or ``"none"`` (per class).
        output_transform: maps ``engine.state.output`` to ``(y_pred, y)``.
        save_details: store the buffered per-case values in ``engine.state.metric_details``.
    """

    def __init__(
        self,
        metric_name: str = "mae",
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = QualityRegressionMetric(metric_name=metric_name, reduction=reduction)
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)


class FailureAUROC(IgniteMetricHandler):
    """AUROC for detecting failures (``true_dice < tau``) from a confidence (:class:`FailureAUROCMetric`).

    Args:
        tau: the failure Dice τ: a case is a failure when its true Dice is below it.
        reduction: ``"mean"`` over classes (ignoring NaN) or ``"none"`` (per class).
        output_transform: maps ``engine.state.output`` to ``(confidence, true_dice)``.
        save_details: store the buffered per-case values in ``engine.state.metric_details``.
    """

    def __init__(
        self,
        tau: float = FAILURE_DICE,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = FailureAUROCMetric(tau=tau, reduction=reduction)
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)


class AURC(IgniteMetricHandler):
    """Area under the risk-coverage curve (or its excess over optimal), risk = 1 - true Dice (:class:`AURCMetric`).

    Args:
        excess: report e-AURC instead of AURC.
        reduction: ``"mean"`` over classes (ignoring NaN) or ``"none"`` (per class).
        output_transform: maps ``engine.state.output`` to ``(confidence, true_dice)``.
        save_details: store the buffered per-case values in ``engine.state.metric_details``.
    """

    def __init__(
        self,
        excess: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = AURCMetric(excess=excess, reduction=reduction)
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
