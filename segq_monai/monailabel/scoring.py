"""``QualityScoring``: a MONAI Label scoring method that stores each image's predicted quality in the datastore.

As MONAI Label's ``EpistemicScoring`` stores ``epistemic_entropy`` and ``epistemic_ts``, this stores, per unlabelled
image, in the image's info (``datastore.update_image_info``):

============================ =====================================================================================
key                          value
============================ =====================================================================================
``segq_pred_dice``           predicted Dice per foreground class, list of floats in [0, 1]
``segq_pred_dice_mean``      their mean, float in [0, 1]: the score :class:`LowestQualityStrategy` ranks by
``segq_mean_entropy``        mean predictive entropy over the image, nats, in [0, log C]
``segq_flagged``             bool: a predicted Dice is below the bundle's failure Dice ``tau``; with a fit's
                             calibration: its calibrated flag (lowest raw predicted Dice below λ̂)
``segq_pred_dice_raw``       with a calibration: the head's raw predicted Dice per class (``segq_pred_dice`` is
                             then recalibrated); else ``None``
``segq_pred_dice_lo``        with a calibration: lower end of each class's Dice interval (coverage in the fit's
``segq_pred_dice_hi``        ``quality_calibration.json``), list of floats in [0, 1]; else ``None``
``segq_model_ts``            the model version scored with (newest checkpoint's mtime, s): unchanged -> not rescored
``segq_error``               ``None``, or why the image could not be scored (its quality keys are then ``None``)
============================ =====================================================================================
"""

from __future__ import annotations

import logging
import time
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod

from segq_monai.monailabel.pipeline import INTERVAL_KEYS, SegQPipeline, quality_summary

__all__ = [
    "ENTROPY_KEY",
    "ERROR_KEY",
    "FLAGGED_KEY",
    "MODEL_TS_KEY",
    "PRED_DICE_KEY",
    "QUALITY_KEY",
    "QualityScoring",
]

logger = logging.getLogger(__name__)

PRED_DICE_KEY = "segq_pred_dice"
QUALITY_KEY = "segq_pred_dice_mean"
ENTROPY_KEY = "segq_mean_entropy"
FLAGGED_KEY = "segq_flagged"
MODEL_TS_KEY = "segq_model_ts"
ERROR_KEY = "segq_error"


class QualityScoring(ScoringMethod):
    """Runs both stages on every unlabelled datastore image and stores its predicted quality and mean uncertainty.

    Args:
        pipeline: the bundle's two-stage inference (:class:`segq_monai.monailabel.SegQPipeline`).
        max_samples: score at most this many images per call (0: all); the request's ``max_samples`` overrides it.

    An image already scored with the current model version is skipped (request ``{"force": true}`` rescores it).
    An image that cannot be read or checked (missing, truncated, wrong dimensionality, NaN) is skipped with a logged
    reason, stored as ``segq_error``, and scoring goes on; it is retried at the next call.

    Returns a summary: ``total`` (unlabelled images), ``skipped`` (already scored), ``executed``, ``failed``
    (``{image_id: reason}``) and ``latency`` (s).
    """

    def __init__(self, pipeline: SegQPipeline, max_samples: int = 0) -> None:
        super().__init__(
            "Predicted Dice (stage 2) and mean predictive entropy (stage 1) of each unlabelled image, from the segq "
            f"bundle at {pipeline.bundle_root}"
        )
        self.pipeline = pipeline
        self.max_samples = max_samples

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        start = time.time()
        version = self.pipeline.model_version()
        images = datastore.get_unlabeled_images()
        force = bool(request.get("force", False))
        todo, skipped = [], 0
        for image_id in images:
            info = datastore.get_image_info(image_id)
            done = info.get(MODEL_TS_KEY) == version and info.get(QUALITY_KEY) is not None and not info.get(ERROR_KEY)
            if done and not force:
                skipped += 1
            else:
                todo.append(image_id)
        max_samples = int(request.get("max_samples", self.max_samples) or 0)
        todo = todo[:max_samples] if max_samples else todo
        logger.info(f"SegQ:: scoring {len(todo)} of {len(images)} unlabelled images ({skipped} already scored)")

        failed: dict[str, str] = {}
        for image_id in todo:
            failure = self.score(image_id, datastore, version)
            if failure:
                failed[image_id] = failure
        summary = {
            "total": len(images),
            "skipped": skipped,
            "executed": len(todo) - len(failed),
            "failed": failed,
            "latency": round(time.time() - start, 3),
        }
        logger.info(f"SegQ:: scoring summary {summary}")
        return summary

    def score(self, image_id: str, datastore: Datastore, version: int) -> str | None:
        """Score one image and store the result in its info; returns ``None``, or why it was skipped."""
        path = datastore.get_image_uri(image_id)
        try:
            summary = quality_summary(self.pipeline(path))
        except Exception as e:  # one unreadable image must not stop the others
            reason = f"{type(e).__name__}: {e}"
            logger.warning(
                f"SegQ:: skipping image {image_id} ({path}): {reason}", exc_info=not isinstance(e, ValueError)
            )
            datastore.update_image_info(
                image_id,
                {
                    PRED_DICE_KEY: None,
                    QUALITY_KEY: None,
                    ENTROPY_KEY: None,
                    FLAGGED_KEY: None,
                    **{f"segq_{key}": None for key in INTERVAL_KEYS},
                    MODEL_TS_KEY: version,
                    ERROR_KEY: reason,
                },
            )
            return reason
        info = {
            PRED_DICE_KEY: summary["pred_dice"],
            QUALITY_KEY: summary["pred_dice_mean"],
            ENTROPY_KEY: summary["mean_entropy"],
            FLAGGED_KEY: summary["flagged"],
            **{f"segq_{key}": summary[key] for key in INTERVAL_KEYS},
            MODEL_TS_KEY: version,
            ERROR_KEY: None,
        }
        logger.info(
            f"SegQ:: {image_id} => predicted Dice {summary['pred_dice']}; mean entropy {summary['mean_entropy']:.4f}"
        )
        datastore.update_image_info(image_id, info)
        return None
