"""Cases for the 3D multi-class example, made at run time from the embedded Colin27 volume (4 mm, four lobes).

The embedded volume (``segq_monai/demo_data/volume3d``, see its README) is one head. Each case is a synthetic
variation of it: a random affine deformation (rotation, anisotropic scaling, shift) of image and lobes together,
cropped to ``spatial_size`` around the shifted centre (so lobes at the border can be cut), and, outside the host's
training split, one MR artifact at a graded severity (:func:`segq_monai.transforms.artifacts.graded_artifact_plan`:
every severity from 0 to 1 in every block of cases). All cases show the same head: they are correlated, and the
figures made from them describe this head under deformations and artifacts, not a population.

Splits (sections of ``dataset.json``, a Decathlon datalist):

- ``training``: the host network's training cases (deformed, no artifact);
- ``validation``: the host's validation cases (deformed, graded artifacts): the host network never trains on them,
  so they are the cases to fit the quality head on;
- ``calibration``: labelled cases for the guaranteed failure flag (deformed, graded artifacts);
- ``testing``: the evaluation cases (deformed, graded artifacts).

Files: ``imagesTr/``, ``labelsTr/`` (training, validation, calibration) and ``imagesTs/``, ``labelsTs/`` (testing),
``<case>.nii.gz`` in both, float32 images (T1, 0..255), uint8 labels (0 background, 1 frontal, 2 temporal,
3 parietal + occipital, 4 cerebellum), 4 mm RAS affines.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.transforms import RandAffined

from segq_monai.data.datalist import write_datalist
from segq_monai.data.demo import save_nifti
from segq_monai.data.make_demo import REGION_NAMES
from segq_monai.data.make_volume3d import VOLUME3D_FILES
from segq_monai.transforms.artifacts import apply_mr_artifact, graded_artifact_plan

__all__ = ["SPLITS", "deform_case", "prepare_volume3d", "volume3d_dir"]

#: datalist sections, in the order cases are numbered.
SPLITS: tuple[str, ...] = ("training", "validation", "calibration", "testing")
_DEFAULT_CASES = {"training": 24, "validation": 24, "calibration": 24, "testing": 24}


def volume3d_dir() -> Path:
    """Folder of the embedded 3D volume (``colin27_t1.nii.gz``, ``colin27_lobes.nii.gz``, README.md)."""
    return Path(str(resources.files("segq_monai") / "demo_data" / "volume3d"))


def deform_case(
    image: np.ndarray,
    label: np.ndarray,
    spatial_size: Sequence[int],
    seed: int,
    max_rotation: float = 0.2,
    max_scale: float = 0.1,
    max_shift: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One random affine variation of ``image`` and ``label``, cropped to ``spatial_size`` about the centre.

    Args:
        image: ``[X, Y, Z]`` intensities.
        label: ``[X, Y, Z]`` class indices.
        spatial_size: output ``(X', Y', Z')`` in voxels.
        seed: seeds the draw; the same seed gives the same case.
        max_rotation: rotation about each axis drawn from ``U(-max_rotation, max_rotation)``, radians.
        max_scale: scale along each axis ``1 + U(-max_scale, max_scale)``.
        max_shift: shift along each axis ``U(-max_shift, max_shift)``, voxels.

    Returns:
        float32 image (bilinear, zero outside) and uint8 label (nearest), both ``spatial_size``.
    """
    t = RandAffined(
        keys=("image", "label"), prob=1.0, spatial_size=tuple(int(s) for s in spatial_size),
        rotate_range=(max_rotation,) * 3, scale_range=(max_scale,) * 3, translate_range=(max_shift,) * 3,
        mode=("bilinear", "nearest"), padding_mode="zeros",
    )  # fmt: skip
    t.set_random_state(seed=seed)
    out = t({"image": image[None].astype(np.float32), "label": label[None].astype(np.float32)})
    return np.asarray(out["image"][0], dtype=np.float32), np.rint(np.asarray(out["label"][0])).astype(np.uint8)


