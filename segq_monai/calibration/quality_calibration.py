"""A site's calibration from a labelled calibration split: :func:`calibrate_quality_table` fits the calibration file
(:class:`~segq_monai.calibration.calibration_file.QualityCalibration`: recalibrated Dice, per-case intervals, the
guaranteed flag, drift reference) from its ``quality.csv`` rows, :func:`calibrate_quality_csvs` is the bundle's
calibration step, and :func:`interval_scores` scores the calibrated columns of a labelled table.

The flag's threshold ``λ̂`` is on the per-case minimum over classes of the *raw* predicted Dice and is calibrated on
all ``n`` cases (the raw head did not see them); the intervals use the fit / score split
(:mod:`segq_monai.calibration.recalibration`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from segq_monai.calibration.calibration_file import QualityCalibration, head_fingerprint, head_spreads
from segq_monai.calibration.flag import AcceptanceThreshold, calibrate_selective_threshold, min_flag_cases
from segq_monai.calibration.maps import DEFAULT_FOLDS, MAPS
from segq_monai.calibration.recalibration import calibrate_dice, split_calibration
from segq_monai.data.columns import RAW, class_label, column_matrix, column_name, quality_columns, read_quality_csv
from segq_monai.metrics.quality import FAILURE_DICE

__all__ = ["calibrate_quality_csvs", "calibrate_quality_table", "interval_scores"]


def _calibrate_flag(conf: np.ndarray, true: np.ndarray, tau: float, alpha: float, delta: float) -> AcceptanceThreshold:
    """The guaranteed flag; below the smallest calibration split that can certify any threshold (every case
    accepted, none a failure: ``(1 - alpha)^n <= delta / m`` for the ``m`` grid points), one warning names it."""
    minimum = min_flag_cases(alpha, delta)
    if len(conf) >= minimum:
        return calibrate_selective_threshold(conf, true, tau=tau, alpha=alpha, delta=delta)
    warnings.warn(
        f"the guaranteed flag at alpha = {alpha:g}, delta = {delta:g} needs at least {minimum} calibration cases (all "
        f"accepted and none a failure); got {len(conf)}, so no threshold is certified and every case will be flagged. "
        "Label more cases, or use a larger alpha or delta.",
        UserWarning,
        stacklevel=3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the same message, less specific
        return calibrate_selective_threshold(conf, true, tau=tau, alpha=alpha, delta=delta)


def calibrate_quality_table(
    rows: Sequence[Mapping[str, Any]],
    head_fingerprint: str,
    coverage: float = 0.9,
    alpha: float = 0.1,
    delta: float = 0.1,
    tau: float = FAILURE_DICE,
    fit_fraction: float = 0.5,
    seed: int = 0,
    groups: Sequence[Hashable] | None = None,
    maps: Sequence[str] = MAPS,
    n_folds: int = DEFAULT_FOLDS,
) -> QualityCalibration:
    """Calibrate a quality head on the ``quality.csv`` rows of a labelled calibration split.

    Args:
        rows: one row per calibration case with the raw predicted Dice (``pred_dice_raw`` columns when the table
            was itself written with a calibration, else ``pred_dice``) and ``true_dice`` per class; an optional
            ``baseline_mean_entropy`` (negated mean entropy) for the drift reference. Cases with a missing value
            are left out with a warning.
        head_fingerprint: :func:`head_fingerprint` of the head that predicted the rows.
        coverage: promised coverage of the intervals, in (0, 1) (miscoverage ``1 - coverage``).
        alpha, delta, tau: the guaranteed flag (failure rate among accepted ``<= alpha`` w.p. ``>= 1 - delta``,
            failure: true Dice ``< tau``), :func:`~segq_monai.calibration.flag.calibrate_selective_threshold`.
        fit_fraction, seed: the fit / score split of the recalibration (:func:`calibrate_dice`).
        groups: ``[N]`` a group label per row (e.g. the slice its artifact copies were made of), kept in one fold of
            the cross-validation that chooses the map; None: each row its own.
        maps, n_folds: the candidate maps and the folds of that choice (:func:`calibrate_dice`).

    With ``pred_dice_sd`` columns (the head run with ``num_samples > 1``) the intervals are normalised by the head's
    spread where it varies (see :mod:`segq_monai.calibration.recalibration`).

    Raises:
        ValueError: no rows, no ``pred_dice`` / ``true_dice`` columns, or too few cases for the coverage (the
            message names the minimum).
    """
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must be in (0, 1), e.g. 0.9, got {coverage}.")
    classes = quality_columns(rows) if rows else []
    bound = RAW if classes and column_name("pred_dice", classes[0], RAW) in rows[0] else ""
    raw_columns = [column_name("pred_dice", c, bound) for c in classes]
    needed = raw_columns + [column_name("true_dice", c) for c in classes]
    if not classes or any(col not in rows[0] for col in needed):
        raise ValueError(
            f"a calibration needs labelled rows with columns {needed or ['pred_dice', 'true_dice']}; got "
            f"{list(rows[0]) if rows else 'no rows'}. Evaluate the pipeline on a labelled calibration split first."
        )
    raw = column_matrix(rows, raw_columns)
    true = column_matrix(rows, [column_name("true_dice", c) for c in classes])
    sd = head_spreads(rows, classes)
    keep = np.all(np.isfinite(raw) & np.isfinite(true), axis=1)
    if not keep.all():
        warnings.warn(f"calibration: {int((~keep).sum())} case(s) without a finite value are left out.", UserWarning, 2)
    raw, true = raw[keep], true[keep]
    if sd is not None:
        sd = sd[keep]
        if not np.all(np.isfinite(sd)):
            warnings.warn("calibration: some cases have no pred_dice_sd; the intervals are absolute.", UserWarning, 2)
            sd = None
    if groups is not None:
        if len(groups) != len(keep):
            raise ValueError(f"groups has {len(groups)} labels for {len(keep)} rows; give one per row.")
        groups = [g for g, k in zip(groups, keep) if k]
    split = split_calibration(len(raw), fit_fraction, seed)
    recal = tuple(
        calibrate_dice(raw[:, i], true[:, i], coverage, seed=seed, split=split, what=f"class {class_label(c)!r}",
                       pred_sd=None if sd is None else sd[:, i], groups=groups, maps=maps, n_folds=n_folds)
        for i, c in enumerate(classes)
    )  # fmt: skip
    flag = _calibrate_flag(raw.min(axis=1), true.min(axis=1), tau, alpha, delta)
    entropy = None
    if any("baseline_mean_entropy" in row for row in rows):
        entropy = (-column_matrix(rows, ["baseline_mean_entropy"])[keep, 0]).tolist()
    return QualityCalibration(
        classes=tuple(classes),
        recalibrations=recal,
        flag=flag,
        head_fingerprint=head_fingerprint,
        n_calibration=len(raw),
        fit_fraction=float(fit_fraction),
        seed=int(seed),
        reference={"pred_dice_raw": raw.mean(axis=1).tolist(), "mean_entropy": entropy},
    )


def calibrate_quality_csvs(
    csvs: Sequence[str | os.PathLike],
    checkpoint: str | os.PathLike,
    classes: Sequence[str],
    output_file: str | os.PathLike,
    **kwargs: Any,
) -> QualityCalibration:
    """The bundle's calibration step: read the calibration split's tables, calibrate, check, save.

    Args:
        csvs: ``quality.csv`` files of the labelled calibration split (evaluations of this pipeline).
        checkpoint: the quality head's checkpoint (fingerprinted into the file).
        classes: the column suffixes this pipeline writes (:func:`segq_monai.data.columns.class_suffixes`);
            the tables must have the same.
        output_file: the calibration JSON to write.
        kwargs: ``coverage``, ``alpha``, ``delta``, ``tau``, ``fit_fraction``, ``seed``, ``maps``, ``n_folds`` of
            :func:`calibrate_quality_table`.
    """
    if not csvs:
        raise ValueError(
            "calibration_csvs is empty: pass the quality.csv of an evaluation on a labelled calibration split."
        )
    rows = [row for f in csvs for row in read_quality_csv(f)]
    found = quality_columns(rows) if rows else []
    if found != list(classes):
        raise ValueError(
            f"the calibration tables {list(map(os.fspath, csvs))} hold classes {[class_label(c) for c in found]}, "
            f"this pipeline predicts {[class_label(c) for c in classes]}; evaluate the calibration split with it."
        )
    calibration = calibrate_quality_table(rows, head_fingerprint(checkpoint), **kwargs)
    calibration.save(output_file)
    return calibration


def interval_scores(
    rows: Sequence[Mapping[str, Any]], calibration: QualityCalibration | None = None
) -> dict[str, dict[str, Any]] | None:
    """How the calibrated columns of a labelled table did: per class, the realised coverage of
    ``[pred_dice_lo, pred_dice_hi]`` and its mean width, and the MAE of ``pred_dice_raw`` and of ``pred_dice``.

    With the ``calibration`` the table was written with, also the coverage and mean width that each kind of interval
    would have had on these cases (from ``pred_dice_raw`` and ``pred_dice_sd``): ``"absolute"`` and
    ``"normalised"`` (None without ``pred_dice_sd`` columns or a normalised ``q``).

    Returns:
        ``{class label: {"n", "coverage", "mean_width", "mae_raw", "mae_recalibrated"[, "absolute": {"coverage",
        "mean_width"}, "normalised": {...} | None]}}`` (Dice units; coverage a fraction of the ``n`` cases with every
        value finite), or None when the table has no ``pred_dice_lo``.
    """
    classes = quality_columns(rows) if rows else []
    if not classes or not any(column_name("pred_dice", classes[0], "lo") in row for row in rows):
        return None
    spreads = head_spreads(rows, classes)
    out: dict[str, dict[str, Any]] = {}
    for i, c in enumerate(classes):
        parts = (("pred_dice", RAW), ("pred_dice", ""), ("pred_dice", "lo"), ("pred_dice", "hi"), ("true_dice", ""))
        raw, pred, lo, hi, true = column_matrix(rows, [column_name(k, c, b) for k, b in parts]).T
        keep = np.isfinite(raw) & np.isfinite(pred) & np.isfinite(lo) & np.isfinite(hi) & np.isfinite(true)
        sd = None if spreads is None else spreads[keep, i]
        raw, pred, lo, hi, true = (a[keep] for a in (raw, pred, lo, hi, true))
        out[class_label(c)] = scores = {"n": int(keep.sum()), **_coverage(lo, hi, true),
                                        "mae_raw": float(np.mean(np.abs(raw - true))),
                                        "mae_recalibrated": float(np.mean(np.abs(pred - true)))}  # fmt: skip
        if calibration is None:
            continue
        r = calibration.recalibrations[calibration.classes.index(c)]
        scores["absolute"] = _coverage(*r.interval(raw, kind="absolute"), true)
        normalised = sd is not None and np.all(np.isfinite(sd)) and r.half_width_normalised is not None
        scores["normalised"] = _coverage(*r.interval(raw, sd, "normalised"), true) if normalised else None
    return out


def _coverage(lo: np.ndarray, hi: np.ndarray, true: np.ndarray) -> dict[str, float]:
    return {"coverage": float(np.mean((lo <= true) & (true <= hi))), "mean_width": float(np.mean(hi - lo))}
