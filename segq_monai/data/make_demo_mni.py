"""Derive 2D demo slices of a second subject, the MNI ICBM152 2009a template, in the three planes.

Run::

    python -m segq_monai.data.make_demo_mni ../shared/data/mni152 ../shared/data/colin27 segq_monai/demo_data/mni152

Source: ``mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz`` (T1, uint8, **brain-extracted**: zero outside the
brain) and the grey-matter map ``..._gm_...`` (probability x 255, used only for the README's fit figure), on a
197x233x189 1 mm RAS grid with origin (-98, -134, -72) mm; from Colin27 (``make_demo``'s source) the AAL atlas and
the brain mask that places the slices.

What is done:
  * the in-plane 2 mm smoothing of ``make_demo`` on the full template grid, then the three volumes are cut to the
    181x217x181 box of the Colin27 grid (both grids are 1 mm and axis-aligned; their affines differ by the whole
    voxel shift (8, 9, 1)), so that every slice has the grid, padded size and affine of the Colin27 slice at the
    same MNI coordinate;
  * brain mask: ``T1 > 0`` (the template's own extraction mask: a filled envelope, ventricles and sulcal CSF
    included, like Colin27's ``ch2bet > 0``); regions: the AAL atlas mapped onto the cut grid by the affines
    (nearest neighbour), merged by ``make_demo``'s table, not restricted to the mask (as for Colin27);
  * positions: ``make_demo``'s rule on Colin27's brain mask (:func:`~segq_monai.data.make_demo.plane_positions`),
    so the coronal and sagittal slices lie at the MNI coordinates of the Colin27 cross-plane slices and the axial
    ones at those of 10 of its 72 axial slices; the files are named by the template's own voxel index.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from segq_monai.data.datalist import write_datalist
from segq_monai.data.make_demo import (
    _AAL_NOTICE,
    CROSS_PLANES,
    REGION_NAMES,
    aal_region_classes,
    load_colin27,
    plane_positions,
    smooth_2mm,
    write_plane_slices,
)

__all__ = ["MNI152_NOTICE", "PLANES", "colin27_box", "make_mni152_demo_data"]

_T1, _GM = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz", "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz"
_PATH_KEYS = ("image", "label", "regions")
#: plane -> (source axis held fixed, the two in-plane axes, padded size in 2 mm pixels): the Colin27 demo's grids
PLANES: dict[str, tuple[int, tuple[int, int], tuple[int, int]]] = {"axial": (2, (0, 1), (96, 112)), **CROSS_PLANES}
#: the template's notice (McConnell Brain Imaging Centre), which must travel with every copy and derived file
MNI152_NOTICE = """\
Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute,
McGill University. Permission to use, copy, modify, and distribute this software and its documentation
for any purpose and without fee is hereby granted, provided that the above copyright notice appear in
all copies. The authors and McGill University make no representations about the suitability of this
software for any purpose. It is provided "as is" without express or implied warranty. The authors are
not responsible for any data loss, equipment damage, property loss, or injury to subjects or patients
resulting from the use or misuse of this software package."""
_CITATION = """Cite: V.S. Fonov, A.C. Evans, K. Botteron, C.R. Almli, R.C. McKinstry, D.L. Collins. Unbiased average
age-appropriate atlases for pediatric studies. NeuroImage 54(1):313-327, 2011. doi:10.1016/j.neuroimage.2010.07.033
and V.S. Fonov, A.C. Evans, R.C. McKinstry, C.R. Almli, D.L. Collins. Unbiased nonlinear average age-appropriate
brain templates from birth to adulthood. NeuroImage 47(S1):S102, 2009. doi:10.1016/S1053-8119(09)70884-5"""


def colin27_box(affine: np.ndarray, shape: Sequence[int], target_affine: np.ndarray, target_shape: Sequence[int]):
    """Index box of the grid (``affine``, ``shape``) that is the target grid (``target_affine``, ``target_shape``).

    Returns:
        a tuple of three slices; ``volume[box]`` lies on the target grid (its affine is ``target_affine``).

    Raises:
        ValueError: the grids differ by more than a whole-voxel shift, or the target box leaves the grid.
    """
    shift = np.linalg.solve(affine, target_affine)
    offset = np.rint(shift[:3, 3]).astype(int)
    if not (np.allclose(shift[:3, :3], np.eye(3)) and np.allclose(shift[:3, 3], offset)):
        raise ValueError(f"The grids differ by more than a whole-voxel shift (source voxel of target voxel: {shift}).")
    if np.any(offset < 0) or np.any(offset + np.asarray(target_shape) > np.asarray(shape)):
        raise ValueError(f"The target box at {offset.tolist()} + {list(target_shape)} leaves the grid {list(shape)}.")
    return tuple(slice(int(o), int(o) + int(n)) for o, n in zip(offset, target_shape))


def _readme(items: Mapping[str, list[dict]], colin: Mapping[str, list[str]], offset: Sequence[int],
            stats: Mapping[str, float], mb: float) -> str:
    rows = "\n".join(
        f"- {plane} ({len(its)}): {', '.join(Path(i['image']).name[:-13] for i in its)}\n"
        f"  at {', '.join(format(i['position_mm'], 'g') for i in its)} mm; Colin27: {', '.join(colin[plane])}"
        for plane, its in items.items()
    )
    n = sum(len(v) for v in items.values())
    return f"""# segq-monai demo data, second subject: the MNI ICBM152 2009a template (T1, brain mask, AAL regions)

