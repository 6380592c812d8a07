"""``CohortPage``: an Ignite handler that writes the run's cohort page ``output_dir/index.html`` when it completes
(:func:`segq_monai.evaluation.cohort_page.write_cohort_page`).

Ignite runs the handlers of one event in the order they were added. The page reads what the
:class:`QualityWriter` (``quality.csv``), the :class:`CalibrationReport` (``drift.json``) and the
:class:`QualityReport` (``report.json``, figures) write when the run completes, so it adds itself to
``Events.COMPLETED`` only when the run starts, after every handler was attached: it runs last wherever it is listed
(an overlay appends the ``QualityReport`` after it).
Under ``torchrun`` rank 0 alone writes (the writer's ``quality.csv`` is rank 0's too).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import ignite.distributed as idist
from monai.utils import min_version, optional_import

from segq_monai.evaluation.cohort_page import write_cohort_page
from segq_monai.calibration.calibration_file import QualityCalibration

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["CohortPage"]


class CohortPage:
    """Writes ``output_dir/index.html`` at ``Events.COMPLETED``, after the other handlers of that event.

    Args:
        output_dir: the run's output folder (the :class:`QualityWriter`'s).
        calibration: the run's quality calibration (object or file) or None; its split's predicted Dice is drawn
            against the cohort's.
        seg_key, uncertainty_key: the saved maps drawn in the thumbnails.
        thumbnail_size: thumbnail width and height, pixels.
        title: the page's title; default: the folder's name.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        calibration: QualityCalibration | str | os.PathLike | None = None,
        seg_key: str = "seg",
        uncertainty_key: str = "entropy",
        thumbnail_size: int = 96,
        title: str | None = None,
    ) -> None:
        if thumbnail_size < 8:
            raise ValueError(f"thumbnail_size must be at least 8 pixels, got {thumbnail_size}.")
        self.output_dir = Path(output_dir)
        self.calibration = calibration
        self.seg_key = seg_key
        self.uncertainty_key = uncertainty_key
        self.thumbnail_size = thumbnail_size
        self.title = title
        self.path: Path | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._last)

    def _last(self, engine: Engine) -> None:
        """At ``Events.STARTED``: add the page to ``Events.COMPLETED`` after the handlers attached before the run."""
        if not engine.has_event_handler(self, Events.COMPLETED):
            engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        if idist.get_rank() != 0:
            return
        self.path = write_cohort_page(
            self.output_dir, self.calibration, self.seg_key, self.uncertainty_key, self.thumbnail_size, self.title,
            host_change=getattr(engine.state, "host_change", None) if engine is not None else None,
        )
