"""The quality head's recipe: the one source of the choices ``docs/head_choice_rule.md`` makes (round 2 of issue #25's
rule chose the MSE head, ``rank_weight`` 0, on 2026-12-07: ``docs/results.md``, "Choosing the head").

``train_quality.json`` and ``inference.json`` (the segq bundle), the demo and ``python -m segq_monai fit`` read their
defaults from :data:`HEAD_RECIPE`, so the head the demo measures is the head a fit trains and a deployment runs:

* ``quality_variant``: the input stack (a key of :data:`segq_monai.transforms.QUALITY_VARIANTS`);
* ``rank_weight``: weight of the pairwise ranking term added to the MSE (:class:`segq_monai.losses.QualityRankLoss`;
  0: the MSE alone);
* ``rank_loss``: the ranking term (a key of :data:`segq_monai.losses.RANK_LOSSES`: ``"logistic"`` or ``"gap"``;
  unused at ``rank_weight`` 0);
* ``quality_members``: heads in the ensemble (:class:`~segq_monai.networks.QualityEnsemble`; their disagreement is
  ``pred_dice_sd``), 1: one head (its spread from MC dropout);
* ``quality_scalars``: per-case scalars joined to the pooled features (names of
  :data:`segq_monai.transforms.QUALITY_SCALARS`; ``[]``: none).
"""

from __future__ import annotations

from typing import Any

__all__ = ["HEAD_RECIPE"]

HEAD_RECIPE: dict[str, Any] = {
    "quality_variant": "image_seg_entropy",
    "rank_weight": 0.0,
    "rank_loss": "logistic",
    "quality_members": 1,
    "quality_scalars": [],
}
