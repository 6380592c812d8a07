"""segq_monai.dicom without a server: the derived Colin27 series (its geometry against the NIfTI it came from and
against MONAI's own reader), refused series folders, and a case's SEG and SR (values, names, codes, references, the
flag, an empty segmentation, writes whole or not at all).

The expected geometry is worked by hand: the embedded T1 is 46 x 55 x 46 voxels of 4 mm with a RAS affine
``diag(4, 4, 4)``; written as LPS slices, column ``i`` and row ``j`` of slice ``k`` are NIfTI voxel
``(45 - i, 54 - j, k)``, so the series' RAS affine is the NIfTI's with the first two columns negated and its origin
moved to voxel ``(45, 54, 0)``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import unittest
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from monai.transforms import LoadImage
from segq_testing import evidence_uids

from segq_monai.apps.pacs import check_geometry
from segq_monai.data.volume3d import volume3d_dir
from segq_monai.dicom.objects import CaseQuality
from segq_monai.dicom.outputs import SEG_FILE, SR_FILE, case_quality, report_values, write_case_objects
from segq_monai.dicom.series import check_series_folder, series_affine, sort_slices, write_colin27_series

CLASSES = ("frontal", "temporal", "parietal_occipital", "cerebellum")


def series_volume(datasets: Sequence[Dataset], source: str) -> tuple[np.ndarray, np.ndarray, list[Dataset]]:
    """One checked series as a volume, read by hand from the pixel data: the reference MONAI's reader is checked
    against (the package reads series with MONAI's ITK reader only).

    Returns:
        the ``[X, Y, Z]`` float32 volume (columns, rows, slices; ``RescaleSlope``/``Intercept`` applied), its RAS
        affine (:func:`series_affine`) and the slices sorted along the normal.
    """
    ordered = sort_slices(datasets, source)
    frames = []
    for ds in ordered:
        pixels = ds.pixel_array.astype(np.float32)
        frames.append(pixels * float(ds.get("RescaleSlope", 1.0)) + float(ds.get("RescaleIntercept", 0.0)))
    return np.stack(frames, axis=-1).transpose(1, 0, 2), series_affine(ordered), ordered


def _nifti(name: str) -> nib.Nifti1Image:
    return nib.load(str(volume3d_dir() / name))


def _as_series(volume: np.ndarray) -> np.ndarray:
    """A NIfTI-ordered (RAS) volume as the series orders it: columns and rows flipped (LPS)."""
    return volume[::-1, ::-1, :]


class TestColin27Series(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp())
        cls.files = write_colin27_series(cls.tmp / "mr")
        cls.ordered = check_series_folder(cls.tmp / "mr")
        cls.t1 = _nifti("colin27_t1.nii.gz")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_slices_and_labels(self):
        self.assertEqual(len(self.files), 46)
        first = self.ordered[0]
        self.assertEqual((first.Rows, first.Columns, first.Modality), (55, 46, "MR"))
        self.assertEqual(list(first.ImageType), ["DERIVED", "SECONDARY", "AXIAL"])
        self.assertIn("derived", first.SeriesDescription)
        self.assertEqual([float(v) for v in first.PixelSpacing], [4.0, 4.0])

    def test_volume_and_affine_by_hand(self):
        volume, affine, _ = series_volume(self.ordered, "test")
        np.testing.assert_array_equal(volume, _as_series(np.asarray(self.t1.dataobj, np.float32)))
        expected = self.t1.affine @ np.array([[-1, 0, 0, 45], [0, -1, 0, 54], [0, 0, 1, 0], [0, 0, 0, 1.0]])
        np.testing.assert_allclose(affine, expected, atol=1e-4)
        np.testing.assert_allclose(affine[:3, :3], np.diag([-4.0, -4.0, 4.0]))

    def test_monai_reader_agrees(self):
        image = LoadImage(image_only=True)(str(self.tmp / "mr"))  # a folder: MONAI's ITKReader reads the series
        volume, affine, _ = series_volume(self.ordered, "test")
        np.testing.assert_array_equal(np.asarray(image), volume)
        np.testing.assert_allclose(np.asarray(image.affine), affine, atol=1e-4)

    def test_geometry_check(self):
        volume, affine, _ = series_volume(self.ordered, "test")
        nib.save(nib.Nifti1Image(volume.astype(np.uint8), affine), self.tmp / "on_grid.nii.gz")
        np.testing.assert_array_equal(check_geometry(self.tmp / "on_grid.nii.gz", self.ordered, "S"), volume)
        nib.save(nib.Nifti1Image(volume.astype(np.uint8), self.t1.affine), self.tmp / "ras.nii.gz")  # not flipped
        with self.assertRaisesRegex(ValueError, r"ras.nii.gz .* is not on the grid of series S \(shape \(46, 55, 46\)"):
            check_geometry(self.tmp / "ras.nii.gz", self.ordered, "S")

    def test_uids_are_reproducible(self):
        again = write_colin27_series(self.tmp / "again")
        for a, b in zip(self.files, again):
            da, db = pydicom.dcmread(a), pydicom.dcmread(b)
            self.assertEqual((da.StudyInstanceUID, da.SeriesInstanceUID, da.SOPInstanceUID),
                             (db.StudyInstanceUID, db.SeriesInstanceUID, db.SOPInstanceUID))  # fmt: skip
        other = pydicom.dcmread(write_colin27_series(self.tmp / "other", uid_salt="b")[0])
        self.assertNotEqual(other.StudyInstanceUID, pydicom.dcmread(self.files[0]).StudyInstanceUID)


class TestRefusedSeriesFolders(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.files = write_colin27_series(self.tmp / "mr")

    def test_missing_slice(self):
        self.files[20].unlink()  # z = -69.5 + 4 k mm: slices 19 and 21 at 6.5 and 14.5 mm
        uid = pydicom.dcmread(self.files[0]).SeriesInstanceUID
        expected = (f"Series {uid} in folder .*mr is not a regular stack of 45 slices: the slice step is 4.00 mm but "
                    r"steps 6.50 -> 14.50 mm differ \(a missing or duplicate slice\)")
        with self.assertRaisesRegex(ValueError, expected):
            check_series_folder(self.tmp / "mr")

    def test_mixed_series(self):
        other = write_colin27_series(self.tmp / "b", uid_salt="b")
        shutil.copy(other[0], self.tmp / "mr" / "other.dcm")
        with self.assertRaisesRegex(ValueError, "holds instances of 2 series .*move each series into a folder"):
            check_series_folder(self.tmp / "mr")

    def test_no_dicom(self):
        (self.tmp / "empty").mkdir()
        (self.tmp / "empty" / "notes.txt").write_text("not DICOM")
        with self.assertRaisesRegex(FileNotFoundError, "No DICOM file in .*empty"):
            check_series_folder(self.tmp / "empty")


def _quality(flagged: bool = False, intervals: bool = True) -> CaseQuality:
    pred = {"frontal": 0.91, "temporal": 0.625, "parietal_occipital": 0.8125, "cerebellum": 0.3333333333333333}
    return CaseQuality(
        class_names=CLASSES, pred_dice=pred, flagged=flagged,
        pred_dice_lo={k: v - 0.1 for k, v in pred.items()} if intervals else {},
        pred_dice_hi={k: min(1.0, v + 0.1) for k, v in pred.items()} if intervals else {},
        coverage=0.9 if intervals else None, provenance={"head_sha256": "ab" * 32, "sampler": "mc_dropout"},
    )  # fmt: skip


class TestCaseObjects(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp())
        write_colin27_series(cls.tmp / "mr")
        cls.ordered = check_series_folder(cls.tmp / "mr")
        cls.lobes = _as_series(np.asarray(_nifti("colin27_lobes.nii.gz").dataobj, np.int64))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def _write(self, name: str, seg: np.ndarray, quality: CaseQuality):
        write_case_objects(self.tmp / name, seg, self.ordered, quality)
        return pydicom.dcmread(self.tmp / name / SEG_FILE), pydicom.dcmread(self.tmp / name / SR_FILE)

    def test_seg_voxels_segments_and_codes(self):
        seg, _ = self._write("case", self.lobes, _quality())
        self.assertEqual(seg.Modality, "SEG")
        self.assertEqual([s.SegmentLabel for s in seg.SegmentSequence], list(CLASSES))
        self.assertEqual([s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in seg.SegmentSequence],
                         ["SEGQ101", "SEGQ102", "SEGQ103", "SEGQ104"])  # fmt: skip
        self.assertEqual(seg.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator, "99SEGQ")
        self.assertEqual(seg.ReferencedSeriesSequence[0].SeriesInstanceUID, self.ordered[0].SeriesInstanceUID)
        back = hd.seg.Segmentation.from_dataset(seg).get_pixels_by_source_instance(
            [ds.SOPInstanceUID for ds in self.ordered], combine_segments=True)  # [slices, rows, columns]
        np.testing.assert_array_equal(back.transpose(2, 1, 0), self.lobes)
        self.assertEqual(seg.SeriesDescription, "segq segmentation")

    def test_sr_values_and_references(self):
        quality = _quality()
        seg, sr = self._write("case_sr", self.lobes, quality)
        values = report_values(sr)
        for k, name in enumerate(CLASSES, start=1):
            group = values[f"segq class {name}"]
            self.assertEqual(group["pred_dice"], quality.pred_dice[name])  # exact: FloatingPointValue
            self.assertEqual((group["pred_dice_lo"], group["pred_dice_hi"]),
                             (quality.pred_dice_lo[name], quality.pred_dice_hi[name]))  # fmt: skip
            self.assertEqual((group["coverage"], group["flagged"], group["segment"]), (0.9, False, k))
        self.assertEqual(values["segq case"], {"flagged": False, "provenance": dict(quality.provenance)})
        current, other = (evidence_uids(sr, kind) for kind in ("Current", "Other"))
        self.assertEqual(current, {seg.SOPInstanceUID})  # referenced by the content (the segments)
        self.assertEqual(other, {ds.SOPInstanceUID for ds in self.ordered})  # the source series
        self.assertEqual(sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator, "99SEGQ")
        self.assertEqual(sr.StudyInstanceUID, self.ordered[0].StudyInstanceUID)

    def test_flagged_case_without_intervals(self):
        seg, sr = self._write("flagged", self.lobes, _quality(flagged=True, intervals=False))
        self.assertEqual(seg.SeriesDescription, "FLAGGED for review: segq segmentation")
        self.assertTrue(sr.SeriesDescription.startswith("FLAGGED for review"))
        values = report_values(sr)
        self.assertEqual(values["segq case"]["flagged"], True)
        self.assertEqual(set(values["segq class frontal"]), {"pred_dice", "flagged", "segment", "provenance"})

    def test_empty_segmentation(self):
        seg, sr = self._write("empty", np.zeros_like(self.lobes), _quality())
        self.assertEqual(seg.SeriesDescription, "segq segmentation (empty segmentation)")
        self.assertEqual(int(seg.NumberOfFrames), 46 * 4)  # every slice of every segment, all zero
        self.assertFalse(seg.pixel_array.any())
        self.assertEqual(len(report_values(sr)), 5)

    def test_refused_grid_writes_nothing(self):
        with self.assertRaisesRegex(ValueError, r"shape \(46, 55, 45\) is not the source series' grid"):
            write_case_objects(self.tmp / "bad", self.lobes[:, :, :45], self.ordered, _quality())
        with self.assertRaisesRegex(ValueError, r"holds classes \[0, 1, 2, 3, 7\] but the host has 4"):
            write_case_objects(self.tmp / "bad", np.where(self.lobes == 4, 7, self.lobes), self.ordered, _quality())
        self.assertEqual(list((self.tmp / "bad").glob("*")) if (self.tmp / "bad").exists() else [], [])

    def test_case_quality_from_a_row(self):
        row = {"image": "x", "flagged": 1, **{f"pred_dice_{c}": 0.5 for c in CLASSES},
               **{f"pred_dice_lo_{c}": 0.25 for c in CLASSES},
               **{f"pred_dice_hi_{c}": 0.75 for c in CLASSES}}  # fmt: skip
        fit = {"class_names": list(CLASSES), "sampler": "mc_dropout", "num_samples": 2, "acceptance_threshold": 0.7}
        quality = case_quality(row, fit, {"coverage": 0.9})
        self.assertEqual((quality.flagged, quality.coverage, quality.pred_dice_lo["cerebellum"]), (True, 0.9, 0.25))
        self.assertEqual(quality.provenance["num_samples"], "2")
        with self.assertRaisesRegex(ValueError, r"has no \['pred_dice_cerebellum'\]"):
            case_quality({k: v for k, v in row.items() if k != "pred_dice_cerebellum"}, fit)


class TestWithoutTheExtra(unittest.TestCase):
    def test_pacs_names_the_extra(self):
        """highdicom hidden (it is installed here): the command says which extra it needs, before anything runs."""
        from unittest import mock

        from segq_monai.__main__ import main

        with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(sys.modules, {"highdicom": None}):
            for name in [m for m in sys.modules if m.startswith("segq_monai.dicom.")]:
                sys.modules.pop(name)  # imported again (and refused) inside the command; restored on exit
            with self.assertRaisesRegex(ValueError, r"needs highdicom and dicomweb-client .*pip install "
                                                    r"'segq-monai\[dicom\]'"):
                main(["pacs", "--url", "http://127.0.0.1:9/dicom-web", "--study", "1", "--host_bundle", tmp,
                      "--fit", tmp, "--output_dir", str(Path(tmp) / "out")])  # fmt: skip
            self.assertFalse((Path(tmp) / "out").exists())


if __name__ == "__main__":
    unittest.main()
