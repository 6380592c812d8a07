"""Derive the embedded 3D demo volume (Colin27 T1 and four merged AAL lobes) at a coarse isotropic grid.

Run::

    python -m segq_monai.data.make_volume3d ../shared/data/colin27 segq_monai/demo_data/volume3d

Source: the same Colin27 files as the 2D set (:mod:`segq_monai.data.make_demo`), 181x217x181 at 1 mm.

What is done:
  * **lobes**: AAL labels only grey matter (a 2-4 mm ribbon, which a 4 mm grid breaks up), so every voxel of the
    brain mask (``ch2bet > 0``) takes the AAL region of its nearest AAL-labelled voxel (Euclidean distance
    transform): white matter and CSF join the lobe whose cortex is closest. The filled AAL regions are then
    merged into the classes of :data:`segq_monai.data.make_demo.REGION_GROUPS` (1 frontal, 2 temporal,
    3 parietal + occipital, 4 cerebellum); insula, limbic, deep grey and everything outside the brain are 0;
  * **coarse grid**: zero padding at the high end of each axis to a multiple of ``factor``, then blocks of
    ``factor``³ source voxels: the image by the block mean (rounded to uint8), the lobes by majority vote (ties go
    to the lower class). The affine is the source's scaled by ``factor``, its origin at the first block's centre.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from segq_monai.data.make_demo import (
    REGION_GROUPS,
    REGION_NAMES,
    aal_region_classes,
    load_colin27,
    write_nifti_reproducible,
)

__all__ = ["VOLUME3D_FILES", "block_majority", "block_mean", "fill_lobes", "make_volume3d_data"]

#: file names in the output folder: key -> name (``factor`` 4 gives the embedded 4 mm files).
VOLUME3D_FILES = {"image": "colin27_t1.nii.gz", "label": "colin27_lobes.nii.gz"}


def fill_lobes(aal: np.ndarray, brain: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Merged lobe classes on the source grid: brain voxels take the class of their nearest AAL voxel.

    Args:
        aal: AAL region indices ``[X, Y, Z]`` (0 = unlabelled).
        brain: brain mask ``[X, Y, Z]``, bool.
        lut: AAL index -> class (:func:`segq_monai.data.make_demo.aal_region_classes`).

    Returns:
        uint8 classes ``[X, Y, Z]``; 0 outside ``brain | (aal > 0)`` and where the nearest region has class 0.
    """
    _, nearest = ndimage.distance_transform_edt(aal == 0, return_indices=True)
    filled = aal[tuple(nearest)]
    return np.where(brain | (aal > 0), lut[filled], 0).astype(np.uint8)


