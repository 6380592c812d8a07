"""Losses of the stage-1 networks with extra outputs."""

from __future__ import annotations

from .aleatoric import SampledLogitLoss, sampled_logit_loss
from .confidence import ConfidenceLoss, confidence_loss