{n} 2D slices of a **second head**, the MNI ICBM152 2009a symmetric template (the average of 152 adult brains,
non-linearly registered; Fonov et al. 2009, 2011), in the three planes; the NIfTI files take {mb:.2f} MB. They are
made as the Colin27 slices one folder up are (2 mm lattice, area-averaged image, nearest-neighbour masks, zero
padding) and lie on **the same 2D grids**: a slice here and the Colin27 slice at the same MNI coordinate have the
same shape and affine. Both heads are in MNI space, so the positions are matched by the affines, not by voxel
index. No stage of the demo trains on this head. The demo does not use these slices yet.

Files `<plane>_<axis><index>_*.nii.gz` (index: the template's 1 mm voxel index), their MNI coordinates and the
Colin27 slices at the same coordinates:
{rows}

Positions: `make_demo`'s rule on Colin27's brain mask (spread evenly over the range whose brain area is at least
30 % of the largest; 10 axial, 8 coronal, 8 sagittal), so the coronal and sagittal slices are at the coordinates of
the Colin27 cross-plane slices and the axial ones at those of 10 of its 72 axial slices. `dataset.json` lists
them in one section per plane (`axial`, `coronal`, `sagittal`; `image`, `label` = brain mask, `regions`,
`plane`, `position_mm` = the MNI coordinate of the plane along its fixed axis).

Per slice, each a 2D NIfTI with a 2 mm RAS affine (origin = the slice's world position; opens in 3D Slicer):
- `image`: T1 intensity, uint8, the template's values unscaled, **no skull**: 0 outside the brain,
  {stats['lowest']:g}..255 inside, median {stats['median']:g} in the brain mask (Colin27: {stats['colin_median']:g},
  its range set by the bright scalp);
- `brain`: brain mask, 0/1;
- `regions`: merged AAL structures, classes 0..4, the same classes as the Colin27 slices (`region_labels`).

## The brain mask: `T1 > 0`
The template comes brain-extracted: its zero background is the template's own brain mask, applied to the T1. It
is a filled envelope (no zero voxel inside it: ventricles and sulcal CSF are in; the lowest value inside is
{stats['lowest']:g}), which is what Colin27's mask (`ch2bet > 0`, FSL BET) is too. A mask from the tissue maps
(GM + WM probability > 0.5) would leave out the ventricles and the CSF in the sulci: another task, not the one
the head was trained on. The cut to the Colin27 box drops only the template's lowest plane (z = -72 mm,
brainstem: {stats['cut']:g} voxels). The template's brain is {stats['volume']:.3f} times Colin27's BET brain in
volume; the two masks, both in MNI space, overlap with Dice {stats['dice']:.3f}.

## A real shift: no skull
Colin27's images include the skull and scalp, and the brain-mask task there is to find the brain in the head.
Here the image is the brain alone, as pipelines that skull-strip first feed their models: a network trained on
Colin27 meets an input it has never seen (no skull, another intensity profile, another, averaged anatomy). On
these images the brain mask is, up to the 2 mm sampling, where the image is not zero: trivial to a rule that knows
it, a strange input to a network that learnt to cut the brain out of a head. Report results on this subject as a
distribution shift, next to Colin27's, never pooled with them.

## How well the AAL atlas fits
AAL was drawn on Colin27; here it is mapped onto the template by the affines (nearest neighbour), as AAL is used
on MNI-normalised brains. It fits approximately, not exactly. Of the voxels that carry a region (classes 1-4, cut
grid), {stats['outside']:.1%} lie outside the template's brain mask, on zero background (Colin27's own regions:
{stats['colin_outside']:.1%} outside its BET mask; so the regions are not cut to the mask here, as there); of the
voxels of all 116 AAL regions, {stats['grey']:.1%} have a template grey-matter probability of at least 0.5.
Treat the regions as approximate labels. As one atlas lies on one grid, a slice's `regions` here are those of the
Colin27 slice at the same coordinate, pixel for pixel: between such a pair only the image and the brain mask differ.