def prepare_volume3d(
    output_dir: str | os.PathLike,
    cases: Mapping[str, int] | None = None,
    spatial_size: Sequence[int] = (40, 48, 40),
    max_rotation: float = 0.2,
    max_scale: float = 0.1,
    max_shift: float = 3.0,
    seed: int = 0,
) -> Path:
    """Write the example's cases and ``dataset.json`` under ``output_dir`` (see the module docstring).

    Args:
        output_dir: folder to write into (created); files of an earlier call with the same arguments are rewritten
            with the same content.
        cases: cases per split, keys among :data:`SPLITS` (default 24 each); a split with 0 cases is left out.
        spatial_size: case size in 4 mm voxels (the embedded volume is 46x55x46).
        max_rotation, max_scale, max_shift: the deformation's ranges (:func:`deform_case`).
        seed: seeds the deformations, the artifact plan and the artifacts.

    Returns:
        the path of ``dataset.json``.
    """
    counts = dict(_DEFAULT_CASES if cases is None else cases)
    unknown = sorted(set(counts) - set(SPLITS))
    if unknown or any(int(n) < 0 for n in counts.values()):
        raise ValueError(f"cases must map splits among {SPLITS} to counts >= 0, got {counts}.")
    if len(spatial_size) != 3 or any(int(s) < 8 for s in spatial_size):
        raise ValueError(f"spatial_size must be three sizes >= 8 voxels, got {tuple(spatial_size)}.")
    src = volume3d_dir()
    source = nib.load(src / VOLUME3D_FILES["image"])
    image = np.asarray(source.dataobj, dtype=np.float32)
    label = np.asarray(nib.load(src / VOLUME3D_FILES["label"]).dataobj, dtype=np.uint8)
    # affine of the crop: the source grid, origin moved to the voxel the centred crop starts at
    offset = (np.array(image.shape) - np.array(spatial_size)) / 2.0
    affine = source.affine.copy()
    affine[:3, 3] = source.affine[:3] @ np.append(offset, 1.0)

    out = Path(output_dir)
    sections: dict[str, list[dict]] = {}
    index = 0
    for k, split in enumerate(SPLITS):
        n = int(counts.get(split, 0))
        if n == 0:
            continue
        folder = "Ts" if split == "testing" else "Tr"
        for sub in (f"images{folder}", f"labels{folder}"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        plan = [("none", 0.0)] * n if split == "training" else graded_artifact_plan(n, seed=seed + k)
        sections[split] = []
        for i in range(n):
            case_seed = seed * 100_003 + index
            index += 1
            img, lab = deform_case(image, label, spatial_size, case_seed, max_rotation, max_scale, max_shift)
            kind, severity = plan[i]
            if severity > 0:
                img = apply_mr_artifact(img[None], kind, severity, seed=case_seed)[0].numpy()
            name = f"colin3d_{split}_{i:03d}.nii.gz"
            image_path, label_path = out / f"images{folder}" / name, out / f"labels{folder}" / name
            save_nifti(img.astype(np.float32), affine, image_path)
            save_nifti(lab, affine, label_path)
            sections[split].append(
                {"image": str(image_path), "label": str(label_path), "artifact": kind, "severity": severity}
            )
    metadata = {
        "name": "colin27_lobes3d",
        "description": "Deformed crops of the Colin27 T1 (4 mm) with graded MR artifacts; four merged AAL lobes",
        "reference": "Colin27 (Holmes et al. 1998), AAL (Tzourio-Mazoyer et al. 2002), via Debian mricron-data",
        "licence": "BSD-3-clause (debian-copyright.txt); AAL: free for research, cite the paper (AAL_NOTICE.txt)",
        "tensorImageSize": "3D",
        "modality": {"0": "T1"},
        "labels": {str(k): v for k, v in REGION_NAMES.items()},
    }
    return write_datalist(out / "dataset.json", sections, metadata=metadata)
