"""``python -m segq_monai pacs`` against a real Orthanc (the ``orthanc`` fixture): the derived Colin27 MR study pulled
over DICOMweb, the 3D example host deployed on it with a fit, DICOM SEG and SR stored back and read back; and the bad
PACS inputs, each refused with the server or the series named and nothing half written.

The host is ``examples/colin27_regions3d`` with seeded random weights, fitted at toy size (4 + 4 cases of the whole
46 x 55 x 46 volume, each written as a DICOM series folder, T = 2, 1 epoch, 2-level head): the checks do not depend
on how well it segments. What is checked
against an independent reading: the SR's values against ``quality.csv`` (exactly: the SR carries the float64), the
SEG's voxels (read back by highdicom from the PACS copy) against the NIfTI segmentation, the NIfTI's grid against
the series' geometry worked from its DICOM attributes, and that every UID the objects reference is in the PACS.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from conftest import REJECTING_PATIENT, REJECTING_SR_PATIENT
from dicomweb_client.api import DICOMwebClient
from monai.bundle import ConfigParser
from segq_testing import REPO, evidence_uids, free_port, read_csv

from segq_monai.__main__ import main
from segq_monai.data import load_datalist, write_datalist
from segq_monai.data.volume3d import prepare_volume3d
from segq_monai.dicom.figure import main as figure_main
from segq_monai.dicom.outputs import report_values
from segq_monai.dicom.series import (
    check_series_folder, derived_uid, in_series_order, series_affine, write_colin27_series, write_mr_series,
)  # fmt: skip

pytestmark = pytest.mark.slow

HOST = REPO / "examples" / "colin27_regions3d"
CLASSES = ["frontal", "temporal", "parietal_occipital", "cerebellum"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
FIT = ["--num_samples", "2", "--epochs", "1", "--head_channels", "4", "4", "--alpha", "0.95", "--delta", "0.5",
       "--coverage", "0.5", "--foreground_band", "none", "--device", "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def host_fit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The example host with seeded random weights (``models/model.pt``, a plain state dict) and its fit folder,
    fitted on DICOM series: each labelled case of :func:`prepare_volume3d` written as an MR series folder (its own
    UIDs) with its label turned to the series' axis order (:func:`in_series_order`), so ``fit`` reads the images
    with MONAI's reader from the folders."""
    tmp = tmp_path_factory.mktemp("host3d")
    host = tmp / "colin27_regions3d"
    shutil.copytree(HOST / "configs", host / "configs")
    parser = ConfigParser()
    parser.read_config(str(host / "configs" / "inference.json"))
    torch.manual_seed(0)
    (host / "models").mkdir()
    torch.save(parser.get_parsed_content("network_def").state_dict(), host / "models" / "model.pt")
    cases = prepare_volume3d(tmp / "data", cases={"validation": 4, "calibration": 4}, spatial_size=(46, 55, 46))
    sections: dict[str, list[dict]] = {}
    for split in ("validation", "calibration"):
        for item in load_datalist(cases, split):
            case = Path(item["image"]).name.removesuffix(".nii.gz")
            write_mr_series(item["image"], tmp / "series" / case, uid_salt=case)
            nib.save(in_series_order(nib.load(item["label"])), tmp / "series" / f"{case}_label.nii.gz")
            sections.setdefault(split, []).append(
                {"image": str(tmp / "series" / case), "label": str(tmp / "series" / f"{case}_label.nii.gz")})
    datalist = write_datalist(tmp / "series" / "dataset.json", sections)
    main(["fit", "--host_bundle", str(host), "--datalist", str(datalist), "--output_dir", str(tmp / "fit"), *FIT])
    return {"host": host, "fit": tmp / "fit", "series": tmp / "series"}