## Provenance
Source: the MNI ICBM152 2009a symmetric template as shipped in the nilearn 0.14.1 wheel
(`nilearn/datasets/data/`), unchanged:
- `{_T1}`: brain-extracted T1, uint8, 197x233x189, 1 mm, RAS, origin (-98, -134, -72) mm;
- `{_GM}`: grey-matter probability x 255 (only for the fit figures above);

and the AAL atlas `aal.nii.gz` + `aal.nii.txt` and the brain mask `ch2bet.nii.gz` (slice positions) from
Debian's `mricron-data` 1.2.20211006+dfsg-4 (see the Colin27 README one folder up).

Made by `segq_monai/data/make_demo_mni.py`:

    python -m segq_monai.data.make_demo_mni ../shared/data/mni152 ../shared/data/colin27 segq_monai/demo_data/mni152

1. in-plane 2 mm smoothing of the T1 on the full template grid (2 mm box kernel, as `make_demo`);
2. the T1, its mask and the AAL atlas on the 181x217x181 box of the Colin27 grid (template voxel = Colin27 voxel
   + ({offset[0]}, {offset[1]}, {offset[2]}));
3. per plane the slices at the positions above, written by `make_demo`'s slice writer (uint8 image rounded,
   nearest-neighbour masks, zero padding, 2 mm affine).
Re-running the command reproduces these files byte for byte. A figure of a few of these slices beside the Colin27
ones: `docs/figures/mni152_slices.png` in the repository (`python -m segq_monai.data.mni152_figure`).

## Licence
- `MNI152_NOTICE.txt`: the template's notice (McConnell Brain Imaging Centre, McGill University), which must
  travel with every copy and derived file, and the papers to cite (Fonov et al. 2011, 2009). nilearn, which
  distributes the files, is BSD-3-clause.
- `AAL_NOTICE.txt`: the AAL atlas is free for research use; cite Tzourio-Mazoyer et al., NeuroImage 2002.
- `debian-copyright.txt`: the copyright file of Debian's `mricron-data` (BSD-3-clause, Chris Rorden), whose AAL
  files the `regions` come from.

