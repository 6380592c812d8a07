"""The stage-2 metrics of :mod:`segq_monai.metrics.regression` as ``monai.metrics.CumulativeIterationMetric``:
:class:`QualityRegressionMetric`, :class:`FailureAUROCMetric` and :class:`AURCMetric` buffer per-case values
``[B, K]`` over iterations and compute once in ``aggregate()`` (the shape of MONAI's ``ROCAUCMetric``)."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from monai.metrics import CumulativeIterationMetric
from monai.utils import MetricReduction

from segq_monai.metrics.quality import FAILURE_DICE
from segq_monai.metrics.regression import (
    ArrayLike,
    aurc,
    excess_aurc,
    failure_auroc,
    mean_absolute_error,
    pearson_correlation,
    r2_score,
    root_mean_squared_error,
    spearman_correlation,
)

__all__ = ["QualityRegressionMetric", "FailureAUROCMetric", "AURCMetric"]


class _BufferedQualityMetric(CumulativeIterationMetric):
    """Buffers per-case ``(y_pred, y)`` pairs ``[B, K]``; subclasses set ``_score`` (two ``[N, K]`` arrays -> ``[K]``).

    Args:
        reduction: ``"mean"`` averages the per-class values over classes, ignoring NaN (NaN with a ``UserWarning``
            if every class is NaN); ``"none"`` returns the per-class tensor ``[K]``.
    """

    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN) -> None:
        super().__init__()
        if reduction not in (MetricReduction.MEAN, MetricReduction.NONE):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")
        self.reduction = MetricReduction(reduction)

    def _score(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"Subclass {self.__class__.__name__} must implement this method.")

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Check one batch and return it unchanged as ``[B, K]`` (``[B]`` becomes ``[B, 1]``) for buffering."""
        if y is None:
            raise ValueError(f"{self.__class__.__name__} needs the true quality `y`, got None.")
        if y_pred.shape != y.shape:
            raise ValueError(
                f"y_pred and y must have the same shape [B, K], got {tuple(y_pred.shape)} and {tuple(y.shape)}."
            )
        if y_pred.ndim == 1:
            y_pred, y = y_pred[:, None], y[:, None]
        if y_pred.ndim != 2:
            raise ValueError(f"y_pred and y must be [B, K] (cases, classes), got shape {tuple(y_pred.shape)}.")
        return y_pred, y

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        """Score all buffered cases; float64 tensor ``[]`` for ``reduction="mean"``, ``[K]`` for ``"none"``."""
        buffer = self.get_buffer()
        if buffer is None:
            raise ValueError(f"{self.__class__.__name__} holds no cases; call it on at least one batch first.")
        y_pred, y = buffer
        per_class = self._score(y_pred, y)
        if self.reduction == MetricReduction.NONE:
            return per_class
        valid = ~torch.isnan(per_class)
        if not valid.any():
            warnings.warn(f"{self.__class__.__name__}: every class is NaN; the mean is NaN.", UserWarning, stacklevel=2)
            return torch.tensor(float("nan"), dtype=torch.float64)
        return per_class[valid].mean()


class QualityRegressionMetric(_BufferedQualityMetric):
    """Regression score of predicted quality ``y_pred`` against true quality ``y``, both ``[B, K]``.

    Args:
        metric_name: ``"mae"``, ``"rmse"``, ``"pearson"``, ``"spearman"`` or ``"r2"`` (see the functions of the
            same meaning in this module).
        reduction: ``"mean"`` over classes (ignoring NaN) or ``"none"`` (per-class tensor ``[K]``).

    Example::

        metric = QualityRegressionMetric("spearman")
        metric(y_pred=pred_dice, y=dice)  # [B, K] each, once per iteration
        rho = metric.aggregate().item()
    """

    _FUNCTIONS: dict[str, Callable[[ArrayLike, ArrayLike], float | torch.Tensor]] = {
        "mae": mean_absolute_error,
        "rmse": root_mean_squared_error,
        "pearson": pearson_correlation,
        "spearman": spearman_correlation,
        "r2": r2_score,
    }

    def __init__(self, metric_name: str = "mae", reduction: MetricReduction | str = MetricReduction.MEAN) -> None:
        super().__init__(reduction=reduction)
        if metric_name not in self._FUNCTIONS:
            raise ValueError(f"metric_name must be one of {sorted(self._FUNCTIONS)}, got {metric_name!r}.")
        self.metric_name = metric_name

    def _score(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._FUNCTIONS[self.metric_name](y_pred, y)  # type: ignore[return-value]


class FailureAUROCMetric(_BufferedQualityMetric):
    """Failure-detection AUROC (:func:`failure_auroc`) of confidence ``y_pred`` against true quality ``y``, ``[B, K]``.

    Args:
        tau: the failure Dice τ: a case is a failure when ``y < tau``.
        reduction: ``"mean"`` over classes (ignoring NaN) or ``"none"`` (per-class tensor ``[K]``).
    """

    def __init__(self, tau: float = FAILURE_DICE, reduction: MetricReduction | str = MetricReduction.MEAN) -> None:
        super().__init__(reduction=reduction)
        self.tau = float(tau)

    def _score(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return failure_auroc(y_pred, y, tau=self.tau)  # type: ignore[return-value]


class AURCMetric(_BufferedQualityMetric):
    """AURC (or e-AURC) of confidence ``y_pred`` with risk ``1 - y``, where ``y`` is the true Dice, ``[B, K]``.

    Args:
        excess: if True, compute e-AURC (:func:`excess_aurc`) instead of AURC (:func:`aurc`).
        reduction: ``"mean"`` over classes (ignoring NaN) or ``"none"`` (per-class tensor ``[K]``).
    """

    def __init__(self, excess: bool = False, reduction: MetricReduction | str = MetricReduction.MEAN) -> None:
        super().__init__(reduction=reduction)
        self.excess = bool(excess)

    def _score(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fn = excess_aurc if self.excess else aurc
        return fn(y_pred, 1.0 - y.to(torch.float64))  # type: ignore[return-value]
