"""Networks: the stage-2 quality head (one, or an ensemble) and its checkpoint, the stage-1 networks with extra outputs
(aleatoric, learned confidence), and the signature of a host's segmentation network."""

from __future__ import annotations

from .aleatoric import AleatoricNet, split_mean_log_var
from .checkpoint import load_quality_head
from .confidence import ConfidenceNet
from .extra_output import ExtraOutputNet
from .quality_ensemble import QualityEnsemble, mean_over_members, quality_ensemble
from .quality_regressor import QualityRegressor, quality_strides
from .recipe import HEAD_RECIPE
from .signature import input_convolution, network_signature
