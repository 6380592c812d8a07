"""Derive the embedded 2D demo set from the Colin27 T1 MRI, its brain mask and the AAL atlas.

Run::

    python -m segq_monai.data.make_demo ../shared/data/colin27 segq_monai/demo_data

Source (Debian ``mricron-data``): ``ch2.nii.gz`` (T1, uint8), ``ch2bet.nii.gz`` (``> 0`` is the brain mask),
``aal.nii.gz`` (116 AAL regions, names and codes in ``aal.nii.txt``), all on one 181x217x181 1 mm RAS grid.

What is done, per kept axial slice ``z`` (a source voxel index, every ``z_step`` voxels):
  * in-plane resampling to 2 mm on the sub-grid of even source voxels (its centres coincide with source voxel
    centres): the image by area averaging (separable 2 mm box kernel ``[1/4, 1/2, 1/4]`` over the 1 mm voxels,
    rounded back to uint8), the masks by nearest neighbour (the source voxel at the centre, no averaging);
  * zero padding to ``size`` (divisible by 16), split as evenly as possible, with the affine's origin moved to
    match;
  * three 2D NIfTI files with a 2 mm affine (``z`` column 2 mm, origin at the slice's world position).
"""

from __future__ import annotations

import argparse
import gzip
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from segq_monai.data.datalist import write_datalist

__all__ = [
    "REGION_GROUPS",
    "REGION_NAMES",
    "aal_region_classes",
    "load_colin27",
    "make_demo_data",
    "plane_positions",
    "smooth_2mm",
    "write_nifti_reproducible",
    "write_plane_slices",
]

#: class index -> (name, leading digit(s) of the AAL code, i.e. the AAL lobe code) of the merged regions.
REGION_GROUPS: dict[int, tuple[str, tuple[str, ...]]] = {
    1: ("frontal", ("2",)),  # AAL 1-28: precentral, frontal gyri (incl. orbital), rolandic op., SMA, olfactory, rectus
    2: ("temporal", ("8",)),  # AAL 79-90: Heschl, superior/middle/inferior temporal, temporal poles
    3: ("parietal_occipital", ("5", "6")),  # AAL 43-70: occipital, calcarine, cuneus, lingual, fusiform, parietal
    4: ("cerebellum", ("9",)),  # AAL 91-116: cerebellar hemispheres and vermis
}
#: class index -> name, including background (also insula, limbic, deep grey nuclei, white matter, CSF, outside).
REGION_NAMES: dict[int, str] = {0: "background", **{k: v[0] for k, v in REGION_GROUPS.items()}}

_SLICE_PATTERN = re.compile(r"^(slice_z|coronal_y|sagittal_x)\d{3}_(image|brain|regions)\.nii\.gz$")
#: the cross-plane slices: plane -> (source axis held fixed, the two in-plane source axes, padded size in 2 mm pixels)
CROSS_PLANES: dict[str, tuple[int, tuple[int, int], tuple[int, int]]] = {
    "coronal": (1, (0, 2), (96, 96)),  # x by z
    "sagittal": (0, (1, 2), (112, 96)),  # y by z
}
_BOX_2MM = np.array([0.25, 0.5, 0.25])  # 2 mm box centred on a 1 mm voxel: half of each neighbour, all of itself


def aal_region_classes(names_file: str | Path) -> np.ndarray:
    """Lookup table from AAL index (0..116) to merged class (0..4), from the codes in ``aal.nii.txt``.

    Each line of the file reads ``index name code``; the code's leading digit is the AAL lobe
    (2 frontal, 3 insula, 4 limbic, 5 occipital, 6 parietal, 7 deep grey, 8 temporal, 9 cerebellum).

    Returns:
        uint8 array ``[max_index + 1]``; ``lut[aal]`` gives the class map.
    """
    rows = [line.split() for line in Path(names_file).read_text().splitlines() if line.strip()]
    lut = np.zeros(max(int(r[0]) for r in rows) + 1, dtype=np.uint8)
    for index, _name, code in rows:
        for cls, (_group, prefixes) in REGION_GROUPS.items():
            if code.startswith(prefixes):
                lut[int(index)] = cls
    return lut


