"""``LowestQualityStrategy``: MONAI Label active learning that serves the image the model segments worst."""

from __future__ import annotations

import logging
import time
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from segq_monai.monailabel.scoring import ERROR_KEY, QUALITY_KEY

__all__ = ["LowestQualityStrategy"]

logger = logging.getLogger(__name__)

SECS_IN_DAY = 24 * 60 * 60


class LowestQualityStrategy(Strategy):
    """Next sample: the unlabelled image with the lowest predicted quality stored by :class:`QualityScoring`.

    Served images are handled as MONAI Label's ``Epistemic`` and ``Random`` strategies handle them: the server
    records in each image's info when this strategy last served it (``info["strategy"][<name>]["ts"]``), and the
    image served least recently wins, its age capped at ``reset`` seconds; so an image served to one client in the
    last ``reset`` seconds goes to another client only when no other is left. Among images equally fresh, the lowest
    ``key`` wins, then the image id (ties are broken the same way on every call). Images not scored yet come after
    the scored ones; images whose scoring failed (``segq_error``: unreadable) are never served.

    Args:
        key: the image-info key to rank by (lowest first).
        reset: seconds after which a served image counts as never served.

    Returns ``{"id": image_id, key: score}``, or ``None`` when no unlabelled image is left.
    """

    def __init__(self, key: str = QUALITY_KEY, reset: int = SECS_IN_DAY) -> None:
        super().__init__("Unlabelled image with the lowest predicted Dice (segq stage 2)")
        self.key = key
        self.reset = reset

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any] | None:
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        strategy = request.get("strategy", "")
        now = int(time.time())
        ranked = []
        for image_id in images:
            info = datastore.get_image_info(image_id)
            if info.get(ERROR_KEY):
                continue
            score = info.get(self.key)
            served = info.get("strategy", {}).get(strategy, {}).get("ts", 0)
            age = min(now - served, self.reset)
            ranked.append(((-age, score is None, score if score is not None else 0.0, image_id), image_id, score))
        if not ranked:
            return None
        ranked.sort()
        logger.info(f"{strategy}: ranking (age, unscored, {self.key}, id): {[r[0] for r in ranked]}")
        _, image_id, score = ranked[0]
        logger.info(f"{strategy}: selected image {image_id}; {self.key}: {score}")
        return {"id": image_id, self.key: score}
