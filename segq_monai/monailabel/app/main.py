"""A MONAI Label app over a segq bundle: segmentation + entropy map + predicted Dice, quality scoring, and active
learning that serves the image with the lowest predicted Dice.

Start it with::

    monailabel start_server --app "$(segq-monai paths monailabel_app)" --studies <folder of images> \\
        --conf ckpt_dir segq_output/models

App config (``--conf KEY VALUE``, all optional):

- ``bundle_root``: the segq bundle folder (default: the bundle shipped with segq-monai, ``segq-monai paths
  bundle_root``); relative paths are taken from the current folder.
- ``ckpt_dir``: its trained weights (default: ``<bundle_root>/models``; the demo writes them to
  ``segq_output/models``).
- ``host_bundle`` and ``fit_dir``: instead of a segq bundle, your own MONAI bundle (model-zoo layout) and the quality
  head fitted to it (``python -m segq_monai fit --host_bundle HOST ... --output_dir FIT``): both stages then run as
  ``configs/segq_overlay.json`` deploys them, with the sampler, head and threshold recorded in ``FIT/fit.json``.
- ``config_file``: its inference config (default ``configs/inference.json``, relative to ``bundle_root``).
- ``device``: e.g. ``cpu`` or ``cuda:0`` (default: ``cuda:0`` when available).
- ``sampler``, ``num_samples``: override the bundle's uncertainty sampler (``mc_dropout``, ``tta``, ``ensemble``,
  ``softmax``) and its number of samples (with ``fit_dir``: those of the fit, unless given).
- ``maps_dir``: where the infer task keeps the uncertainty maps (default: ``<studies>/segq_maps``).

Served names: infer model ``segq``; scoring method ``segq_quality``; strategies ``lowest_quality`` and ``random``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from monailabel.interfaces.app import MONAILabelApp
from monailabel.tasks.activelearning.random import Random

import segq_monai
from segq_monai.monailabel import (
    LowestQualityStrategy,
    QualityScoring,
    SegQInferTask,
    SegQPipeline,
)
from segq_monai.utils import bundle_root as packaged_bundle_root

logger = logging.getLogger(__name__)


class SegQApp(MONAILabelApp):
    """MONAI Label app serving the two-stage segq bundle found at ``conf["bundle_root"]``."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, Any]) -> None:
        conf = conf or {}
        fit_dir = conf.get("fit_dir") or None
        if bool(fit_dir) != bool(conf.get("host_bundle")):
            raise ValueError("--conf host_bundle and --conf fit_dir go together: your bundle and the head fitted to it.")
        overrides: dict[str, Any] = {}  # the overlay's ids: a segq bundle's inference.json holds them too
        if conf.get("sampler"):
            overrides["segq#sampler"] = str(conf["sampler"])
        if conf.get("num_samples"):
            overrides["segq#num_samples"] = int(conf["num_samples"])
        if conf.get("ckpt_dir"):
            overrides["ckpt_dir"] = os.path.abspath(conf["ckpt_dir"])
        bundle_root = conf.get("host_bundle") or conf.get("bundle_root") or packaged_bundle_root()
        self.pipeline = SegQPipeline(
            os.path.abspath(bundle_root),
            config_file=conf.get("config_file", "configs/inference.json"),
            device=conf.get("device") or None,
            overrides=overrides,
            fit_dir=os.path.abspath(fit_dir) if fit_dir else None,
        )
        remote = studies.startswith(("http://", "https://"))
        self.maps_dir = conf.get("maps_dir") or (None if remote else os.path.join(studies, "segq_maps"))
        logger.info(f"SegQ:: bundle {self.pipeline.bundle_root}; device {self.pipeline.device}; maps {self.maps_dir}")
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="segq",
            description="Segmentation with uncertainty maps and predicted quality (segq-monai)",
            version=segq_monai.__version__,
            labels=self.pipeline.labels,
        )

    def _download_dcmqi_tools(self) -> None:
        """MONAI Label fetches the dcmqi tools from GitHub for a DICOMweb datastore (to store submitted labels as DICOM
        SEG). Where that fails (no internet), the app still serves the PACS's studies: infer, scoring and strategy
        need no dcmqi; submitting a label back to the PACS then fails until ``itkimage2segimage`` is on the PATH."""
        try:
            super()._download_dcmqi_tools()
        except Exception as e:  # noqa: BLE001 - any failure of the download: say so and serve without it
            logger.warning(f"SegQ:: dcmqi tools unavailable ({type(e).__name__}: {e}); labels cannot be saved to the "
                           "PACS as DICOM SEG until itkimage2segimage is on the PATH")

    def init_infers(self):
        return {"segq": SegQInferTask(self.pipeline, maps=("entropy",), output_dir=self.maps_dir)}

    def init_scoring_methods(self):
        return {"segq_quality": QualityScoring(self.pipeline)}

    def init_strategies(self):
        return {"lowest_quality": LowestQualityStrategy(), "random": Random()}
