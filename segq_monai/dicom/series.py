"""A DICOM image series: read and check one (:func:`check_series_folder`; MONAI's ITK reader reads its voxels), and
make one from a NIfTI volume (:func:`write_mr_series`; :func:`write_colin27_series`, the derived Colin27 test series).

Geometry: slice ``k`` of a series sorted along its normal is ``volume[:, :, k]`` transposed, so ``volume[i, j, k]``
is the pixel in column ``i``, row ``j`` of slice ``k``; :func:`series_affine` maps ``(i, j, k)`` to RAS millimetres
(NIfTI's convention), from ``ImagePositionPatient``, ``ImageOrientationPatient`` and ``PixelSpacing`` (LPS).
A series with a gap (a missing slice), slices of differing orientation or size, or instances of several series is
refused with a message that names the series and the fix.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from segq_monai.data.volume3d import volume3d_dir

__all__ = [
    "UID_ROOT", "check_series_folder", "derived_uid", "in_series_order", "read_series_folder", "series_affine",
    "sort_slices", "write_colin27_series", "write_mr_series",
]  # fmt: skip

#: the root of every UID this package derives (pydicom's registered root; the rest is a hash of what the object is)
UID_ROOT = "1.2.826.0.1.3680043.8.498."
#: LPS (DICOM) <-> RAS (NIfTI): flip the first two axes
_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: how far (mm) positions may stray from a regular grid before a series is refused as having gaps
_GRID_TOLERANCE = 1e-2


def derived_uid(*parts: str) -> str:
    """A UID under :data:`UID_ROOT` from a hash of ``parts``: the same parts give the same UID, on every machine."""
    return generate_uid(prefix=UID_ROOT, entropy_srcs=["segq-monai", *parts])


def read_series_folder(folder: str | os.PathLike) -> list[Dataset]:
    """Every DICOM file in ``folder`` (not its subfolders), read whole; a folder with none is refused."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file())
    datasets = []
    for path in files:
        try:
            datasets.append(pydicom.dcmread(path))
        except pydicom.errors.InvalidDicomError:
            continue
    if not datasets:
        raise FileNotFoundError(f"No DICOM file in {folder}; pass the folder that holds one series' slices.")
    return datasets


def check_series_folder(folder: str | os.PathLike) -> list[Dataset]:
    """The slices of the one series in ``folder``, sorted along its normal (:func:`sort_slices`), or a refusal that
    names the folder and the fix (no DICOM file, several series, a missing slice, ...)."""
    return sort_slices(read_series_folder(folder), f"folder {os.fspath(folder)}")


def _normal(ds: Dataset) -> np.ndarray:
    row, col = np.asarray(ds.ImageOrientationPatient[:3], float), np.asarray(ds.ImageOrientationPatient[3:], float)
    return np.cross(row, col)


def sort_slices(datasets: Sequence[Dataset], source: str) -> list[Dataset]:
    """The slices of one series, sorted along its normal, after checking that they form one regular grid.

    Args:
        datasets: the instances, in any order.
        source: how to name where they came from in a message (a folder, a PACS series).

    Raises:
        ValueError: instances of several series, of another kind than a single-frame image, slices of differing
            orientation or size, or a gap (a missing slice) or a duplicate position.
    """
    series = sorted({str(ds.get("SeriesInstanceUID", "")) for ds in datasets})
    if len(series) != 1:
        raise ValueError(f"{source} holds instances of {len(series)} series ({', '.join(series)}); a series folder "
                         "must hold one series: move each series into a folder of its own and pass one.")
    uid = series[0]
    if any("ImagePositionPatient" not in ds or "PixelData" not in ds for ds in datasets):
        raise ValueError(f"Series {uid} in {source} has instances without ImagePositionPatient or pixel data; pass "
                         "an image series (CT, MR, ...), not a SEG, SR or other non-image object.")
    shapes = {(int(ds.Rows), int(ds.Columns), tuple(np.round(ds.ImageOrientationPatient, 4)),
               tuple(np.round(ds.PixelSpacing, 4))) for ds in datasets}  # fmt: skip
    if len(shapes) != 1:
        raise ValueError(f"Series {uid} in {source} mixes slice sizes, orientations or pixel spacings ({len(shapes)} "
                         "kinds); a volume needs one grid: pass a series whose slices share them.")
    normal = _normal(datasets[0])
    ordered = sorted(datasets, key=lambda ds: float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))))
    positions = np.array([np.asarray(ds.ImagePositionPatient, float) for ds in ordered])
    if len(ordered) > 1:
        steps = np.diff(positions @ normal)
        step = float(np.median(steps))
        if step <= _GRID_TOLERANCE or np.any(np.abs(steps - step) > _GRID_TOLERANCE * max(1.0, step)):
            gaps = [f"{positions[i] @ normal:.2f} -> {positions[i + 1] @ normal:.2f} mm"
                    for i in np.flatnonzero(np.abs(steps - step) > _GRID_TOLERANCE * max(1.0, step))]  # fmt: skip
            raise ValueError(
                f"Series {uid} in {source} is not a regular stack of {len(ordered)} slices: the slice step is "
                f"{step:.2f} mm but steps {', '.join(gaps[:5])} differ (a missing or duplicate slice). Send or copy "
                "the whole series again (every slice) and rerun."
            )
    return ordered


