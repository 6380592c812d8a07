"""Networks: the stage-2 quality head (one, or an ensemble) and the stage-1 networks with extra outputs (aleatoric,
learned confidence)."""

from __future__ import annotations

from .aleatoric import AleatoricNet, split_mean_log_var
from .confidence import ConfidenceNet
from .extra_output import ExtraOutputNet
from .quality_ensemble import QualityEnsemble, mean_over_members, quality_ensemble
from .quality_regressor import QualityRegressor, quality_strides
from .recipe import HEAD_RECIPE