class TestFitOnSeries:
    """``fit`` on DICOM series folders (the fixture): its sampled outputs on each series' grid, its true Dice the
    numpy Dice of the saved segmentation against the label."""

    def test_sampled_cases_on_the_series_grid(self, host_fit):
        rows = read_csv(host_fit["fit"] / "sample" / "quality.csv")
        assert sorted(Path(r["image"]).name for r in rows) == [f"colin3d_validation_{i:03d}" for i in range(4)]
        for row in rows:
            case = Path(row["image"]).name
            ordered = check_series_folder(host_fit["series"] / case)
            seg_nii = nib.load(str(host_fit["fit"] / "sample" / case / f"{case}_seg.nii.gz"))
            np.testing.assert_allclose(seg_nii.affine, series_affine(ordered), atol=1e-4)
            seg = np.asarray(seg_nii.dataobj).reshape(46, 55, 46)
            label = np.asarray(nib.load(str(host_fit["series"] / f"{case}_label.nii.gz")).dataobj)
            for k, name in enumerate(CLASSES, start=1):
                s, lab = seg == k, label == k
                total = s.sum() + lab.sum()
                dice = 1.0 if total == 0 else 2.0 * np.logical_and(s, lab).sum() / total
                assert float(row[f"true_dice_{name}"]) == pytest.approx(dice, abs=1e-6), (case, name)


def _client(orthanc: dict[str, str]) -> DICOMwebClient:
    return DICOMwebClient(url=orthanc["url"])


def _store_series(orthanc: dict[str, str], folder: Path, **kwargs) -> list[pydicom.Dataset]:
    files = write_colin27_series(folder, **kwargs)
    datasets = [pydicom.dcmread(f) for f in files]
    _client(orthanc).store_instances(datasets)
    return datasets


def _modalities(orthanc: dict[str, str], study: str) -> list[str]:
    found = _client(orthanc).search_for_series(study_instance_uid=study)
    return sorted(entry["00080060"]["Value"][0] for entry in found)


def _pacs_args(orthanc, host_fit, study: str, out: Path, url: str | None = None) -> list[str]:
    return ["pacs", "--url", url or orthanc["url"], "--study", study, "--host_bundle", str(host_fit["host"]),
            "--fit", str(host_fit["fit"]), "--output_dir", str(out), "--device", "cpu"]  # fmt: skip