def load_colin27(source_dir: str | Path) -> tuple[nib.Nifti1Image, np.ndarray, np.ndarray, np.ndarray]:
    """Load the Colin27 source: ``(t1 NIfTI, image float64, brain mask bool, AAL indices int)``, one 1 mm grid.

    Raises:
        FileNotFoundError: a source file is missing (all five are named, with the folder).
        ValueError: the three volumes are not on one grid.
    """
    src = Path(source_dir)
    needed = ["ch2.nii.gz", "ch2bet.nii.gz", "aal.nii.gz", "aal.nii.txt", "debian-copyright.txt"]
    missing = [n for n in needed if not (src / n).is_file()]
    if missing:
        raise FileNotFoundError(f"Missing {missing} in {src}; pass the Colin27 folder (e.g. ../shared/data/colin27).")
    t1 = nib.load(src / "ch2.nii.gz")
    image = np.asarray(t1.dataobj, dtype=np.float64)
    brain = np.asarray(nib.load(src / "ch2bet.nii.gz").dataobj) > 0
    aal = np.asarray(nib.load(src / "aal.nii.gz").dataobj).astype(np.int64)
    if not (image.shape == brain.shape == aal.shape):
        raise ValueError(f"Source grids differ: ch2 {image.shape}, ch2bet {brain.shape}, aal {aal.shape}.")
    return t1, image, brain, aal


def _pad_widths(n: int, size: int) -> tuple[int, int]:
    if n > size:
        raise ValueError(f"Resampled extent {n} exceeds the target size {size}; pass a larger `size`.")
    before = (size - n) // 2
    return before, size - n - before


def write_nifti_reproducible(array: np.ndarray, affine: np.ndarray, path: Path, sform_code: int) -> None:
    """Write a NIfTI whose gzip stream has no time stamp, so re-runs give identical bytes."""
    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm")
    img.set_sform(affine, code=sform_code)
    img.set_qform(affine, code=sform_code)
    path.write_bytes(gzip.compress(img.to_bytes(), compresslevel=9, mtime=0))


