"""``CalibrationReport``: an Ignite handler for runs with a quality calibration: the promise and the drift check.

When an inference (or evaluation) run with ``--calibration_file`` completes, it writes into ``output_dir``, whole or
not at all:

* ``promise.json`` (:data:`~segq_monai.data.outputs.PROMISE_FILE`): what the ``pred_dice_lo`` / ``pred_dice_hi`` /
  ``flagged`` columns of ``quality.csv`` promise
  (:meth:`segq_monai.calibration.calibration_file.QualityCalibration.promise`); with ``host_change``, the differences
  from the fitted host of a run forced with ``segq#allow_host_change`` (:class:`HostBinding`), under which the promise
  may not hold;
* ``drift.json``: the cohort's raw predicted Dice (per-case mean over classes) and mean predictive entropy (nats)
  against the calibration split's (:func:`segq_monai.calibration.drift.distribution_shift`), and whether either moved::

      {"p_value_threshold": 0.01, "drifted": true, "message": "cohort of 24 cases: ...",
       "statistics": {"pred_dice_raw": {"n", "n_reference", "median", "median_reference", "ks_statistic",
                                    "p_value", "fraction_outside"},
                      "mean_entropy": {...} | null}}

and logs a WARNING naming the numbers when a p-value is below ``p_value``: the cases are then unlike those the
guarantees were made on. Under ``torchrun`` the per-case values of all ranks are gathered and rank 0 writes.
Cases a rerun reads back from their sidecars (``skip_existing``) are not in the comparison.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ignite.distributed as idist
import numpy as np
import torch
from monai.utils import min_version, optional_import

from segq_monai.calibration.calibration_file import QualityCalibration
from segq_monai.data.outputs import DRIFT_FILE, PROMISE_FILE
from segq_monai.utils.jsonable import jsonable
from segq_monai.metrics.baselines import mean_entropy
from segq_monai.calibration.drift import distribution_shift
from segq_monai.utils.atomic import atomic_write_text

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["CalibrationReport"]

logger = logging.getLogger(__name__)


def _drift_message(n: int, stats: Mapping[str, Mapping[str, float] | None], p_value: float) -> str | None:
    moved = {k: s for k, s in stats.items() if s is not None and s["p_value"] < p_value}
    if not moved:
        return None
    parts = [
        f"median {'raw predicted Dice' if k == 'pred_dice_raw' else 'mean entropy (nats)'} {s['median']:.3g} against "
        f"{s['median_reference']:.3g} in calibration; KS D = {s['ks_statistic']:.2f}, p = {s['p_value']:.2g}, "
        f"{s['fraction_outside']:.0%} outside the calibration range"
        for k, s in moved.items()
    ]
    return (
        f"cohort of {n} cases: {'; '.join(parts)}. These cases are unlike those the calibration's guarantees "
        "(interval coverage, flag) were made on: label some of them and calibrate again."
    )


class CalibrationReport:
    """Writes ``promise.json`` and ``drift.json`` (module docstring) when the run completes.

    Args:
        calibration: the run's calibration (the one :class:`~segq_monai.transforms.RecalibrateQualityd` applies);
            ``None`` (a run without a calibration file): the handler attaches nothing and writes nothing.
        output_dir: where ``quality.csv`` goes.
        p_value: warn when a Kolmogorov-Smirnov p-value falls below it (default 0.01).
        entropy_key: the per-case predictive entropy map ``[1, *spatial]`` (nats) in each output item.
        output_transform: maps ``engine.state.output`` to a list of per-case dictionaries holding
            ``pred_dice_raw`` (``[K]``) and ``entropy_key``.
    """

    def __init__(
        self,
        calibration: QualityCalibration | None,
        output_dir: str | os.PathLike,
        p_value: float = 0.01,
        entropy_key: str = "entropy",
        output_transform: Callable[[Any], Sequence[Mapping[str, Any]]] = lambda x: x,
    ) -> None:
        if not 0.0 < p_value < 1.0:
            raise ValueError(f"p_value must be in (0, 1), got {p_value}.")
        self.calibration = calibration
        self.output_dir = Path(output_dir)
        self.p_value = p_value
        self.entropy_key = entropy_key
        self.output_transform = output_transform
        self.values: list[tuple[float, float]] = []
        self.result: dict[str, Any] | None = None

    def attach(self, engine: Engine) -> None:
        if self.calibration is None:
            return
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def _reset(self, engine: Engine) -> None:
        self.values = []

    def __call__(self, engine: Engine) -> None:
        for item in self.output_transform(engine.state.output):
            raw = float(torch.as_tensor(item["pred_dice_raw"], dtype=torch.float64).mean())
            entropy = -mean_entropy(item[self.entropy_key]) if self.entropy_key in item else float("nan")
            self.values.append((raw, entropy))

    def check(self, values: Sequence[tuple[float, float]]) -> dict[str, Any]:
        """The drift block for per-case ``(raw predicted Dice, mean entropy)`` pairs; logs the WARNING."""
        cohort = np.asarray(values, np.float64).reshape(-1, 2)
        reference = self.calibration.reference
        stats: dict[str, Any] = {"pred_dice_raw": distribution_shift(cohort[:, 0], reference["pred_dice_raw"])}
        entropy = reference.get("mean_entropy")
        stats["mean_entropy"] = None if entropy is None else distribution_shift(cohort[:, 1], entropy)
        message = _drift_message(len(cohort), stats, self.p_value)
        if message:
            logger.warning(message)
        return {"p_value_threshold": self.p_value, "drifted": message is not None, "message": message,
                "statistics": stats}  # fmt: skip

    def write(self, engine: Engine | None = None) -> None:
        values = self.values
        if idist.get_world_size() > 1:
            values = [v for part in idist.all_gather(values) for v in part]
        if idist.get_rank() != 0:
            return
        self.result = jsonable(self.check(values))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        promise = self.calibration.promise()
        host_change = getattr(engine.state, "host_change", None) if engine is not None else None
        if host_change:  # deployed with segq#allow_host_change on a host unlike the fitted one (HostBinding)
            promise["host_change"] = list(host_change)
        for name, content in ((PROMISE_FILE, promise), (DRIFT_FILE, self.result)):
            atomic_write_text(self.output_dir / name, json.dumps(content, indent=2, allow_nan=False) + "\n")
