"""``QualityReport``: an Ignite handler that writes ``report.json`` and the figures when an evaluation completes."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
from monai.utils import min_version, optional_import

from segq_monai.data.columns import parse_column, read_quality_csv
from segq_monai.calibration.quality_calibration import interval_scores
from segq_monai.evaluation.report import write_report
from segq_monai.handlers.calibration_report import CalibrationReport
from segq_monai.handlers.quality_writer import QualityWriter
from segq_monai.metrics.quality import FAILURE_DICE

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["QualityReport"]


class QualityReport:
    """Scores the rows of a :class:`QualityWriter` (predicted against true Dice, and the scalar baselines) and
    writes ``report.json``, ``predicted_vs_true.png``, ``risk_coverage.png`` and uncertainty overlays of the best
    and worst cases into the writer's output folder (see :func:`segq_monai.evaluation.report.write_report`).

    Attach it after the writer, so that the writer's rows are complete when this runs.

    Args:
        writer: the run's :class:`QualityWriter` (it must save ``seg`` and ``uncertainty_key`` maps).
        tau: the failure Dice τ: a case whose true Dice is below it is a failure (failure AUROC, flag counts).
        baseline_fit_csvs: ``quality.csv`` files of cases the quality head was trained on (the out-of-fold
            sampling outputs); the baseline fit (a least-squares line mapping each scalar baseline onto the Dice
            scale) is fitted on them. Empty: fitted on the evaluated cases themselves (``"baseline_fit":
            "in-sample"``).
        overlays: number of best and of worst cases drawn.
        uncertainty_key: the map drawn in the overlays.
        alpha: None: no guaranteed flag. Otherwise the target failure rate among auto-accepted cases: an
            acceptance threshold λ on the predicted Dice (and on each baseline) is calibrated on ``calibration_csvs``
            and reported under ``"guaranteed_flag"`` (see :func:`segq_monai.evaluation.report.evaluate_quality`).
        delta: allowed probability, over the draw of the calibration split, that the ``alpha`` guarantee fails.
        calibration_csvs: with ``alpha``, the ``quality.csv`` files of this same pipeline run on the calibration split:
            labelled cases that neither stage was trained on (``pred_dice`` and ``true_dice`` columns, checked in
            ``attach``); the stage-2 training tables do not qualify.
        calibration_report: the run's :class:`CalibrationReport` (attach that one first); when it has a quality
            calibration, ``report.json`` then also holds ``"promise"`` (its promise), ``"drift"`` (its check)
            and ``"intervals"`` (per class: realised coverage and mean width of ``[pred_dice_lo, pred_dice_hi]``,
            MAE of ``pred_dice_raw`` and of the recalibrated ``pred_dice``,
            :func:`~segq_monai.calibration.quality_calibration.interval_scores`).
    """

    def __init__(
        self,
        writer: QualityWriter,
        tau: float = FAILURE_DICE,
        baseline_fit_csvs: Sequence[str | os.PathLike] = (),
        overlays: int = 2,
        uncertainty_key: str = "entropy",
        alpha: float | None = None,
        delta: float = 0.1,
        calibration_csvs: Sequence[str | os.PathLike] = (),
        calibration_report: CalibrationReport | None = None,
    ) -> None:
        self.writer = writer
        self.tau = tau
        self.baseline_fit_csvs = list(baseline_fit_csvs)
        self.overlays = overlays
        self.uncertainty_key = uncertainty_key
        self.alpha = alpha
        self.delta = delta
        self.calibration_csvs = list(calibration_csvs)
        # a report without a calibration (a run without a calibration file) writes nothing: as if there were none
        calibrated = calibration_report is not None and calibration_report.calibration is not None
        self.calibration_report = calibration_report if calibrated else None
        self.report: dict[str, Any] | None = None

    def attach(self, engine: Engine) -> None:
        for name, files in (("baseline_fit_csvs", self.baseline_fit_csvs), ("calibration_csvs", self.calibration_csvs)):
            missing = [f for f in files if not os.path.isfile(f)]
            if missing:
                raise FileNotFoundError(
                    f"{name}: tables {missing} do not exist; run the workflow that writes them first (the out-of-fold "
                    "sampling for baseline_fit_csvs, an evaluation of the calibration split for calibration_csvs)."
                )
        if self.alpha is not None and self.calibration_report is not None:
            raise ValueError(
                "with a calibration_file the flag is the calibrated one (its λ̂ is in report.json's 'promise' "
                "block), and pred_dice is recalibrated, unlike the calibration tables' raw pred_dice: set alpha to "
                "None, or evaluate without calibration_file."
            )
        if self.alpha is not None:
            if not self.calibration_csvs:
                raise ValueError(
                    "alpha needs calibration_csvs: quality tables with pred_dice and true_dice of held-out labelled "
                    "cases (an evaluation of the calibration split); pass them or set alpha to None."
                )
            for f in self.calibration_csvs:
                with open(f, encoding="utf-8", newline="") as table:
                    header = next(csv.reader(table), [])
                kinds = {p.kind for p in map(parse_column, header) if p is not None and not p.bound}
                if not {"pred_dice", "true_dice"} <= kinds:
                    raise ValueError(
                        f"alpha needs pred_dice and true_dice columns in every calibration table; {f!r} has "
                        f"{header}. Run the quality head on held-out labelled cases, or set alpha to None."
                    )
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        fit_rows = [row for f in self.baseline_fit_csvs for row in read_quality_csv(f)] or None
        calibration_rows = [row for f in self.calibration_csvs for row in read_quality_csv(f)] or None
        entries = {row["case"]: entry for row, entry in zip(self.writer.rows, self.writer.entries)}

        def load_case(row: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
            entry = entries[row["case"]]
            label = entry.get("label")
            return tuple(
                np.asarray(nib.load(p).dataobj) if p is not None else None
                for p in (entry["image"], entry["seg"], entry[self.uncertainty_key], label)
            )

        self.report = write_report(
            self.writer.rows,
            self.writer.output_dir,
            tau=self.tau,
            baseline_fit_rows=fit_rows,
            load_case=load_case,
            k=self.overlays,
            alpha=self.alpha,
            delta=self.delta,
            calibration_rows=calibration_rows,
            extra=self._calibration_blocks(),
        )

    def _calibration_blocks(self) -> dict[str, Any]:
        if self.calibration_report is None:
            return {}
        return {
            "promise": self.calibration_report.calibration.promise(),
            "drift": self.calibration_report.result,
            "intervals": interval_scores(self.writer.rows, self.calibration_report.calibration),
        }
