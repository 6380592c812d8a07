"""A case's DICOM outputs: the segmentation as a DICOM SEG (:func:`segmentation_object`) and its predicted quality
as a TID 1500 measurement report, a Comprehensive 3D SR (:func:`quality_report`), both referencing the source series.

What they hold (docs/dicom.md):

* SEG: one segment per foreground class of the host (numbers = class indices 1..C-1, labels = the host's class
  names, type = the class's ``99SEGQ`` code), binary, every slice of the source series written (empty frames too,
  so that an empty segmentation is a valid SEG with all frames zero); ``SeriesDescription`` begins with
  ``FLAGGED`` for a flagged case and says ``empty`` for an empty segmentation.
* SR: one volumetric measurement group per class, referencing its segment, with ``pred_dice`` and, where the run
  had a calibration file, ``pred_dice_lo`` / ``pred_dice_hi`` and their coverage, and the case's flag; one
  image-level group with the flag; the algorithm identification carries the provenance (head checkpoint SHA-256,
  calibration file and its SHA-256, the fit's settings). Values are ``NumericValue`` (DS, 16 characters) and the
  exact float64 in ``FloatingPointValue``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from segq_monai.dicom import codes as segq_codes
from segq_monai.dicom.series import derived_uid

__all__ = ["CaseQuality", "quality_report", "segmentation_object"]

_SOFTWARE = "segq-monai"


@dataclass(frozen=True)
class CaseQuality:
    """One case's predicted quality, as its ``quality.csv`` row and the run's promise give it.

    Attributes:
        class_names: the host's foreground classes, in class-index order (index 1 first).
        pred_dice: class name -> predicted Dice in [0, 1].
        flagged: the case's failure flag.
        pred_dice_lo, pred_dice_hi: class name -> interval bounds (empty without a calibration file).
        coverage: the intervals' promised coverage (``None`` without intervals).
        provenance: what produced the values, as ``name -> text`` (head checkpoint SHA-256, calibration file, ...).
    """

    class_names: tuple[str, ...]
    pred_dice: Mapping[str, float]
    flagged: bool
    pred_dice_lo: Mapping[str, float] = field(default_factory=dict)
    pred_dice_hi: Mapping[str, float] = field(default_factory=dict)
    coverage: float | None = None
    provenance: Mapping[str, str] = field(default_factory=dict)


def _digest(labels: np.ndarray, quality: CaseQuality) -> str:
    """SHA-256 of the voxels and the values: the same result gives the same UIDs, another result other UIDs (a PACS
    must never receive two contents under one UID)."""
    values = json.dumps({k: (dict(v) if isinstance(v, Mapping) else v) for k, v in vars(quality).items()},
                        sort_keys=True, default=list)  # fmt: skip
    return hashlib.sha256(labels.tobytes() + values.encode()).hexdigest()


def _algorithm(quality: CaseQuality, version: str) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name="segq-monai deployment", family=codes.cid7162.ArtificialIntelligence, version=version,
        parameters=dict(quality.provenance),
    )  # fmt: skip


def segmentation_object(seg: np.ndarray, source: Sequence[Dataset], quality: CaseQuality, series_number: int = 901,
                        version: str = "0.1.0") -> hd.seg.Segmentation:  # fmt: skip
    """The DICOM SEG of one case.

    Args:
        seg: ``[X, Y, Z]`` class indices on the source series' grid (columns, rows, slices in ``source``'s order,
            as MONAI's ITK reader reads the series folder); 0 = background.
        source: the source series' slices, sorted along the normal.
        quality: the case's quality (class names for the segments, the flag for the series description).
        series_number: the SEG's SeriesNumber.
        version: the software version written.

    Raises:
        ValueError: ``seg`` is not on the source grid or holds a class outside ``1..len(class_names)``.
    """
    grid = (int(source[0].Columns), int(source[0].Rows), len(source))
    if tuple(seg.shape) != grid:
        raise ValueError(f"The segmentation's shape {tuple(seg.shape)} is not the source series' grid {grid} "
                         "(columns, rows, slices); write the segmentation on the series' own grid.")
    labels = np.asarray(seg).astype(np.int64)
    if labels.min() < 0 or labels.max() > len(quality.class_names):
        raise ValueError(f"The segmentation holds classes {sorted(np.unique(labels).tolist())} but the host has "
                         f"{len(quality.class_names)} foreground classes; pass the fit of this host.")
    algorithm = _algorithm(quality, version)
    segments = [
        hd.seg.SegmentDescription(
            segment_number=k, segment_label=name, segmented_property_category=segq_codes.HOST_CLASS,
            segmented_property_type=segq_codes.class_code(k, name), algorithm_type="AUTOMATIC",
            algorithm_identification=algorithm, tracking_uid=derived_uid(source[0].SeriesInstanceUID, "segment", name),
            tracking_id=f"segq class {name}",
        ) for k, name in enumerate(quality.class_names, start=1)
    ]  # fmt: skip
    state = "FLAGGED for review: " if quality.flagged else ""
    empty = " (empty segmentation)" if not labels.any() else ""
    key = (source[0].SeriesInstanceUID, "seg", _digest(labels, quality))
    return hd.seg.Segmentation(
        source_images=list(source), pixel_array=labels.transpose(2, 1, 0).astype(np.uint8),
        segmentation_type="BINARY", segment_descriptions=segments,
        series_instance_uid=derived_uid(*key[:2], "series"), series_number=series_number,
        sop_instance_uid=derived_uid(*key), instance_number=1, manufacturer=_SOFTWARE,
        manufacturer_model_name="segq-monai quality control", software_versions=version,
        device_serial_number="0", omit_empty_frames=False, coding_schemes=[segq_codes.SCHEME],
        series_description=f"{state}segq segmentation{empty}"[:64], content_label="SEGQ",
    )  # fmt: skip


def _num(name: hd.sr.CodedConcept, value: float) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=name, value=float(value), unit=segq_codes.UNITLESS)


def _flag(quality: CaseQuality) -> hd.sr.QualitativeEvaluation:
    return hd.sr.QualitativeEvaluation(segq_codes.FLAG, segq_codes.FLAGGED if quality.flagged else segq_codes.ACCEPTED)


def quality_report(seg: Dataset, source: Sequence[Dataset], quality: CaseQuality, series_number: int = 902,
                   version: str = "0.1.0") -> hd.sr.Comprehensive3DSR:  # fmt: skip
    """The TID 1500 measurement report of one case's predicted quality, referencing ``seg`` and ``source``.

    Args:
        seg: the case's SEG (:func:`segmentation_object`), as written (its segments are referenced by number).
        source: the source series' slices.
        quality: the values and their provenance.
        series_number: the SR's SeriesNumber.
        version: the software version written.
    """
    algorithm = hd.sr.AlgorithmIdentification(
        name="segq-monai quality head", version=version,
        parameters=[f"{key}={value}" for key, value in quality.provenance.items()],
    )  # fmt: skip
    groups: list = []
    for k, name in enumerate(quality.class_names, start=1):
        measurements = [_num(segq_codes.PRED_DICE, quality.pred_dice[name])]
        if name in quality.pred_dice_lo and name in quality.pred_dice_hi:
            measurements += [_num(segq_codes.PRED_DICE_LO, quality.pred_dice_lo[name]),
                             _num(segq_codes.PRED_DICE_HI, quality.pred_dice_hi[name])]  # fmt: skip
            if quality.coverage is not None:
                measurements.append(_num(segq_codes.COVERAGE, quality.coverage))
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=derived_uid(seg.SOPInstanceUID, "group", name), identifier=f"segq class {name}"),
            referenced_segment=hd.sr.ReferencedSegment(
                seg.SOPClassUID, seg.SOPInstanceUID, k,
                source_series=hd.sr.SourceSeriesForSegmentation(source[0].SeriesInstanceUID)),
            finding_type=segq_codes.class_code(k, name), algorithm_id=algorithm,
            measurements=measurements, qualitative_evaluations=[_flag(quality)],
        ))  # fmt: skip
    groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=derived_uid(seg.SOPInstanceUID, "group", "case"),
                                                     identifier="segq case"),
        algorithm_id=algorithm, qualitative_evaluations=[_flag(quality)],
    ))  # fmt: skip
    observer = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid("device", quality.provenance.get("head_sha256", "")), name="segq-monai quality head"),
    )  # fmt: skip
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=segq_codes.PROCEDURE, imaging_measurements=groups,
    )  # fmt: skip
    state = "FLAGGED for review: " if quality.flagged else ""
    return hd.sr.Comprehensive3DSR(
        evidence=[seg, *source], content=report[0], series_instance_uid=derived_uid(seg.SOPInstanceUID, "sr series"),
        series_number=series_number, sop_instance_uid=derived_uid(seg.SOPInstanceUID, "sr"), instance_number=1,
        manufacturer=_SOFTWARE, is_complete=True, coding_schemes=[segq_codes.SCHEME],
        series_description=f"{state}segq predicted quality"[:64],
    )  # fmt: skip