def _readme(
    cases: int, size: Sequence[int], z_first: int, z_last: int, z_step: int, mb: float, cross: list[dict[str, str]]
) -> str:
    planes = "\n".join(
        f"- {plane}: {', '.join(i['image'].split('_')[1] for i in cross if i['plane'] == plane)} "
        f"({CROSS_PLANES[plane][2][0]}x{CROSS_PLANES[plane][2][1]} pixels)"
        for plane in CROSS_PLANES
    )
    groups = "\n".join(
        f"| {cls} | {name} | {', '.join(p + 'xxx' for p in prefixes)} |"
        for cls, (name, prefixes) in REGION_GROUPS.items()
    )
    return f"""# segq-monai demo data: 2D axial slices of Colin27 (T1 MRI, brain mask, merged AAL regions)

{cases} axial slices, {size[0]}x{size[1]} pixels of 2 mm x 2 mm, one every {z_step} mm (source slices
z = {z_first}..{z_last}, voxel indices of the 1 mm source; world z = index - 71 mm); the NIfTI files take
{mb:.2f} MB. All slices come from **one head**: neighbouring slices are nearly identical, so split them by contiguous
blocks (`segq_monai.data.contiguous_folds`), never at random.

Per slice `slice_zNNN_*.nii.gz` (NNN = source slice index), each a 2D NIfTI with a 2 mm RAS affine (origin =
the slice's world position; opens in 3D Slicer):
- `image`: T1 intensity, uint8 0..255 (skull included);
- `brain`: brain mask, 0/1 (task: brain extraction);
- `regions`: merged AAL structures, classes 0..4 (multi-class task):

| class | name | AAL codes (lobe digit) |
|---|---|---|
| 0 | background | everything else: outside, CSF, white matter, insula (3xxx), limbic (4xxx), deep grey (7xxx) |
{groups}

AAL labels only grey matter, so classes 1-4 are cortical / cerebellar grey-matter ribbons; the fusiform gyrus
(54xx) counts as occipital as in AAL's own coding.
`dataset.json` is a Decathlon datalist (`training`: `image`, `label` = brain mask, `regions`), ordered by z.

**Cross-plane slices** (`cross_plane` section, `plane` = coronal or sagittal): {len(cross)} slices of the same head
in the two planes that the axial slices do not show, made the same way (2 mm lattice, area-averaged image,
nearest-neighbour masks, zero padding), `<plane>_<axis><index>_*.nii.gz` with the fixed source voxel index, spread
evenly over the range whose brain area is at least 30 % of the largest:
{planes}

The demo trains both stages on every plane (a deployed 2D model is fed every orientation its protocol has) and holds
out contiguous blocks of each (`segq_monai.data.demo.prepare_demo`).

**A second subject** (`mni152/`, with its own README and `dataset.json`; the demo's cross-subject split): slices of
the MNI ICBM152 2009a template in the three planes, on the same 2D grids as the slices here at the same MNI
coordinates, made by `python -m segq_monai.data.make_demo_mni`. The template is brain-extracted: its missing skull
is a real shift for the brain-mask task, to be reported as such.

## Provenance
Source: Debian package `mricron-data` 1.2.20211006+dfsg-4, folder `templates`: `ch2.nii.gz` (Colin27 T1, Holmes
et al., J Comput Assist Tomogr 1998), `ch2bet.nii.gz` (the same after FSL BET skull stripping; brain mask =
`ch2bet > 0`, made by a program, not by hand) and `aal.nii.gz` + `aal.nii.txt` (AAL atlas), 181x217x181, 1 mm.

Made by `segq_monai/data/make_demo.py`:

    python -m segq_monai.data.make_demo ../shared/data/colin27 segq_monai/demo_data

1. kept axial slices with a brain-mask area of at least 1 % of the largest one, every {z_step} mm;
2. in-plane 2 mm grid on the even source voxels; image: area average (2 mm box kernel), rounded to uint8;
   masks: nearest neighbour;
3. zero padding to {size[0]}x{size[1]} (divisible by 16); AAL index -> class by the table above;
4. the cross-plane slices as above.
Re-running the command reproduces these files byte for byte.

## Licence
- `debian-copyright.txt`: the Debian package's copyright file (BSD-3-clause, Chris Rorden).
- `AAL_NOTICE.txt`: the AAL atlas is free for research use; cite Tzourio-Mazoyer et al., NeuroImage 2002.
- `mni152/MNI152_NOTICE.txt`: the MNI ICBM152 template's notice (McConnell Brain Imaging Centre, McGill
  University), which travels with the files of `mni152/`; cite Fonov et al., NeuroImage 2009 and 2011.
"""


_AAL_NOTICE = """AAL (Automated Anatomical Labeling) atlas - terms and citation

The `regions` files here are derived from the AAL atlas (116 regions drawn by hand on the Colin27 brain),
merged into 4 classes. The AAL atlas is free for research use; when you use it, cite:

  N. Tzourio-Mazoyer, B. Landeau, D. Papathanassiou, F. Crivello, O. Etard, N. Delcroix, B. Mazoyer,
  M. Joliot. Automated anatomical labeling of activations in SPM using a macroscopic anatomical
  parcellation of the MNI MRI single-subject brain. NeuroImage 15(1):273-289, 2002.
  doi:10.1006/nimg.2001.0978

Colin27 T1 image: C.J. Holmes, R. Hoge, L. Collins, R. Woods, A.W. Toga, A.C. Evans. Enhancement of MR
images using registration for signal averaging. J Comput Assist Tomogr 22(2):324-333, 1998.
Distributed with Debian's `mricron-data` (see debian-copyright.txt).
"""


def plane_positions(brain: np.ndarray, axis: int, count: int, min_brain_fraction: float = 0.3) -> list[int]:
    """``count`` even source indices along ``axis`` (on the 2 mm lattice), spread evenly over the range whose brain
    area (voxels of ``brain``, a 3D bool mask) is at least ``min_brain_fraction`` of the largest; fewer when two
    round to the same index."""
    area = brain.sum(axis=tuple(a for a in range(3) if a != axis))
    kept = np.flatnonzero(area >= min_brain_fraction * area.max())
    return sorted({2 * round(p / 2) for p in np.linspace(kept[0], kept[-1], count)})


