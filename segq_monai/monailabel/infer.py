"""``SegQInferTask``: a MONAI Label infer task returning the segmentation, its uncertainty map and predicted Dice."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monailabel.interfaces.exception import MONAILabelError, MONAILabelException
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from segq_monai.data.outputs import case_name, save_map
from segq_monai.monailabel.pipeline import SegQPipeline, quality_summary

__all__ = ["SegQInferTask"]

logger = logging.getLogger(__name__)


class SegQInferTask(InferTask):
    """Segmentation of one image (stage 1), its uncertainty maps and its predicted Dice (stage 2).

    Writes, in one folder, ``<case>_seg.nii.gz`` (``[*spatial]`` uint8 class indices, the result MONAI Label sends to
    the client) and beside it each of ``maps`` as ``<case>_<map>.nii.gz`` (float32; ``entropy``: predictive entropy,
    nats), all on the input's grid and affine, named as the bundle's inference names them. The folder is
    ``output_dir/<case>/`` when ``output_dir`` is set (the maps then stay there for the user; MONAI Label deletes the
    segmentation once sent), else a new temporary folder.

    The result JSON holds ``pred_dice`` / ``pred_iou`` (per foreground class, in [0, 1]), ``pred_dice_mean``,
    ``mean_entropy`` (nats), ``flagged``, ``maps`` (``{name: path}``), ``label_names`` and ``latencies``.

    Args:
        pipeline: the bundle's two-stage inference (:class:`segq_monai.monailabel.SegQPipeline`).
        maps: the uncertainty maps to write (keys of ``segq_monai.inferers.streaming.MAPS``).
        output_dir: where the maps are kept; ``None``: a temporary folder per call.
    """

    def __init__(
        self,
        pipeline: SegQPipeline,
        maps: Sequence[str] = ("entropy",),
        output_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(
            type=InferType.SEGMENTATION,
            labels=pipeline.labels,
            dimension=pipeline.spatial_dims,
            description="Segmentation with MC-dropout uncertainty (entropy map) and predicted Dice (segq bundle)",
        )
        self.pipeline = pipeline
        self.maps = tuple(maps)
        self.output_dir = Path(output_dir) if output_dir is not None else None

    def is_valid(self) -> bool:
        return self.pipeline.is_ready()

    def get_path(self, validate: bool = True) -> str | None:
        path = self.pipeline.checkpoints["network"]
        return str(path) if path.is_file() or not validate else None

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        start = time.time()
        image = request.get("image")
        if not isinstance(image, (str, os.PathLike)):
            raise MONAILabelException(
                MONAILabelError.INVALID_INPUT, f"SegQ infer takes an image file path, got {type(image).__name__}."
            )
        try:
            item = self.pipeline(image)
        except (ValueError, FileNotFoundError) as e:
            raise MONAILabelException(MONAILabelError.INFERENCE_ERROR, str(e)) from e
        case = case_name(image)
        if self.output_dir is not None:
            folder = self.output_dir / case
            folder.mkdir(parents=True, exist_ok=True)
        else:
            folder = Path(tempfile.mkdtemp(prefix="segq_"))
        seg_path = folder / f"{case}_seg.nii.gz"
        save_map(item["seg"], seg_path)
        written = {}
        for key in self.maps:
            path = folder / f"{case}_{key}.nii.gz"
            save_map(item[key], path)
            written[key] = str(path)
        result = quality_summary(item)
        result.update(
            maps=written,
            label_names=self.labels,
            latencies={"total": round(time.time() - start, 2)},
        )
        logger.info(f"SegQ:: {case} => {seg_path}; predicted Dice {result['pred_dice']}; maps {written}")
        return str(seg_path), result
