"""The demo's recalibration to a site: isotonic recalibration and split-conformal intervals of the predicted Dice,
fitted on the calibration split (:mod:`segq_monai.evaluation.quality_calibration`) and scored on the test and shift
splits: MAE before and after, realised coverage of the intervals against the promised one, mean width."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from segq_monai.evaluation.bootstrap import grouped_resamples, percentile_interval
from segq_monai.evaluation.columns import RAW, column_matrix, column_name, quality_columns
from segq_monai.evaluation.quality_calibration import QualityCalibration, calibrate_quality_table, head_fingerprint

__all__ = ["RECALIBRATION_KEYS", "fit_site_calibration", "recalibration_scores", "recalibration_table"]

#: per split: MAE of the raw and of the recalibrated predicted Dice, coverage and mean width of the intervals.
RECALIBRATION_KEYS = ("mae_raw", "mae_recalibrated", "coverage", "mean_width")


def fit_site_calibration(
    calibration_rows: Sequence[Mapping[str, Any]], checkpoint: str | os.PathLike
) -> QualityCalibration:
    """The calibration of the head at ``checkpoint`` (90 % intervals, the default split) on the calibration split."""
    return calibrate_quality_table(calibration_rows, head_fingerprint(checkpoint))


def recalibration_scores(
    calibration: QualityCalibration, rows: Sequence[Mapping[str, Any]], groups: Sequence[Hashable] | None,
    n_resamples: int = 1000,
) -> dict[str, Any]:
    """Score ``calibration`` on the labelled ``rows`` (per-case means over classes): ``{key: value}`` for
    :data:`RECALIBRATION_KEYS`, plus ``"n"``, ``"promised"`` (the coverage) and, with ``groups`` (``[N]``),
    ``"interval": {key: [lo, hi]}``, 95 % grouped-bootstrap intervals (:mod:`segq_monai.evaluation.bootstrap`)."""
    rows = calibration.recalibrate_rows(rows)
    classes = quality_columns(rows)

    def per_case(kind: str, bound: str = "") -> np.ndarray:
        return column_matrix(rows, [column_name(kind, c, bound) for c in classes])

    raw, pred, lo, hi, true = (per_case("pred_dice", RAW), per_case("pred_dice"), per_case("pred_dice", "lo"),
                               per_case("pred_dice", "hi"), per_case("true_dice"))  # fmt: skip
    cases = {
        "mae_raw": np.abs(raw - true).mean(axis=1),
        "mae_recalibrated": np.abs(pred - true).mean(axis=1),
        "coverage": ((lo <= true) & (true <= hi)).mean(axis=1),
        "mean_width": (hi - lo).mean(axis=1),
    }
    keep = np.all([np.isfinite(v) for v in cases.values()], axis=0)
    out: dict[str, Any] = {k: float(v[keep].mean()) for k, v in cases.items()}
    out.update(n=int(keep.sum()), promised=calibration.coverage)
    if groups is not None:
        resamples = [i[keep[i]] for i in grouped_resamples(groups, n_resamples)]
        out["interval"] = {
            k: list(percentile_interval([v[i].mean() for i in resamples if len(i)])) for k, v in cases.items()
        }
    return out


def _cell(values: Sequence[float], interval: Sequence[float] | None) -> str:
    if len(values) > 1:
        return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"
    return f"{values[0]:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def recalibration_table(results: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Markdown, one row per split (``{split label: [recalibration_scores per seed]}``)."""
    lines = [
        "| split | n | MAE before | MAE after | coverage (promised) | mean width |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, seeds in results.items():
        cells = [_cell([s[k] for s in seeds], seeds[0].get("interval", {}).get(k)) for k in RECALIBRATION_KEYS]
        cells[2] += f" ({seeds[0]['promised']:.2f})"
        lines.append(f"| {label} | {seeds[0]['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
