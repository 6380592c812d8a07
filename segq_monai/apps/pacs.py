"""``python -m segq_monai pacs``: quality control where the images are kept, a PACS over DICOMweb.

1. **pull**: the study's one image series of ``--modality`` (or ``--series``), by QIDO-RS and WADO-RS, into
   ``OUT/input/series_<12 hex>/`` (whole or not at all), then checked as one regular stack of slices;
2. **deploy**: the host's ``inference.json`` with segq's deploy overlay and ``segq#fit_dir FIT`` on that series folder
   (the host's own ``LoadImaged`` reads it: MONAI's ITK reader) -> ``OUT/deploy``: the segmentation and the maps as
   NIfTI on the series' grid (checked against the series' geometry), ``quality.csv``, ``promise.json``;
3. **objects**: the case's DICOM SEG and TID 1500 SR (``OUT/dicom/seg.dcm``, ``sr.dcm``; docs/dicom.md);
4. **store**: both back into the study by STOW-RS, the SEG first (``--no_store``: keep them on disk only).

``OUT/pacs.json`` records the server, the study, the series and the UIDs of what was stored. Bad input (a server that
cannot be reached, a study without the modality, a series with a missing slice or of several series, a STOW the
server rejects) ends on one message that names the server or the series and the fix; a refused series leaves no
files in ``OUT`` and nothing in the PACS.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from segq_monai.apps.arguments import add_subcommand
from segq_monai.apps.fit import OVERLAYS
from segq_monai.apps.workflows import run_workflow
from segq_monai.data.columns import read_quality_csv
from segq_monai.data.fit_folder import load_fit
from segq_monai.data.outputs import PROMISE_FILE
from segq_monai.utils.atomic import atomic_write_text, remove_temporaries, writable_dir

__all__ = ["add_parser", "check_geometry", "pacs"]

#: how far (mm) the saved segmentation's affine may differ from the series' before it is refused
GEOMETRY_TOLERANCE = 1e-3


def check_geometry(seg_file: Path, ordered: list, series: str) -> np.ndarray:
    """The ``[X, Y, Z]`` segmentation of ``seg_file``, checked to lie on the grid of the sorted series ``ordered``
    (shape: columns, rows, slices; affine within :data:`GEOMETRY_TOLERANCE` mm of
    :func:`~segq_monai.dicom.series.series_affine`).

    Raises:
        ValueError: another grid (both named): the host wrote its output elsewhere than the input grid.
    """
    from segq_monai.dicom.series import series_affine

    image = nib.load(str(seg_file))
    grid = (int(ordered[0].Columns), int(ordered[0].Rows), len(ordered))
    data = np.asarray(image.dataobj)
    data = data.reshape(data.shape[:3]) if data.ndim > 3 and int(np.prod(data.shape[3:])) == 1 else data
    expected = series_affine(ordered)
    if tuple(data.shape) != grid or not np.allclose(image.affine, expected, atol=GEOMETRY_TOLERANCE):
        raise ValueError(
            f"The segmentation {seg_file} (shape {tuple(data.shape)}, affine {np.round(image.affine, 3).tolist()}) is "
            f"not on the grid of series {series} (shape {grid}, affine {np.round(expected, 3).tolist()}); the host "
            "must save its output on the input's grid (Invertd and SaveImaged with resample false, as the model-zoo "
            "bundles do)."
        )
    return data.astype(np.int64)


def pacs(args: argparse.Namespace) -> dict[str, Any]:
    """Run the command (see the module docstring); returns what ``OUT/pacs.json`` records."""
    try:  # the dicom extra: segq-monai[dicom]
        from segq_monai.dicom.outputs import case_quality, read_json, write_case_objects
        from segq_monai.dicom.pacs import connect, image_series, pull_series, store_objects
        from segq_monai.dicom.series import check_series_folder
    except ImportError as e:
        raise ValueError(f"python -m segq_monai pacs needs highdicom and dicomweb-client ({e}); install them with "
                         "pip install 'segq-monai[dicom]'.") from e
    out = writable_dir(Path(args.output_dir).expanduser().resolve())
    remove_temporaries(out)
    host = Path(args.host_bundle).expanduser().resolve()
    fit_dir = Path(args.fit).expanduser().resolve()
    fit = load_fit(fit_dir)  # a missing or unfinished fit is refused before the PACS is asked anything
    client = connect(args.url)
    series = image_series(client, args.study, args.modality, args.series)
    folder = out / "input" / f"series_{hashlib.sha256(series.encode()).hexdigest()[:12]}"
    print(f"pull: series {series} of study {args.study} from {args.url} -> {folder}", flush=True)
    pull_series(client, args.study, series, folder)
    try:
        ordered = check_series_folder(folder)
    except (ValueError, OSError) as e:
        shutil.rmtree(folder, ignore_errors=True)
        raise ValueError(f"{e} (series {series} of study {args.study} on {args.url}; nothing was written)") from e

    deploy_dir = out / "deploy"
    overrides: dict[str, Any] = {"segq#fit_dir": str(fit_dir), "datalist": [str(folder)], "output_dir": str(deploy_dir)}
    if args.device:
        overrides["device"] = f"$torch.device('{args.device}')"
    print(f"deploy: {host} + segq overlay, fit {fit_dir} -> {deploy_dir}", flush=True)
    run_workflow(host, [host / "configs" / "inference.json", OVERLAYS / "segq_overlay.json"], **overrides)

    case = folder.name
    seg = check_geometry(deploy_dir / case / f"{case}_seg.nii.gz", ordered, series)
    row = next(r for r in read_quality_csv(deploy_dir / "quality.csv") if Path(r["image"]).name == case)
    quality = case_quality(row, fit, read_json(deploy_dir / PROMISE_FILE), fit_dir)
    seg_object, report = write_case_objects(out / "dicom", seg, ordered, quality)
    record = {
        "url": args.url, "study": args.study, "series": series, "flagged": quality.flagged,
        "seg": {"series": seg_object.SeriesInstanceUID, "instance": seg_object.SOPInstanceUID},
        "sr": {"series": report.SeriesInstanceUID, "instance": report.SOPInstanceUID}, "stored": not args.no_store,
    }  # fmt: skip
    if not args.no_store:
        print(f"store: SEG {seg_object.SOPInstanceUID} and SR {report.SOPInstanceUID} -> {args.url}", flush=True)
        store_objects(client, [(seg_object, "SEG"), (report, "SR")])
    atomic_write_text(out / "pacs.json", json.dumps(record, indent=1) + "\n")
    state = "FLAGGED for review" if quality.flagged else "accepted"
    print(f"Case {state}: predicted Dice {dict(quality.pred_dice)}; outputs in {out}", flush=True)
    return record


def add_parser(sub: Any) -> None:
    """Register the ``pacs`` subcommand on the subparsers of ``python -m segq_monai``."""
    p = add_subcommand(sub, "pacs", "pull a study from a PACS (DICOMweb), deploy, store DICOM SEG + SR back",
                       __doc__, pacs)  # fmt: skip
    p.add_argument("--url", required=True, help="the PACS's DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    p.add_argument("--study", required=True, help="the StudyInstanceUID to segment")
    p.add_argument("--host_bundle", required=True, help="your bundle folder (model-zoo layout), never edited")
    p.add_argument("--fit", required=True, help="the fit folder (python -m segq_monai fit --output_dir)")
    p.add_argument("--output_dir", required=True, help="the pulled series, the deployment's outputs, SEG and SR")
    p.add_argument("--modality", default="MR", help="the modality of the series the host segments (default MR)")
    p.add_argument("--series", default=None, help="the SeriesInstanceUID, where the study has several of --modality")
    p.add_argument("--device", default=None, help="e.g. cpu or cuda:0; default: the host config's")
    p.add_argument("--no_store", action="store_true", help="write SEG and SR to OUT/dicom only, store nothing")