class TestPacsRoundTrip:
    @pytest.fixture(scope="class")
    def run(self, orthanc, host_fit, tmp_path_factory):
        tmp = tmp_path_factory.mktemp("pacs")
        source = _store_series(orthanc, tmp / "source")
        out = tmp / "out"
        argv = [sys.executable, "-m", "segq_monai", *_pacs_args(orthanc, host_fit, source[0].StudyInstanceUID, out)]
        result = subprocess.run(argv, capture_output=True, text=True, env=ENV)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return {"source": source, "out": out, "record": json.loads((out / "pacs.json").read_text()),
                "fit": host_fit["fit"]}

    def _retrieve(self, orthanc, run, kind: str) -> pydicom.Dataset:
        study = run["source"][0].StudyInstanceUID
        uids = run["record"][kind]
        return _client(orthanc).retrieve_instance(study, uids["series"], uids["instance"])

    def test_study_holds_series_seg_and_sr(self, orthanc, run):
        assert _modalities(orthanc, run["source"][0].StudyInstanceUID) == ["MR", "SEG", "SR"]

    def test_nifti_outputs_on_the_series_grid(self, run):
        ordered = check_series_folder(next((run["out"] / "input").iterdir()))
        case = next((run["out"] / "input").iterdir()).name
        for key in ("seg", "entropy"):
            image = nib.load(str(run["out"] / "deploy" / case / f"{case}_{key}.nii.gz"))
            assert image.shape[:3] == (46, 55, 46)
            np.testing.assert_allclose(image.affine, series_affine(ordered), atol=1e-4)
        np.testing.assert_allclose(series_affine(ordered)[:3, :3], np.diag([-4.0, -4.0, 4.0]))

    def test_sr_values_equal_quality_csv(self, orthanc, run):
        sr = self._retrieve(orthanc, run, "sr")
        row = read_csv(run["out"] / "deploy" / "quality.csv")[0]
        promise = json.loads((run["out"] / "deploy" / "promise.json").read_text())
        values = report_values(sr)
        for k, name in enumerate(CLASSES, start=1):
            group = values[f"segq class {name}"]
            for key in ("pred_dice", "pred_dice_lo", "pred_dice_hi"):
                column = f"{key}_{name}"
                assert group[key] == float(row[column]), column
            assert group["coverage"] == promise["coverage"]
            assert group["segment"] == k
            assert group["flagged"] == bool(int(row["flagged"]))
        assert values["segq case"]["flagged"] == bool(int(row["flagged"]))
        provenance = values["segq case"]["provenance"]  # what produced the values, checked against the fit folder
        fit_dir = Path(provenance["fit_dir"])
        assert fit_dir == run["fit"]
        assert provenance["head_sha256"] == hashlib.sha256((fit_dir / "quality_head.pt").read_bytes()).hexdigest()
        calibration = fit_dir / provenance["calibration_file"]
        assert provenance["calibration_sha256"] == hashlib.sha256(calibration.read_bytes()).hexdigest()
        fit = json.loads((fit_dir / "fit.json").read_text())
        assert (provenance["sampler"], provenance["num_samples"]) == (fit["sampler"], str(fit["num_samples"])) == (
            "mc_dropout", "2")
        assert sr.SeriesDescription.startswith("FLAGGED for review") == bool(int(row["flagged"]))

    def test_seg_voxels_equal_nifti(self, orthanc, run):
        seg = self._retrieve(orthanc, run, "seg")
        case = next((run["out"] / "input").iterdir()).name
        nifti = np.asarray(nib.load(str(run["out"] / "deploy" / case / f"{case}_seg.nii.gz")).dataobj)
        ordered = sorted(run["source"], key=lambda ds: float(ds.ImagePositionPatient[2]))
        back = hd.seg.Segmentation.from_dataset(seg).get_pixels_by_source_instance(
            [ds.SOPInstanceUID for ds in ordered], combine_segments=True)  # fmt: skip
        np.testing.assert_array_equal(back.transpose(2, 1, 0), nifti.reshape(back.shape[::-1]))
        assert [s.SegmentLabel for s in seg.SegmentSequence] == CLASSES
        row = read_csv(run["out"] / "deploy" / "quality.csv")[0]
        assert seg.SeriesDescription.startswith("FLAGGED for review") == bool(int(row["flagged"]))

    def test_references_resolve_in_the_pacs(self, orthanc, run):
        client = _client(orthanc)
        seg, sr = self._retrieve(orthanc, run, "seg"), self._retrieve(orthanc, run, "sr")
        study = run["source"][0].StudyInstanceUID
        in_pacs = {e["00080018"]["Value"][0] for e in client.search_for_instances(study_instance_uid=study)}
        referenced = {ref.ReferencedSOPInstanceUID for series in seg.ReferencedSeriesSequence
                      for ref in series.ReferencedInstanceSequence}  # fmt: skip
        assert evidence_uids(sr, "Current") == {seg.SOPInstanceUID}
        referenced |= evidence_uids(sr, "Other") | evidence_uids(sr, "Current")
        assert referenced <= in_pacs
        assert len(referenced) == 46 + 1  # every slice and the SEG

    def test_figure_of_the_seg_from_the_pacs(self, orthanc, run, tmp_path):
        """The SEG as read back from the PACS, drawn over its series by ``python -m segq_monai.dicom.figure`` (the
        docs' figure comes from the same command on the trained example host, docs/dicom.md)."""
        study = run["source"][0].StudyInstanceUID
        figure_main(["--url", orthanc["url"], "--study", study, str(tmp_path / "seg.png")])
        assert (tmp_path / "seg.png").stat().st_size > 10_000