def smooth_2mm(image: np.ndarray, in_plane: tuple[int, int]) -> np.ndarray:
    """The 1 mm volume averaged over 2 mm boxes in the two ``in_plane`` axes (kernel ``[1/4, 1/2, 1/4]``)."""
    smooth = ndimage.convolve1d(image, _BOX_2MM, axis=in_plane[0], mode="nearest")
    return ndimage.convolve1d(smooth, _BOX_2MM, axis=in_plane[1], mode="nearest")


def write_plane_slices(
    smooth: np.ndarray, masks: dict[str, np.ndarray], affine: np.ndarray, out: Path, sform_code: int,
    axis: int, in_plane: tuple[int, int], size: tuple[int, int], positions: Sequence[int], stems: Sequence[str],
) -> list[dict[str, str]]:
    """Write one 2D slice per source index in ``positions`` along ``axis``, on the 2 mm lattice of the even source
    voxels: ``<stem>_image`` (``smooth``, see :func:`smooth_2mm`, rounded to uint8) and one file per mask (nearest
    neighbour), zero padded to ``size``, with a 2 mm affine whose origin is padded pixel (0, 0) of the slice in the
    world (``affine``: the 1 mm source grid's). Returns their datalist items (``image``, ``label`` = the ``brain``
    mask's file, ``regions``)."""
    u, v = in_plane
    items = []
    for p, stem in zip(positions, stems):
        index: list[slice | int] = [slice(None, None, 2)] * 3
        index[axis] = p
        arrays = {"image": np.clip(np.rint(smooth[tuple(index)]), 0, 255).astype(np.uint8),
                  **{k: m[tuple(index)].astype(np.uint8) for k, m in masks.items()}}  # fmt: skip
        pads = [_pad_widths(n, s) for n, s in zip(arrays["image"].shape, size)]
        aff = np.eye(4)
        aff[:3, 0], aff[:3, 1], aff[:3, 2] = affine[:3, u] * 2, affine[:3, v] * 2, affine[:3, axis] * 2
        origin = np.zeros(4)
        origin[[u, v, axis, 3]] = -pads[0][0] * 2, -pads[1][0] * 2, p, 1.0
        aff[:3, 3] = (affine @ origin)[:3]
        names = {}
        for key, arr in arrays.items():
            names[key] = f"{stem}_{key}.nii.gz"
            write_nifti_reproducible(np.pad(arr, pads), aff, out / names[key], sform_code)
        items.append({"image": names["image"], "label": names["brain"], "regions": names["regions"]})
    return items


def _cross_plane_slices(
    image: np.ndarray, masks: dict[str, np.ndarray], affine: np.ndarray, out: Path, sform_code: int, per_plane: int,
) -> list[dict[str, str]]:
    """Write ``per_plane`` coronal and sagittal slices (:data:`CROSS_PLANES`) at :func:`plane_positions`, made as the
    axial ones are (area-averaged image, nearest-neighbour masks, zero padding); returns their datalist items (file
    names, ``plane``)."""
    items = []
    for plane, (axis, in_plane, size) in CROSS_PLANES.items():
        positions = plane_positions(masks["brain"], axis, per_plane)
        stems = [f"{plane}_{'xyz'[axis]}{p:03d}" for p in positions]
        written = write_plane_slices(smooth_2mm(image, in_plane), masks, affine, out, sform_code, axis, in_plane,
                                     size, positions, stems)  # fmt: skip
        items += [{**item, "plane": plane} for item in written]
    return items


