"""A case's DICOM outputs from a deployment's outputs, written whole or not at all, and read back.

:func:`case_quality` turns one row of ``quality.csv`` (with ``promise.json`` and the fit folder) into a
:class:`~segq_monai.dicom.objects.CaseQuality`; :func:`write_case_objects` writes the SEG and the SR of one case
(``seg.dcm``, ``sr.dcm``) with :func:`~segq_monai.utils.atomic.atomic_path`; :func:`report_values` reads the values
of an SR written by :func:`~segq_monai.dicom.objects.quality_report` back (tests, and a user checking a PACS copy).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from segq_monai.data.columns import FLAG_COLUMN, column_name
from segq_monai.dicom import codes as segq_codes
from segq_monai.dicom.objects import CaseQuality, quality_report, segmentation_object
from segq_monai.utils.atomic import atomic_path
from segq_monai.utils.host_binding import file_sha256

__all__ = ["SEG_FILE", "SR_FILE", "case_quality", "read_json", "report_values", "write_case_objects"]

#: the file names of a case's DICOM outputs, in its output folder
SEG_FILE, SR_FILE = "seg.dcm", "sr.dcm"
#: the fit's settings the objects name as their provenance (``fit.json`` keys)
_FIT_SETTINGS = ("sampler", "num_samples", "seed", "activation")


def case_quality(row: Mapping[str, Any], fit: Mapping[str, Any], promise: Mapping[str, Any] | None = None,
                 fit_dir: str | os.PathLike | None = None) -> CaseQuality:  # fmt: skip
    """One case's :class:`CaseQuality` from the deployment's outputs.

    Args:
        row: the case's row of ``quality.csv`` (:func:`~segq_monai.data.columns.read_quality_csv`): ``pred_dice_<c>``
            per class ``c`` (``pred_dice`` for a single class), ``pred_dice_lo_<c>`` / ``pred_dice_hi_<c>`` where the
            run had a calibration file, ``flagged`` (0/1).
        fit: the fit's ``fit.json`` as :func:`~segq_monai.data.fit_folder.load_fit` returns it (``class_names``,
            ``quality_checkpoint``, ``calibration_file``, the sampler's settings).
        promise: ``promise.json`` beside ``quality.csv`` (its ``coverage``), or ``None`` (no intervals).
        fit_dir: the fit folder, named in the provenance.

    Raises:
        ValueError: the row lacks a class's ``pred_dice`` column (a table of another host); its name and the fix.
    """
    names = tuple(fit.get("class_names") or ["foreground"])
    suffix = {name: ("" if len(names) == 1 else name) for name in names}

    def values(bound: str) -> dict[str, float]:
        found = {n: row.get(column_name("pred_dice", suffix[n], bound)) for n in names}
        return {n: float(v) for n, v in found.items() if v is not None}

    pred = values("")
    if len(pred) != len(names):
        missing = [column_name("pred_dice", suffix[n]) for n in names if n not in pred]
        raise ValueError(f"quality.csv's row of {row.get('image')} has no {missing}; the fit's classes are "
                         f"{list(names)}: pass the fit folder this deployment ran with.")  # fmt: skip
    provenance = {"fit_dir": os.fspath(fit_dir) if fit_dir is not None else ""}
    checkpoint = fit.get("quality_checkpoint")
    if checkpoint and Path(checkpoint).is_file():
        provenance["head_sha256"] = file_sha256(checkpoint)
    calibration = fit.get("calibration_file")
    if calibration and Path(calibration).is_file():
        provenance["calibration_file"] = Path(calibration).name
        provenance["calibration_sha256"] = file_sha256(calibration)
    provenance.update({key: str(fit[key]) for key in _FIT_SETTINGS if key in fit})
    if "acceptance_threshold" in fit:
        provenance["acceptance_threshold"] = repr(float(fit["acceptance_threshold"]))
    coverage = None if not promise or promise.get("coverage") is None else float(promise["coverage"])
    return CaseQuality(class_names=names, pred_dice=pred, flagged=bool(int(row.get(FLAG_COLUMN) or 0)),
                       pred_dice_lo=values("lo"), pred_dice_hi=values("hi"), coverage=coverage,
                       provenance=provenance)  # fmt: skip


def write_case_objects(folder: str | os.PathLike, seg: np.ndarray, source: Sequence[Dataset],
                       quality: CaseQuality) -> tuple[Dataset, Dataset]:  # fmt: skip
    """Build the SEG and the SR of one case and write them to ``folder`` (:data:`SEG_FILE`, :data:`SR_FILE`), each
    whole or not at all; the SR is written only once the SEG is.

    Args:
        folder: the case's output folder (created).
        seg: ``[X, Y, Z]`` class indices on the source grid (:func:`~segq_monai.dicom.objects.segmentation_object`).
        source: the source series' slices, sorted along the normal.
        quality: the case's values.

    Returns:
        the SEG and the SR datasets.
    """
    seg_object = segmentation_object(seg, source, quality)
    report = quality_report(seg_object, source, quality)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for dataset, name in ((seg_object, SEG_FILE), (report, SR_FILE)):
        with atomic_path(out / name, suffix=".dcm") as tmp:
            dataset.save_as(tmp, write_like_original=False)
    return seg_object, report


def _code(item: Dataset, attribute: str = "ConceptNameCodeSequence") -> str:
    seq = item.get(attribute)
    return str(seq[0].CodeValue) if seq else ""


def _walk(items: Sequence[Dataset]):
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))


def report_values(report: Dataset) -> dict[str, dict[str, Any]]:
    """The values of a segq SR (:func:`~segq_monai.dicom.objects.quality_report`), per measurement group.

    Returns:
        tracking identifier (``"segq class <name>"`` per class, ``"segq case"``) -> ``{"pred_dice": float,
        "pred_dice_lo": ..., "pred_dice_hi": ..., "coverage": ..., "flagged": bool, "segment": int, "provenance":
        {name: text}}`` (the keys the group holds; floats are the exact ``FloatingPointValue`` where present, else
        ``NumericValue``; ``provenance``: the algorithm's parameters, e.g. ``head_sha256``).
    """
    names = {segq_codes.PRED_DICE.value: "pred_dice", segq_codes.PRED_DICE_LO.value: "pred_dice_lo",
             segq_codes.PRED_DICE_HI.value: "pred_dice_hi", segq_codes.COVERAGE.value: "coverage"}  # fmt: skip
    groups: dict[str, dict[str, Any]] = {}
    for item in _walk(report.ContentSequence):
        if item.ValueType != "CONTAINER" or _code(item) != "125007":  # DCM 125007 Measurement Group
            continue
        values: dict[str, Any] = {}
        key = ""
        for child in item.get("ContentSequence", []):
            code = _code(child)
            if child.ValueType == "TEXT" and code == "112039":  # DCM 112039 Tracking Identifier
                key = str(child.TextValue)
            elif child.ValueType == "TEXT" and code == "111002":  # DCM 111002 Algorithm Parameters: "name=value"
                name, _, text = str(child.TextValue).partition("=")
                values.setdefault("provenance", {})[name] = text
            elif child.ValueType == "NUM" and code in names:
                measured = child.MeasuredValueSequence[0]
                exact = measured.get("FloatingPointValue")
                values[names[code]] = float(exact if exact is not None else measured.NumericValue)
            elif child.ValueType == "CODE" and code == segq_codes.FLAG.value:
                values[FLAG_COLUMN] = _code(child, "ConceptCodeSequence") == segq_codes.FLAGGED.value
            elif child.ValueType == "IMAGE" and "ReferencedSegmentNumber" in child.ReferencedSOPSequence[0]:
                values["segment"] = int(child.ReferencedSOPSequence[0].ReferencedSegmentNumber)
        groups[key] = values
    return groups


def read_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """A JSON file's content, ``None`` where there is no such file."""
    return json.loads(Path(path).read_text()) if Path(path).is_file() else None
