"""Losses of the stage-1 networks with extra outputs, and of the quality head."""

from __future__ import annotations

from .aleatoric import SampledLogitLoss, sampled_logit_loss
from .confidence import ConfidenceLoss, confidence_loss
from .quality import RANK_LOSSES, QualityRankLoss, gap_rank_loss, pairwise_rank_loss, quality_rank_loss