def make_demo_data(
    source_dir: str | Path,
    out_dir: str | Path,
    *,
    size: tuple[int, int] = (96, 112),
    z_step: int = 2,
    min_brain_fraction: float = 0.01,
    cross_plane_slices: int = 22,
) -> Path:
    """Write the 2D demo set (NIfTI slices, ``dataset.json``, README, licences) into ``out_dir``.

    Args:
        source_dir: folder with ``ch2.nii.gz``, ``ch2bet.nii.gz``, ``aal.nii.gz``, ``aal.nii.txt`` and
            ``debian-copyright.txt`` (1 mm grid, 181x217x181).
        out_dir: destination; earlier ``slice_z*`` files there are removed first.
        size: padded in-plane size ``(H, W)`` in 2 mm pixels; each divisible by 16.
        z_step: distance between kept slices, in source voxels (mm); even keeps the 2 mm lattice.
        min_brain_fraction: keep the contiguous z range whose brain area is at least this fraction of the
            largest slice's.
        cross_plane_slices: coronal slices, and as many sagittal ones, for the ``cross_plane`` section (real anatomy
            in the planes that stage 1, trained on axial slices, never sees).

    Returns:
        path of the written ``dataset.json``.
    """
    src, out = Path(source_dir), Path(out_dir).absolute()
    if any(s % 16 for s in size):
        raise ValueError(f"size {size} must be divisible by 16 (U-Net with 4 downsamplings).")
    t1, image, brain, aal = load_colin27(src)
    affine = t1.affine
    regions = aal_region_classes(src / "aal.nii.txt")[aal]

    area = brain.sum(axis=(0, 1))
    kept = np.flatnonzero(area >= min_brain_fraction * area.max())
    z_first = int(kept[0]) + int(kept[0]) % 2  # even, to stay on the 2 mm lattice
    zs = list(range(z_first, int(kept[-1]) + 1, z_step))

    for n, s in zip(image[::2, ::2, 0].shape, size):
        _pad_widths(n, s)  # a too small `size` fails before anything is removed

    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if _SLICE_PATTERN.match(old.name):
            old.unlink()
    sform_code = int(t1.header["sform_code"]) or 1
    # 2D affine: columns scale by the 2 mm step, origin = world position of padded pixel (0, 0) on slice z
    items = write_plane_slices(smooth_2mm(image, (0, 1)), {"brain": brain, "regions": regions}, affine, out,
                               sform_code, 2, (0, 1), size, zs, [f"slice_z{z:03d}" for z in zs])  # fmt: skip

    shutil.copyfile(src / "debian-copyright.txt", out / "debian-copyright.txt")
    (out / "AAL_NOTICE.txt").write_text(_AAL_NOTICE)
    dataset = {
        "name": "colin27_2d",
        "description": "2D axial slices of the Colin27 T1 MRI (2 mm), brain mask and 4 merged AAL structures",
        "reference": "Colin27 (Holmes et al. 1998), AAL (Tzourio-Mazoyer et al. 2002), via Debian mricron-data",
        "licence": "BSD-3-clause (debian-copyright.txt); AAL: free for research, cite the paper (AAL_NOTICE.txt)",
        "tensorImageSize": "2D",
        "modality": {"0": "T1"},
        "labels": {"0": "background", "1": "brain"},
        "region_labels": {str(k): v for k, v in REGION_NAMES.items()},
        "numTraining": len(items),
    }
    cross = _cross_plane_slices(image, {"brain": brain, "regions": regions}, affine, out, sform_code,
                                cross_plane_slices)  # fmt: skip
    path_keys = ("image", "label", "regions")
    sections = {
        "training": [{k: str(out / v) for k, v in item.items()} for item in items],
        "cross_plane": [{k: str(out / v) if k in path_keys else v for k, v in item.items()} for item in cross],
    }
    path_keys = ("image", "label", "regions")
    json_path = write_datalist(out / "dataset.json", sections, metadata=dataset, path_keys=path_keys)
    mb = sum(f.stat().st_size for f in out.iterdir() if _SLICE_PATTERN.match(f.name)) / 1e6
    (out / "README.md").write_text(_readme(len(items), size, zs[0], zs[-1], z_step, mb, cross))
    return json_path


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m segq_monai.data.make_demo SOURCE OUT``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="Colin27 folder, e.g. ../shared/data/colin27")
    parser.add_argument("out", help="output folder, e.g. segq_monai/demo_data")
    args = parser.parse_args(argv)
    print(make_demo_data(args.source, args.out))


if __name__ == "__main__":
    main()