class TestPacsRefusals:
    """Bad PACS input through the command (in this process: the message is the ValueError's)."""

    def _refused(self, argv, pattern):
        with pytest.raises(ValueError, match=pattern):
            main(argv)

    def test_unreachable_pacs(self, host_fit, tmp_path):
        url = f"http://127.0.0.1:{free_port()}/dicom-web"
        self._refused(_pacs_args({}, host_fit, "1.2.3", tmp_path / "out", url),
                      f"Cannot reach the PACS at {url} .*check the URL")
        assert not (tmp_path / "out" / "input").exists()

    def test_study_without_the_modality(self, orthanc, host_fit, tmp_path):
        study = _store_series(orthanc, tmp_path / "ct", modality="CT", uid_salt="ct")[0].StudyInstanceUID
        self._refused(_pacs_args(orthanc, host_fit, study, tmp_path / "out"),
                      rf"Study {study} on {orthanc['url']} has no MR series \(it holds \['CT'\]\)")
        assert not (tmp_path / "out" / "input").exists()

    def test_unknown_study(self, orthanc, host_fit, tmp_path):
        self._refused(_pacs_args(orthanc, host_fit, "1.2.3.4", tmp_path / "out"), "holds no study 1.2.3.4")

    def test_two_series_of_the_modality(self, orthanc, host_fit, tmp_path):
        datasets = _store_series(orthanc, tmp_path / "two", uid_salt="two")
        for ds in datasets:  # a second MR series in the same study
            ds.SeriesInstanceUID = derived_uid(ds.SeriesInstanceUID, "second")
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = derived_uid(ds.SOPInstanceUID, "second")
        _client(orthanc).store_instances(datasets)
        study = datasets[0].StudyInstanceUID
        self._refused(_pacs_args(orthanc, host_fit, study, tmp_path / "out"),
                      f"Study {study} on .* has 2 MR series .*pass the one to segment as --series")

    def test_series_with_a_missing_slice(self, orthanc, host_fit, tmp_path):
        files = write_colin27_series(tmp_path / "gap", uid_salt="gap")
        datasets = [pydicom.dcmread(f) for i, f in enumerate(files) if i != 20]
        _client(orthanc).store_instances(datasets)
        study, series = datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID
        self._refused(_pacs_args(orthanc, host_fit, study, tmp_path / "out"),
                      f"Series {series} in folder .* is not a regular stack of 45 slices.*nothing was written")
        assert list((tmp_path / "out" / "input").iterdir()) == []
        assert not (tmp_path / "out" / "deploy").exists()
        assert _modalities(orthanc, study) == ["MR"]

    def test_stow_rejected(self, orthanc, host_fit, tmp_path):
        study = _store_series(orthanc, tmp_path / "rej", patient=REJECTING_PATIENT,
                              uid_salt="reject")[0].StudyInstanceUID  # fmt: skip
        self._refused(_pacs_args(orthanc, host_fit, study, tmp_path / "out"),
                      f"The PACS at {orthanc['url']} .*the SEG .*check what the server accepts")
        assert _modalities(orthanc, study) == ["MR"]  # neither SEG nor SR
        assert not (tmp_path / "out" / "pacs.json").exists()

    def test_sr_rejected_after_the_seg(self, orthanc, host_fit, tmp_path):
        """The SEG is stored, the SR rejected: the SEG cannot be deleted again over DICOMweb (Orthanc's plugin has no
        DELETE), so the message names it for removal by hand."""
        study = _store_series(orthanc, tmp_path / "rej_sr", patient=REJECTING_SR_PATIENT,
                              uid_salt="reject_sr")[0].StudyInstanceUID  # fmt: skip
        with pytest.raises(ValueError, match=f"The PACS at {orthanc['url']} rejected the SR ") as raised:
            main(_pacs_args(orthanc, host_fit, study, tmp_path / "out"))
        seg = pydicom.dcmread(tmp_path / "out" / "dicom" / "seg.dcm")
        assert f"could not delete what this run stored before it ({seg.SOPInstanceUID})" in str(raised.value)
        assert "delete those instances on the server by hand" in str(raised.value)
        assert _modalities(orthanc, study) == ["MR", "SEG"]
        assert not (tmp_path / "out" / "pacs.json").exists()
