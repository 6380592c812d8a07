"""The demo's recalibration to a site: the recalibration map (identity, linear or isotonic, chosen by cross-validated
MAE) and split-conformal intervals of the predicted Dice, fitted on the calibration split
(:mod:`segq_monai.calibration.quality_calibration`) and scored on the test and shift splits: MAE before and after,
realised coverage of the intervals against the promised one, mean width; and the coverage and mean width of each kind
of interval (absolute, and normalised by the head's spread ``pred_dice_sd`` where the tables have it)."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from segq_monai.evaluation.bootstrap import grouped_resamples, percentile_interval
from segq_monai.data.columns import RAW, SPREAD, column_matrix, column_name, quality_columns
from segq_monai.calibration.quality_calibration import QualityCalibration, calibrate_quality_table, head_fingerprint

__all__ = ["RECALIBRATION_KEYS", "fit_site_calibration", "recalibration_scores", "recalibration_table", "site_half"]

#: per split: MAE of the raw and of the recalibrated predicted Dice, coverage and mean width of the intervals written.
RECALIBRATION_KEYS = ("mae_raw", "mae_recalibrated", "coverage", "mean_width")
#: per split and kind of interval: its coverage and mean width (normalised: where the tables have ``pred_dice_sd``).
INTERVAL_KIND_KEYS = ("coverage_absolute", "mean_width_absolute", "coverage_normalised", "mean_width_normalised")


def site_half(groups: Mapping[str, Hashable], seed: int) -> set[str]:
    """Half the images of a split, by slice: ``groups`` maps each image to its slice (all copies of a slice stay
    together); the first ``n_slices // 2`` slices of a permutation (``numpy.random.RandomState(seed)``) of the sorted
    slices. The site's labelled cases that recalibrate; the other images score it."""
    slices = sorted(set(groups.values()))
    first = set(np.random.RandomState(seed).permutation(slices)[: len(slices) // 2].tolist())
    return {image for image, group in groups.items() if group in first}


def fit_site_calibration(
    calibration_rows: Sequence[Mapping[str, Any]], checkpoint: str | os.PathLike,
    groups: Sequence[Hashable] | None = None,
) -> QualityCalibration:
    """The calibration of the head at ``checkpoint`` (90 % intervals, the default split) on the calibration split;
    ``groups`` (``[N]``, e.g. the slice of each artifact copy) keeps a group in one fold of the map choice."""
    return calibrate_quality_table(calibration_rows, head_fingerprint(checkpoint), groups=groups)


def recalibration_scores(
    calibration: QualityCalibration, rows: Sequence[Mapping[str, Any]], groups: Sequence[Hashable] | None,
    n_resamples: int = 1000,
) -> dict[str, Any]:
    """Score ``calibration`` on the labelled ``rows`` (per-case means over classes): ``{key: value}`` for
    :data:`RECALIBRATION_KEYS` and :data:`INTERVAL_KIND_KEYS` (the normalised ones only where the rows have
    ``pred_dice_sd`` and the calibration a normalised ``q``), plus ``"n"``, ``"promised"`` (the coverage),
    ``"maps"`` (each class's recalibration map) and, with ``groups`` (``[N]``), ``"interval": {key: [lo, hi]}``, 95 %
    grouped-bootstrap intervals (:mod:`segq_monai.evaluation.bootstrap`)."""
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
    sd = per_case("pred_dice", SPREAD) if all(column_name("pred_dice", c, SPREAD) in rows[0] for c in classes) else None
    kinds = ["absolute"]
    if sd is not None and np.all(np.isfinite(sd)) and all(r.half_width_normalised is not None
                                                          for r in calibration.recalibrations):  # fmt: skip
        kinds.append("normalised")
    for kind in kinds:
        spreads = sd if kind == "normalised" else [None] * len(raw)
        bounds = np.array([calibration.apply(x, s, kind)[1:] for x, s in zip(raw, spreads)])  # [N, 2, K]
        k_lo, k_hi = bounds[:, 0], bounds[:, 1]
        cases[f"coverage_{kind}"] = ((k_lo <= true) & (true <= k_hi)).mean(axis=1)
        cases[f"mean_width_{kind}"] = (k_hi - k_lo).mean(axis=1)
    keep = np.all([np.isfinite(v) for v in cases.values()], axis=0)
    out: dict[str, Any] = {k: float(v[keep].mean()) for k, v in cases.items()}
    out.update(n=int(keep.sum()), promised=calibration.coverage, maps=[r.map for r in calibration.recalibrations])
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
        "| split | n | MAE before | MAE after | coverage (promised) | mean width | coverage, absolute | mean width, "
        "absolute | coverage, normalised | mean width, normalised |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, seeds in results.items():
        cells = [
            _cell([s[k] for s in seeds], seeds[0].get("interval", {}).get(k)) if all(k in s for s in seeds) else "–"
            for k in RECALIBRATION_KEYS + INTERVAL_KIND_KEYS
        ]
        cells[2] += f" ({seeds[0]['promised']:.2f})"
        lines.append(f"| {label} | {seeds[0]['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