def _blocks(x: np.ndarray, factor: int) -> np.ndarray:
    """``[X, Y, Z]`` zero-padded at the high end -> ``[X', f, Y', f, Z', f]`` blocks."""
    padded = np.pad(x, [(0, -n % factor) for n in x.shape])
    shape = [s for n in padded.shape for s in (n // factor, factor)]
    return padded.reshape(shape)


def block_mean(x: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor``³ blocks (zero padding at the high end), float64 ``[ceil(X/f), ceil(Y/f), ceil(Z/f)]``."""
    return _blocks(x.astype(np.float64), factor).mean(axis=(1, 3, 5))


def block_majority(labels: np.ndarray, factor: int, num_classes: int) -> np.ndarray:
    """Most frequent class in each ``factor``³ block (zero padding counts as class 0; ties: lowest class), uint8."""
    blocks = _blocks(labels, factor)
    counts = np.stack([(blocks == c).sum(axis=(1, 3, 5)) for c in range(num_classes)])
    return counts.argmax(axis=0).astype(np.uint8)


_BACKGROUND = "outside the brain; insula (3xxx), limbic (4xxx), deep grey (7xxx) and the white matter nearest to them"


def _readme(factor: int, shape: Sequence[int], counts: np.ndarray, kb: float) -> str:
    rows = "\n".join(
        f"| {c} | {REGION_NAMES[c]} | {', '.join(p + 'xxx' for p in REGION_GROUPS[c][1])} | {counts[c]} |"
        for c in REGION_GROUPS
    )
    return f"""# segq-monai demo volume: Colin27 T1 and four merged AAL lobes, 3D at {factor} mm

Two NIfTI files on one {'x'.join(map(str, shape))} grid of {factor} mm isotropic voxels (RAS affine, opens in
3D Slicer); together {kb:.0f} KB. They feed the 3D multi-class example (`python -m segq_monai example3d`, host
bundle `examples/colin27_regions3d`), which makes its cases from this one volume at run time (deformed crops,
graded MR artifacts; `segq_monai.data.volume3d`).

- `{VOLUME3D_FILES['image']}`: T1 intensity, uint8 0..255 (skull included), block mean of the 1 mm source;
- `{VOLUME3D_FILES['label']}`: lobes, uint8 classes 0..4:

| class | name | AAL codes (lobe digit) | voxels |
|---|---|---|---:|
| 0 | background | {_BACKGROUND} | {counts[0]} |
{rows}

Unlike the 2D set's grey-matter ribbons, each class here is a solid lobe: every brain-mask voxel (`ch2bet > 0`)
takes the AAL region of its nearest AAL-labelled voxel before merging. **One subject**: every case made from this
volume shows the same head, so cases are strongly correlated; figures from it describe this head under
deformations and artifacts, not a population.

## Provenance
Source: Debian package `mricron-data` (see `../README.md` and `../debian-copyright.txt`): `ch2.nii.gz`,
`ch2bet.nii.gz`, `aal.nii.gz` + `aal.nii.txt`, 181x217x181 at 1 mm. Made by `segq_monai/data/make_volume3d.py`:

    python -m segq_monai.data.make_volume3d ../shared/data/colin27 segq_monai/demo_data/volume3d

1. lobes: nearest AAL region for each brain-mask voxel (Euclidean distance transform), merged by the table above;
2. zero padding at the high end of each axis to a multiple of {factor}; blocks of {factor}x{factor}x{factor} voxels:
   image = block mean rounded to uint8, lobes = majority vote (ties to the lower class);
3. affine = source affine scaled by {factor}, origin at the centre of the first block.
Re-running the command reproduces these files byte for byte.

## Licence
As the 2D set: `../debian-copyright.txt` (BSD-3-clause) and `../AAL_NOTICE.txt` (AAL: free for research use; cite
Tzourio-Mazoyer et al., NeuroImage 2002).
"""


def make_volume3d_data(source_dir: str | Path, out_dir: str | Path, factor: int = 4) -> dict[str, Path]:
    """Write the coarse 3D volume, its lobes and a README into ``out_dir`` (see the module docstring).

    Args:
        source_dir: the Colin27 folder (``ch2.nii.gz``, ``ch2bet.nii.gz``, ``aal.nii.gz``, ``aal.nii.txt``,
            ``debian-copyright.txt``).
        out_dir: destination folder (created; the two NIfTI files and README.md are replaced).
        factor: source voxels (mm) per output voxel along each axis, >= 1.

    Returns:
        ``{"image": path, "label": path}``.
    """
    if int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be a positive integer (source voxels per output voxel), got {factor!r}.")
    src, out = Path(source_dir), Path(out_dir).absolute()
    t1, image, brain, aal = load_colin27(src)
    lobes = fill_lobes(aal, brain, aal_region_classes(src / "aal.nii.txt"))
    coarse = {
        "image": np.clip(np.rint(block_mean(image, factor)), 0, 255).astype(np.uint8),
        "label": block_majority(lobes, factor, len(REGION_NAMES)),
    }
    scale = np.diag([factor, factor, factor, 1.0])
    scale[:3, 3] = (factor - 1) / 2.0  # centre of block 0 in source voxel coordinates
    affine = t1.affine @ scale
    out.mkdir(parents=True, exist_ok=True)
    sform_code = int(t1.header["sform_code"]) or 1
    paths = {key: out / VOLUME3D_FILES[key] for key in coarse}
    for key, array in coarse.items():
        write_nifti_reproducible(array, affine, paths[key], sform_code)
    kb = sum(p.stat().st_size for p in paths.values()) / 1e3
    counts = np.bincount(coarse["label"].ravel(), minlength=len(REGION_NAMES))
    (out / "README.md").write_text(_readme(factor, coarse["image"].shape, counts, kb))
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m segq_monai.data.make_volume3d SOURCE OUT [--factor 4]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="Colin27 folder, e.g. ../shared/data/colin27")
    parser.add_argument("out", help="output folder, e.g. segq_monai/demo_data/volume3d")
    parser.add_argument("--factor", type=int, default=4, help="source voxels (mm) per output voxel")
    args = parser.parse_args(argv)
    for path in make_volume3d_data(args.source, args.out, args.factor).values():
        print(path)


if __name__ == "__main__":
    main()