def series_affine(ordered: Sequence[Dataset]) -> np.ndarray:
    """The ``[4, 4]`` RAS affine (mm) of a sorted series (:func:`sort_slices`), indexed ``(column, row, slice)``."""
    first = ordered[0]
    row, col = (np.asarray(first.ImageOrientationPatient[i : i + 3], float) for i in (0, 3))
    dr, dc = (float(v) for v in first.PixelSpacing)  # between rows, between columns
    origin = np.asarray(first.ImagePositionPatient, float)
    if len(ordered) > 1:
        slice_vec = np.asarray(ordered[1].ImagePositionPatient, float) - origin
    else:
        slice_vec = _normal(first) * float(first.get("SliceThickness", 1.0))
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row * dc, col * dr, slice_vec, origin
    return _LPS_RAS @ lps


def in_series_order(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """``img`` turned to the axis order :func:`write_mr_series` writes (the closest to LPS: columns to the patient's
    left, rows to the back), its RAS affine turned with it: a label saved from it lies on the grid of the series
    written from ``img`` (as MONAI's reader reads the series: :func:`series_affine`)."""
    lps_axes = nib.orientations.axcodes2ornt(("L", "P", "S"))
    return img.as_reoriented(nib.orientations.ornt_transform(nib.orientations.io_orientation(img.affine), lps_axes))


def write_mr_series(nifti: str | os.PathLike, folder: str | os.PathLike, patient: str = "COLIN27",
                    description: str = "Colin27 T1 4 mm (derived, segq-monai test data)", modality: str = "MR",
                    uid_salt: str = "") -> list[Path]:  # fmt: skip
    """Write a NIfTI volume as a single-frame image series, one file per axial slice, reproducibly.

    The volume is turned to the axis order closest to LPS (DICOM's axial convention: rows run to the patient's
    left, columns to the back) and rounded to uint16 (the Colin27 T1 is uint8 already). Its UIDs derive from the
    SHA-256 of the NIfTI file and ``uid_salt`` (:func:`derived_uid`), so the same file gives the same study, series
    and instances; ``ImageType`` ``DERIVED\\SECONDARY`` and ``DerivationDescription`` say it was made, not acquired.

    Args:
        nifti: a 3D NIfTI volume (RAS affine, axis-aligned).
        folder: the new series' folder (created).
        patient: PatientName and PatientID.
        description: SeriesDescription.
        modality: ``"MR"`` (MR Image Storage) or ``"CT"`` (CT Image Storage, the same pixels: a study without MR,
            for tests).
        uid_salt: mixed into every UID: another study of the same file (e.g. a damaged copy for a test).

    Returns:
        the files, in slice order (feet to head).
    """
    if modality not in ("MR", "CT"):
        raise ValueError(f"modality must be 'MR' or 'CT', got {modality!r}.")
    storage = MRImageStorage if modality == "MR" else CTImageStorage
    img = in_series_order(nib.load(os.fspath(nifti)))
    digest = hashlib.sha256(Path(nifti).read_bytes()).hexdigest() + uid_salt
    data = np.rint(np.asarray(img.dataobj, dtype=np.float64)).clip(0, 65535).astype(np.uint16)
    lps = _LPS_RAS @ img.affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    study, series = derived_uid(digest, "study"), derived_uid(digest, "series")
    frame_of_reference = derived_uid(digest, "frame_of_reference")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(data.shape[2]):
        sop = derived_uid(digest, "instance", str(k))
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = storage, sop
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = storage, sop, modality
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame_of_reference
        ds.PatientName, ds.PatientID, ds.PatientSex, ds.PatientBirthDate = f"{patient}^", patient, "M", ""
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20261207", "000000", "1", ""
        ds.ReferringPhysicianName, ds.Manufacturer = "", "segq-monai (derived test data)"
        ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = 1, k + 1, description
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.DerivationDescription = f"segq-monai write_mr_series from NIfTI sha256 {digest[:16]}"[:1024]
        ds.PositionReferenceIndicator = ""
        if modality == "MR":
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "GR", "NONE", "", "3D"
        else:
            ds.RescaleIntercept, ds.RescaleSlope, ds.KVP = 0, 1, ""
        ds.ImagePositionPatient = [round(float(v), 4) for v in lps[:3, :3] @ [0, 0, k] + lps[:3, 3]]
        ds.ImageOrientationPatient = [round(float(v), 6) for v in
                                      [*(lps[:3, 0] / spacing[0]), *(lps[:3, 1] / spacing[1])]]  # fmt: skip
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = ds.SpacingBetweenSlices = float(spacing[2])
        ds.SliceLocation = float(ds.ImagePositionPatient[2])
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = int(data.shape[1]), int(data.shape[0])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.ascontiguousarray(data[:, :, k].T).tobytes()
        path = out / f"slice_{k:04d}.dcm"
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
        files.append(path)
    return files


def write_colin27_series(folder: str | os.PathLike, **kwargs) -> list[Path]:
    """The derived Colin27 MR series: the embedded 3D volume's T1 (``segq_monai/demo_data/volume3d``, 46x55x46 at
    4 mm) written by :func:`write_mr_series` into ``folder``: 46 axial slices of 46 columns x 55 rows. ``kwargs``
    go to :func:`write_mr_series`."""
    return write_mr_series(volume3d_dir() / "colin27_t1.nii.gz", folder, **kwargs)
