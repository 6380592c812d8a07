"""``SegQPipeline``: the bundle's two-stage inference on one image at a time, built from ``inference.json``.

Nothing is declared here: the networks, the preprocessing, the ``UncertaintyInferer`` and the postprocessing
(``Invertd`` back to the input's grid, ``QualityInputd``, ``PredictQualityd``, ``FailureFlagd``) are read from the
bundle's config with ``monai.bundle.ConfigParser``, so the MONAI Label tasks and the bundle share one definition.
This module needs MONAI only, not MONAI Label.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from monai.data import decollate_batch, list_data_collate
from monai.transforms import Compose

from segq_monai.data.fit_folder import load_fit
from segq_monai.handlers.host_binding import check_host_binding
from segq_monai.utils.booleans import as_bool
from segq_monai.utils.host_binding import host_binding
from segq_monai.utils.errors import bad_input
from segq_monai.utils.resources import overlay_path

__all__ = ["INTERVAL_KEYS", "SegQPipeline", "quality_summary"]

#: what a calibration adds to a case: the raw predicted Dice and the interval, ``[K]`` each
INTERVAL_KEYS = ("pred_dice_raw", "pred_dice_lo", "pred_dice_hi")

logger = logging.getLogger(__name__)


def quality_summary(item: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-ready quality of one postprocessed case.

    Returns ``pred_dice`` and ``pred_iou`` (lists, one value in [0, 1] per foreground class), ``pred_dice_mean``
    (their mean, in [0, 1]), ``mean_entropy`` (the mean of the predictive entropy map over the image, nats, in
    [0, log C]) and ``flagged`` (bool: a predicted Dice is below the bundle's failure Dice ``tau``, or with a
    calibration the calibrated flag); with a calibration (a fit's ``quality_calibration.json``) also
    ``pred_dice_raw`` (the head's own), ``pred_dice_lo`` and ``pred_dice_hi`` (the interval at the calibration's
    coverage), lists per class; ``None`` without one.
    """

    def values(key: str) -> list[float] | None:
        return [float(v) for v in torch.as_tensor(item[key]).detach().cpu().flatten()] if key in item else None

    dice = values("pred_dice")
    return {
        "pred_dice": dice,
        "pred_iou": values("pred_iou"),
        "pred_dice_mean": sum(dice) / len(dice) if dice else float("nan"),
        "mean_entropy": float(torch.as_tensor(item["entropy"]).detach().float().mean().cpu()),
        "flagged": bool(torch.as_tensor(item["flagged"]).any()),
        **{key: values(key) for key in INTERVAL_KEYS},
    }


def _network_checkpoint(parser: ConfigParser) -> Path:
    """The stage-1 network's weights: ``load_path`` of the ``CheckpointLoader`` among the config's ``handlers``."""
    for i, handler in enumerate(parser.get("handlers") or []):
        if isinstance(handler, dict) and str(handler.get("_target_", "")).endswith("CheckpointLoader"):
            return Path(parser.get_parsed_content(f"handlers#{i}#load_path"))
    raise ValueError(
        "The config's handlers hold no CheckpointLoader, so the network's weights are unknown; add one "
        "(as model-zoo inference.json files have) or load the weights in its network expression."
    )


class _Parts:
    """The objects parsed from the config, built once: the stage-1 network, ``preprocessing`` and the segq parts
    under ``segq#`` (the same ids in the segq bundle's ``inference.json`` and in a host's with the overlay)."""

    def __init__(self, parser: ConfigParser) -> None:
        self.network = parser.get_parsed_content("network")
        self.quality_network = parser.get_parsed_content("segq#quality_network")
        self.preprocessing = parser.get_parsed_content("preprocessing")
        self.inferer = parser.get_parsed_content("segq#inferer")
        # segq's transforms alone: a host's own postprocessing would save files
        parts = [parser.get_parsed_content(f"segq#{part}_transforms") for part in ("head", "tail", "flag")]
        self.postprocessing = Compose([t for part in parts for t in part])