Research use only; not for diagnosis, treatment or any clinical use.
"""


def make_mni152_demo_data(
    mni_dir: str | Path, colin27_dir: str | Path, out_dir: str | Path, *, counts: Mapping[str, int] | None = None
) -> Path:
    """Write the MNI152 slices (NIfTI per plane, ``dataset.json``, README, notices) into ``out_dir``.

    Args:
        mni_dir: folder with the template's T1 and grey-matter map (e.g. ``../shared/data/mni152``).
        colin27_dir: the Colin27 folder of ``make_demo`` (AAL atlas, names, brain mask, Debian copyright).
        out_dir: destination; its earlier ``*.nii.gz`` files are removed first.
        counts: slices per plane, default ``{"axial": 10, "coronal": 8, "sagittal": 8}``.

    Returns:
        path of the written ``dataset.json``.

    Raises:
        FileNotFoundError: a source file is missing.
        ValueError: the template's grid is not a whole-voxel shift of Colin27's that holds its box.
    """
    mni, out = Path(mni_dir), Path(out_dir).absolute()
    counts = {"axial": 10, "coronal": 8, "sagittal": 8, **(counts or {})}
    missing = [n for n in (_T1, _GM) if not (mni / n).is_file()]
    if missing:
        raise FileNotFoundError(f"Missing {missing} in {mni}; pass the MNI152 folder (e.g. ../shared/data/mni152).")
    colin_t1, colin_image, colin_brain, aal = load_colin27(colin27_dir)
    t1 = nib.load(mni / _T1)
    image = np.asarray(t1.dataobj, dtype=np.float64)
    box = colin27_box(t1.affine, image.shape, colin_t1.affine, aal.shape)
    offset = [b.start for b in box]
    affine = t1.affine.copy()
    affine[:3, 3] = t1.affine[:3] @ np.array([*offset, 1.0])  # the cut grid's affine: Colin27's
    aal_here = ndimage.affine_transform(aal, np.linalg.solve(colin_t1.affine, affine), output_shape=aal.shape,
                                        order=0, mode="constant", cval=0)  # fmt: skip
    masks = {"brain": image[box] > 0, "regions": aal_region_classes(Path(colin27_dir) / "aal.nii.txt")[aal_here]}
    grey = np.asarray(nib.load(mni / _GM).dataobj)[box]

    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.nii.gz"):
        old.unlink()
    sform_code = int(t1.header["sform_code"]) or 1
    sections, colin = {}, {}
    for plane, (axis, in_plane, size) in PLANES.items():
        positions = plane_positions(colin_brain, axis, counts[plane])
        stems = [f"{plane}_{'xyz'[axis]}{p + offset[axis]:03d}" for p in positions]
        colin[plane] = [f"slice_z{p:03d}" if plane == "axial" else f"{plane}_{'xyz'[axis]}{p:03d}" for p in positions]
        written = write_plane_slices(smooth_2mm(image, in_plane)[box], masks, affine, out, sform_code, axis,
                                     in_plane, size, positions, stems)  # fmt: skip
        sections[plane] = [{**{k: str(out / v) for k, v in item.items()}, "plane": plane,
                            "position_mm": float(affine[axis, axis] * p + affine[axis, 3])}
                           for item, p in zip(written, positions)]  # fmt: skip

    labelled = masks["regions"] > 0
    stats = {"outside": (labelled & ~masks["brain"]).sum() / labelled.sum(),
             "colin_outside": (labelled & ~colin_brain).sum() / labelled.sum(),
             "grey": float((grey[aal_here > 0] >= 127.5).mean()), "lowest": image[image > 0].min(),
             "median": np.median(image[box][masks["brain"]]), "colin_median": np.median(colin_image[colin_brain]),
             "cut": (image > 0).sum() - masks["brain"].sum(), "volume": masks["brain"].sum() / colin_brain.sum(),
             "dice": 2 * (masks["brain"] & colin_brain).sum() / (masks["brain"].sum() + colin_brain.sum())}  # fmt: skip
    shutil.copyfile(Path(colin27_dir) / "debian-copyright.txt", out / "debian-copyright.txt")
    (out / "AAL_NOTICE.txt").write_text(_AAL_NOTICE)
    (out / "MNI152_NOTICE.txt").write_text(
        "MNI ICBM152 2009a symmetric template - notice and citation\n\nThe `image` and `brain` files here are derived "
        f"from the MNI ICBM152 2009a template (via nilearn 0.14.1).\nIts notice:\n\n{MNI152_NOTICE}\n\n{_CITATION}\n"
    )
    dataset = {
        "name": "mni152_2d",
        "description": "2D slices (axial, coronal, sagittal; 2 mm) of the MNI ICBM152 2009a T1 template "
        "(brain-extracted), brain mask T1 > 0 and 4 merged AAL structures (mapped from Colin27 by the affines)",
        "reference": "MNI ICBM152 2009a (Fonov et al. 2009, 2011) via nilearn; AAL (Tzourio-Mazoyer et al. 2002)",
        "licence": "MNI notice (MNI152_NOTICE.txt); AAL: free for research, cite the paper (AAL_NOTICE.txt); "
        "BSD-3-clause (debian-copyright.txt)",
        "tensorImageSize": "2D",
        "modality": {"0": "T1"},
        "labels": {"0": "background", "1": "brain"},
        "region_labels": {str(k): v for k, v in REGION_NAMES.items()},
        **{f"num_{plane}": len(items) for plane, items in sections.items()},
    }
    json_path = write_datalist(out / "dataset.json", sections, metadata=dataset, path_keys=_PATH_KEYS)
    mb = sum(f.stat().st_size for f in out.glob("*.nii.gz")) / 1e6
    (out / "README.md").write_text(_readme(sections, colin, offset, stats, mb))
    return json_path


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m segq_monai.data.make_demo_mni MNI152 COLIN27 OUT``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mni152", help="MNI152 folder, e.g. ../shared/data/mni152")
    parser.add_argument("colin27", help="Colin27 folder (AAL atlas), e.g. ../shared/data/colin27")
    parser.add_argument("out", help="output folder, e.g. segq_monai/demo_data/mni152")
    args = parser.parse_args(argv)
    print(make_mni152_demo_data(args.mni152, args.colin27, args.out))


if __name__ == "__main__":
    main()
