"""The calibration file of one quality head at one site: recalibrated Dice, per-case intervals, the guaranteed flag,
drift reference; :class:`QualityCalibration` holds it, applies it, and reads and writes it.

Made once from the ``quality.csv`` of a labelled calibration split of the target site (an evaluation of the
pipeline on cases neither stage was trained on) by
:func:`~segq_monai.calibration.quality_calibration.calibrate_quality_table`, saved as JSON
(:meth:`QualityCalibration.save`, format :data:`FORMAT`), and read by inference (``--calibration_file``), which
then writes the recalibrated ``pred_dice``, the head's ``pred_dice_raw``, the interval ``pred_dice_lo`` /
``pred_dice_hi`` and the calibrated ``flagged`` (:class:`segq_monai.transforms.RecalibrateQualityd`).

The file (strict JSON; ``null`` for an infinite threshold)::

    {"format": "segq-quality-calibration/1",
     "head_fingerprint": "<sha256 of the quality head's checkpoint file>",
     "classes": ["", ] | ["brain", "ventricles", ...],     # column suffixes; "" = binary (plain pred_dice)
     "n_calibration": n, "fit_fraction": 0.5, "seed": 0,
     "coverage": 0.9, "promise": "<the coverage statement>",
     "recalibration": {"<class or foreground>": {
         "map": "identity" | "linear" | "isotonic",           # the recalibration g, chosen on the fit part
         "cv_mae": {"identity": .., "linear": .., "isotonic": ..} | null,   # each candidate's cross-validated MAE
         "knots_x": [...], "knots_y": [...],                   # isotonic g (else empty)
         "coef": [slope, intercept],                           # linear g (else empty)
         "interval": "normalised" | "absolute",                # the kind of pred_dice_lo/hi
         "half_width": q, "half_width_normalised": q_n | null, # the conformal q of both kinds
         "sd_floor": 0.001, "coverage": 0.9, "n_fit": .., "n_score": .., "fallback": false}},
     "flag": {"acceptance_threshold": λ̂ | null, "alpha", "delta", "tau", "feasible", "bound", "fraction_accepted",
              "n_calibration", "n_accepted", "failures_accepted", "method": "selective"},
     "reference": {"pred_dice_raw": [n per-case mean raw predicted Dice], "mean_entropy": [n, nats] | null}}

Promises (see :mod:`segq_monai.calibration.recalibration` and :mod:`segq_monai.calibration.flag`): if the calibration
cases and a new case are exchangeable, the new case's true Dice of each class lies in its interval with
probability at least ``coverage``; if they are i.i.d., with probability at least ``1 - delta`` over the calibration
split, at most a fraction ``alpha`` of the cases the flag accepts are failures (true Dice of some class
``< tau``). The flag's threshold ``λ̂`` is on the per-case minimum over classes of the *raw* predicted Dice and is
calibrated on all ``n`` cases (the raw head did not see them); the intervals use the fit / score split.

Files written before the map choice and the normalised intervals (no ``"map"``, no ``"interval"``) load as what they
were: isotonic maps with absolute intervals; files that name λ̂ ``"flag": {"threshold"}`` and the raw predicted Dice
``"reference": {"pred_dice"}`` (before one word per idea) load with those read as ``acceptance_threshold`` and
``pred_dice_raw``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from segq_monai.calibration.flag import AcceptanceThreshold
from segq_monai.calibration.maps import MAPS
from segq_monai.calibration.recalibration import INTERVAL_KINDS, DiceRecalibration
from segq_monai.data.columns import FLAG_COLUMN, RAW, SPREAD, class_label, column_matrix, column_name, quality_columns
from segq_monai.metrics.quality import dice_to_iou
from segq_monai.utils.atomic import atomic_write_text
from segq_monai.utils.jsonable import jsonable

__all__ = ["FORMAT", "QualityCalibration", "head_fingerprint", "head_spreads", "load_quality_calibration"]

FORMAT = "segq-quality-calibration/1"
_FIX = (
    "run the calibration step for this head and class set (bundle/configs/calibrate_quality.json), or point "
    "calibration_file at the matching file"
)


def head_fingerprint(checkpoint: str | os.PathLike) -> str:
    """SHA-256 (hex) of the quality head's checkpoint file: which head a calibration belongs to."""
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"no quality head checkpoint at {os.fspath(checkpoint)!r}; train stage 2 first.")
    digest = hashlib.sha256()
    with open(checkpoint, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _promise(coverage: float, flag: AcceptanceThreshold) -> str:
    lam = flag.acceptance_threshold
    lam = f"{lam:g}" if math.isfinite(lam) else "+inf (no threshold certified: all flagged)"
    return (
        f"pred_dice_lo/pred_dice_hi: if the calibration cases and a new case are exchangeable (drawn alike from "
        f"one site), the new case's true Dice of each class lies in [pred_dice_lo, pred_dice_hi] with probability "
        f"at least {coverage:g} (marginal coverage, over calibration split and case together; not for every "
        f"single case). flagged: if they are i.i.d., with probability at least {1 - flag.delta:g} over the "
        f"calibration split, at most {flag.alpha:g} of the accepted (unflagged) cases are failures (true Dice < "
        f"{flag.tau:g} for some class); accepted = per-case minimum of pred_dice_raw >= {lam}. Cases unlike the "
        f"calibration split (see drift.json) void both."
    )


@dataclass(frozen=True)
class QualityCalibration:
    """The calibration of one quality head at one site (see the module docstring for the file).

    Attributes:
        classes: column suffixes of the foreground classes (``("",)``: binary).
        recalibrations: one :class:`~segq_monai.calibration.recalibration.DiceRecalibration` per class, in order.
        flag: the guaranteed flag's threshold on the per-case minimum raw predicted Dice.
        head_fingerprint: :func:`head_fingerprint` of the head the calibration split was predicted with.
        n_calibration, fit_fraction, seed: the calibration split and how it was divided.
        reference: per-case values of the calibration split for drift checks: ``"pred_dice_raw"`` (the head's, mean over
            classes, Dice units) and ``"mean_entropy"`` (mean predictive entropy, nats; None when the table had
            no ``baseline_mean_entropy`` column).
    """

    classes: tuple[str, ...]
    recalibrations: tuple[DiceRecalibration, ...]
    flag: AcceptanceThreshold
    head_fingerprint: str
    n_calibration: int
    fit_fraction: float
    seed: int
    reference: dict[str, list[float] | None] = field(default_factory=dict)

    @property
    def coverage(self) -> float:
        """The promised coverage of the intervals."""
        return self.recalibrations[0].coverage

    def apply(
        self, raw_dice: Any, sd: Any | None = None, kind: str | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(pred_dice, lo, hi)`` for one case's raw predicted Dice ``[K]`` (K classes, in order): each ``[K]``.

        ``sd``: the case's ``pred_dice_sd`` ``[K]`` (Dice units) or None; ``kind``: one of ``"absolute"``,
        ``"normalised"``, or None for each class's recorded kind (absolute where ``sd`` is None or not finite).
        """
        raw = np.asarray(raw_dice, np.float64).reshape(-1)
        if raw.size != len(self.classes):
            raise ValueError(f"the calibration has {len(self.classes)} class(es), the prediction {raw.size}.")
        sds: list[float | None] = [None] * raw.size
        if sd is not None:
            sds = [float(v) if np.isfinite(v) else None for v in np.asarray(sd, np.float64).reshape(-1)]
            if len(sds) != raw.size:
                raise ValueError(f"pred_dice_sd has {len(sds)} value(s), the prediction {raw.size}.")
        dice = np.array([r.predict(v) for r, v in zip(self.recalibrations, raw)], np.float64)
        bounds = [r.interval(v, s, kind) for r, v, s in zip(self.recalibrations, raw, sds)]
        lo, hi = np.array(bounds, np.float64).reshape(-1, 2).T
        return dice, lo, hi

    def flagged(self, raw_dice: Any) -> bool:
        """The guaranteed flag of one case: minimum raw predicted Dice over classes ``< λ̂`` (or NaN)."""
        return not bool(np.min(np.asarray(raw_dice, np.float64)) >= self.flag.acceptance_threshold)

    def recalibrate_rows(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``quality.csv`` rows as a run with this calibration writes them: ``pred_dice`` (and ``pred_iou``)
        recalibrated, ``pred_dice_raw``, ``pred_dice_lo`` / ``pred_dice_hi`` and the calibrated ``flagged``, per
        class; the raw prediction is read from ``pred_dice_raw`` where present, else ``pred_dice``, the head's spread
        from ``pred_dice_sd`` where present. Other columns are kept. For scoring a table offline, e.g.
        ``interval_scores(calibration.recalibrate_rows(rows), calibration)``."""
        classes = list(self.classes)
        if rows and quality_columns(rows) != classes:
            raise ValueError(f"the rows hold classes {[class_label(c) for c in quality_columns(rows)]}, the "
                             f"calibration {[class_label(c) for c in classes]}.")  # fmt: skip
        out = []
        for row in rows:
            bound = RAW if column_name("pred_dice", classes[0], RAW) in row else ""
            raw = column_matrix([row], [column_name("pred_dice", c, bound) for c in classes])[0]
            sd = head_spreads([row], classes)
            dice, lo, hi = self.apply(raw, None if sd is None else sd[0])
            new = dict(row, **{FLAG_COLUMN: int(self.flagged(raw))})
            for i, c in enumerate(classes):
                new[column_name("pred_dice", c)] = float(dice[i])
                new[column_name("pred_iou", c)] = float(dice_to_iou(dice[i]))
                new[column_name("pred_dice", c, RAW)] = float(raw[i])
                new[column_name("pred_dice", c, "lo")] = float(lo[i])
                new[column_name("pred_dice", c, "hi")] = float(hi[i])
            out.append(new)
        return out

    def check(
        self, fingerprint: str, classes: Sequence[str], source: str = "the calibration file", fix: str = _FIX
    ) -> None:
        """Refuse a calibration made for another head or class set, naming both; ``fix`` ends the message."""
        if fingerprint != self.head_fingerprint or list(classes) != list(self.classes):
            raise ValueError(
                f"{source} was made for the quality head {self.head_fingerprint[:16]}… with classes "
                f"{[class_label(c) for c in self.classes]}; this run uses the head {fingerprint[:16]}… with classes "
                f"{[class_label(c) for c in classes]}. {fix[:1].upper()}{fix[1:]}."
            )

    def promise(self) -> dict[str, Any]:
        """What a run with this calibration promises: coverage, half-widths, flag threshold, the statement."""
        return jsonable(
            {
                "coverage": self.coverage,
                "half_width": {class_label(c): r.half_width for c, r in zip(self.classes, self.recalibrations)},
                "interval": {class_label(c): r.interval_kind for c, r in zip(self.classes, self.recalibrations)},
                "half_width_normalised": {
                    class_label(c): r.half_width_normalised for c, r in zip(self.classes, self.recalibrations)
                },
                "map": {class_label(c): r.map for c, r in zip(self.classes, self.recalibrations)},
                "acceptance_threshold": self.flag.acceptance_threshold,
                "alpha": self.flag.alpha,
                "delta": self.flag.delta,
                "tau": self.flag.tau,
                "n_calibration": self.n_calibration,
                "head_fingerprint": self.head_fingerprint,
                "promise": _promise(self.coverage, self.flag),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "format": FORMAT,
                "head_fingerprint": self.head_fingerprint,
                "classes": list(self.classes),
                "n_calibration": self.n_calibration,
                "fit_fraction": self.fit_fraction,
                "seed": self.seed,
                "coverage": self.coverage,
                "promise": _promise(self.coverage, self.flag),
                "recalibration": {class_label(c): _record(r) for c, r in zip(self.classes, self.recalibrations)},
                "flag": asdict(self.flag),
                "reference": self.reference,
            }
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the JSON file atomically (its folder is created)."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> QualityCalibration:
        """Read a file written by :meth:`save`; a clear error for a missing file or another format."""
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"no calibration file at {os.fspath(path)!r}; write it with bundle/configs/calibrate_quality.json."
            )
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{os.fspath(path)!r} is not a quality calibration ({FORMAT}); write one with "
                             "bundle/configs/calibrate_quality.json.")  # fmt: skip
        classes = tuple(d["classes"])
        recal = tuple(_from_record(d["recalibration"][class_label(c)], path) for c in classes)
        flag = dict(d["flag"])
        lam = flag.pop("acceptance_threshold", flag.pop("threshold", None))  # "threshold": files before the rename
        flag["acceptance_threshold"] = math.inf if lam is None else lam
        return cls(
            classes=classes,
            recalibrations=recal,
            flag=AcceptanceThreshold(**flag),
            head_fingerprint=d["head_fingerprint"],
            n_calibration=d["n_calibration"],
            fit_fraction=d["fit_fraction"],
            seed=d["seed"],
            reference=_reference(d["reference"]),
        )


def _reference(reference: Mapping[str, Any]) -> dict[str, list[float] | None]:
    """The file's drift reference; files before the raw prediction had its own name held it as ``"pred_dice"``."""
    reference = dict(reference)
    if "pred_dice" in reference:
        reference["pred_dice_raw"] = reference.pop("pred_dice")
    return reference


def _record(r: DiceRecalibration) -> dict[str, Any]:
    """One class's entry of the file: the dataclass's fields, ``interval_kind`` written as ``"interval"``."""
    record = asdict(r)
    record["interval"] = record.pop("interval_kind")
    return record


def _from_record(r: Mapping[str, Any], path: str | os.PathLike) -> DiceRecalibration:
    """The inverse of :func:`_record`; an entry without ``"map"`` / ``"interval"`` (an older file) is an isotonic map
    with an absolute interval."""
    r = dict(r)
    kind = r.pop("interval", "absolute")
    if r.get("map", "isotonic") not in MAPS or kind not in INTERVAL_KINDS:
        raise ValueError(f"{os.fspath(path)!r}: unknown recalibration map {r.get('map')!r} or interval {kind!r}; "
                         f"maps are {MAPS}, intervals {INTERVAL_KINDS}. Rewrite it with this version.")  # fmt: skip
    for key in ("knots_x", "knots_y", "coef"):
        r[key] = tuple(r.get(key, ()))
    return DiceRecalibration(**r, interval_kind=kind)


def head_spreads(rows: Sequence[Mapping[str, Any]], classes: Sequence[str]) -> np.ndarray | None:
    """``[N, K]`` the head's ``pred_dice_sd`` of each row and class (NaN where empty); None without the columns."""
    columns = [column_name("pred_dice", c, SPREAD) for c in classes]
    if not rows or not all(col in rows[0] for col in columns):
        return None
    return column_matrix(rows, columns)


def load_quality_calibration(
    path: str | os.PathLike, checkpoint: str | os.PathLike, classes: Sequence[str], fix: str = _FIX
) -> QualityCalibration:
    """Read a calibration file and refuse it unless it was made for this head (``checkpoint``) and ``classes``;
    ``fix`` says what to do instead (default: the bundle's calibration step)."""
    calibration = QualityCalibration.load(path)
    calibration.check(
        head_fingerprint(checkpoint), classes, source=f"calibration file {os.fspath(path)!r}", fix=f"{fix} "
        f"(this run's head: {os.fspath(checkpoint)!r})"
    )
    return calibration