class SegQPipeline:
    """Segmentation, uncertainty maps and predicted quality of one image, as the bundle's ``inference.json`` does it.

    Args:
        bundle_root: a segq bundle folder: ``configs/inference.json`` and the trained weights
            ``models/fold0/model.pt`` and ``models/quality_<variant>/model.pt`` (``{"model": state_dict, ...}``).
        config_file: the inference config, relative to ``bundle_root`` unless absolute.
        device: where the networks run; ``None``: ``cuda:0`` when available, else the CPU.
        overrides: config values to override, e.g. ``{"num_samples": 5, "sampler": "tta"}``.
        fit_dir: a fit folder (``python -m segq_monai fit``): ``bundle_root`` is then the user's own bundle (model-zoo
            layout, its weights loaded by a ``CheckpointLoader`` among its ``handlers``), ``config_file`` its
            inference config, and segq's overlay ``configs/segq_overlay.json`` is merged over it with
            ``segq#fit_dir``; its ids are then ``segq#...`` (e.g. ``{"segq#num_samples": 5}``).

    The networks are built on first use; their weights are loaded (``torch.load(..., weights_only=True)``) then and
    again whenever a checkpoint file changes on disk (e.g. after retraining). Calls are serialised by a lock.

    ``pipeline(path)`` returns the postprocessed dictionary of the case, on the input's grid and affine: ``seg``
    ``[1, *spatial]`` class indices, ``entropy``, ``mutual_information``, ... (see ``segq_monai.inferers.MAPS``),
    ``pred_dice`` / ``pred_iou`` ``[K]`` in [0, 1] (``K = num_classes - 1``) and ``flagged`` (bool).

    Raises:
        FileNotFoundError: ``configs/inference.json`` or a checkpoint is missing (the message names it and the fix).
        ValueError: the image cannot be read, is not ``spatial_dims``-D or holds NaN/Inf (the bundle's checks).
    """

    def __init__(
        self,
        bundle_root: str | os.PathLike,
        config_file: str | os.PathLike = "configs/inference.json",
        device: str | torch.device | None = None,
        overrides: Mapping[str, Any] | None = None,
        fit_dir: str | os.PathLike | None = None,
    ) -> None:
        self.bundle_root = Path(bundle_root).expanduser().resolve()
        config = Path(config_file)
        self.config_file = config if config.is_absolute() else self.bundle_root / config
        if not self.config_file.is_file():
            raise FileNotFoundError(
                f"No bundle config at {self.config_file}; point bundle_root at a segq bundle folder holding "
                "configs/inference.json (MONAI Label: --conf bundle_root <path>, or --conf host_bundle <path> with "
                "--conf fit_dir <path>)."
            )
        self.device = torch.device(device) if device else torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
        self._host = fit_dir is not None
        parser = ConfigParser()
        files = [str(self.config_file)] + ([str(overlay_path("segq_overlay"))] if self._host else [])
        parser.read_config(files)
        parser["bundle_root"] = str(self.bundle_root)
        parser["device"] = self.device
        if self._host:  # the host as the fit ran it: its overrides first, then this call's
            parser["segq#fit_dir"] = str(Path(fit_dir).expanduser().resolve())
            for key, value in (load_fit(fit_dir, require=()).get("host_bundle", {}).get("overrides") or {}).items():
                parser[key] = value
        for key, value in (overrides or {}).items():
            parser[key] = value
        self._parser = parser
        self.spatial_dims = int(parser.get_parsed_content("segq#spatial_dims"))
        self.num_classes = int(parser.get_parsed_content("segq#num_classes"))
        names = parser.get_parsed_content("segq#class_names")
        self.class_names = (
            list(names)
            if names
            else (["foreground"] if self.num_classes == 2 else [f"class_{i}" for i in range(1, self.num_classes)])
        )
        self.checkpoints = {
            "network": _network_checkpoint(parser),
            "quality_network": Path(parser.get_parsed_content("segq#quality_checkpoint")),
        }
        self._parts: _Parts | None = None
        self._loaded_version: tuple[float, ...] | None = None
        self._lock = threading.Lock()

    @property
    def labels(self) -> dict[str, int]:
        """Foreground class names and their label values (background 0 left out), as MONAI Label lists labels."""
        return {name: i + 1 for i, name in enumerate(self.class_names)}

    def is_ready(self) -> bool:
        """Whether both checkpoints exist."""
        return all(p.is_file() for p in self.checkpoints.values())

    def _versions(self) -> tuple[float, ...]:
        missing = [f"{name}: {path}" for name, path in self.checkpoints.items() if not path.is_file()]
        if missing:
            raise FileNotFoundError(
                f"Missing checkpoint(s) {', '.join(missing)}; train the bundle first (train_segmentation.json, "
                "inference.json + sample.json, train_quality.json) or point bundle_root at a trained bundle."
            )
        return tuple(os.stat(p).st_mtime for p in self.checkpoints.values())

    def model_version(self) -> int:
        """The newest checkpoint's modification time (seconds): changes when either network is retrained."""
        return int(max(self._versions()))

    def _load(self) -> _Parts:
        version = self._versions()
        if self._parts is None:
            self._parts = _Parts(self._parser)
        if version != self._loaded_version:
            for name, path in self.checkpoints.items():
                state = torch.load(path, map_location=self.device, weights_only=True)
                getattr(self._parts, name).load_state_dict(
                    state.get("model", state) if isinstance(state, dict) else state
                )
                getattr(self._parts, name).eval()
                logger.info(f"SegQ:: loaded {name} weights from {path}")
            if self._host:
                self._check_host()
            self._loaded_version = version
        return self._parts

    def _check_host(self) -> None:
        """The host as loaded is the one the fit was made on (:func:`segq_monai.handlers.check_host_binding`);
        refused otherwise, unless ``segq#allow_host_change`` is true (then a WARNING)."""
        p = self._parser
        ensemble = p.get_parsed_content("segq#ensemble_checkpoints") if p.get_parsed_content("segq#sampler") == "ensemble" else []
        here = host_binding(self._parts.network, self._parts.preprocessing, p.get_parsed_content("inferer"),
                            [self.checkpoints["network"], *ensemble])  # fmt: skip
        allow = as_bool(p.get_parsed_content("segq#allow_host_change"), "segq#allow_host_change")
        fit_dir = p.get_parsed_content("segq#fit_dir")
        check_host_binding(fit_dir, p.get_parsed_content("segq#fit"), here, allow)

    def __call__(self, image: str | os.PathLike) -> dict[str, Any]:
        """Run both stages on the image file ``image`` (NIfTI or any format ``LoadImage`` reads)."""
        with self._lock:
            parts = self._load()
            try:
                data = parts.preprocessing({"image": str(image)})
            except RuntimeError as e:  # Compose wraps a transform's error in "applying transform ..."
                cause = bad_input(e, (ValueError,))
                if cause is None:
                    raise
                raise ValueError(str(cause)) from e
            batch = list_data_collate([data])
            with torch.no_grad():
                pred = parts.inferer(batch["image"].to(self.device), parts.network)
            item = decollate_batch({"image": batch["image"], "pred": pred}, detach=True)[0]
            return parts.postprocessing(item)
