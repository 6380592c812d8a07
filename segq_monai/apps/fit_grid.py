"""The grid the quality head of a fit reads, from the labelled cases' file headers, checked before any sampling.

The head reads the image, segmentation and maps on each case's **input grid** (the overlay inverts the host's
preprocessing before ``QualityInputd``), so its per-axis strides follow the input files: the first labelled case's
shape and spacing give them (:func:`~segq_monai.networks.quality_regressor.quality_strides`) and every case is
checked against them, and each label against its image, from the headers alone (NIfTI through nibabel, PNG / JPEG
through PIL, other formats through MONAI's ``LoadImage``), so that a bad case is refused before the fit writes
anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from segq_monai.data.outputs import first_path
from segq_monai.networks.quality_regressor import KERNEL_SIZE, quality_strides

__all__ = ["AUTO_BAND_MARGIN", "AUTO_BAND_VOXELS", "check_case_grids", "file_grid", "foreground_band", "head_strides"]

#: ``--foreground_band auto`` samples only around the predicted foreground (margin :data:`AUTO_BAND_MARGIN` voxels)
#: when no CUDA device is available and the first case is 3D with at least this many voxels: there T = 20 passes
#: over the whole input cost about 5 minutes a case on a 2-core CPU (the cost table of docs/fit.md). The margin is half
#: a 96³ sliding window, the usual one of model-zoo's 3D bundles: each voxel of the band keeps the context it has in
#: a window of the full pass (on the 3D example, margins below half its window lowered the segmentation's Dice).
AUTO_BAND_VOXELS = 2**23
AUTO_BAND_MARGIN = 48

_FIX_2D = (
    "Save 2D data as 2D files (PNG, or a 2D NIfTI: not a 1-slice volume), or resample/pad the axis, or leave the case "
    "out of the datalist."
)


def file_grid(path: str | Path) -> tuple[list[int], list[float]]:
    """Spatial shape and spacing of an image file as MONAI's ``LoadImage(ensure_channel_first=True)`` gives them,
    read from the header where it can: NIfTI ``(X, Y[, Z])`` and its zooms; PNG / JPEG ``(W, H)`` (``PILReader``
    order) and spacing 1 (no spacing in the file).

    Raises:
        ValueError: the file cannot be read (missing, truncated, not an image); the file and the fix named.
    """
    try:
        return _file_grid(Path(path))
    except Exception as e:
        raise ValueError(
            f"Cannot read {path} ({type(e).__name__}: {e}); the file is missing, truncated or not an image readable "
            "by nibabel/ITK/PIL: re-export it, or remove it from the datalist."
        ) from e


def _file_grid(path: Path) -> tuple[list[int], list[float]]:
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        header = nib.load(str(path)).header
        shape = [int(s) for s in header.get_data_shape()[:3]]
        return shape, [float(z) for z in header.get_zooms()[: len(shape)]]
    if name.endswith((".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")):
        from PIL import Image

        with Image.open(path) as im:
            return [int(im.width), int(im.height)], [1.0, 1.0]
    from monai.transforms import LoadImage

    img = LoadImage(image_only=True, ensure_channel_first=True)(str(path))
    return [int(s) for s in img.shape[1:]], [float(s) for s in img.pixdim][: img.ndim - 1]


def head_strides(
    items: Sequence[Mapping[str, Any]], levels: int, strides: Sequence[int] | None = None
) -> tuple[list, dict[str, Any]]:
    """The head's strides and the grid they were chosen for: ``strides`` (ints, one per level) when given, else
    per-axis :func:`quality_strides` of the first item's image. Returns ``(strides, {"image", "shape", "spacing"})``.

    Raises:
        ValueError: the first image's shape is too small for the head (the file, the shape and the fix named).
    """
    image = str(first_path(items[0]["image"]))
    shape, spacing = file_grid(image)
    if strides is None:
        try:
            strides = quality_strides(shape, spacing, levels=levels)
        except ValueError as e:
            raise ValueError(f"Case {image}: {e}") from e
    return list(strides), {"image": image, "shape": shape, "spacing": spacing}


def foreground_band(choice: str, shape: Sequence[int], cuda: bool) -> int | None:
    """The fit's foreground band margin in voxels, or ``None`` (the whole input is sampled), from ``--foreground_band``:
    ``"auto"`` (see :data:`AUTO_BAND_VOXELS`; ``shape`` is the first case's spatial shape, ``cuda`` whether a CUDA
    device is available), ``"none"``, or a margin (an integer >= 0)."""
    if choice == "auto":
        big = len(shape) == 3 and math.prod(shape) >= AUTO_BAND_VOXELS
        return AUTO_BAND_MARGIN if big and not cuda else None
    if choice == "none":
        return None
    if not choice.isdigit():
        raise ValueError(f"--foreground_band takes auto, none or a margin in voxels (an integer >= 0), got {choice!r}.")
    return int(choice)


def check_case_grids(items: Sequence[Mapping[str, Any]], strides: Sequence[Any], spatial_dims: int) -> None:
    """Check every labelled case before sampling: its image has ``spatial_dims`` axes, each at least the kernel size
    and the product of that axis' ``strides``; its label has the image's shape.

    Raises:
        ValueError: naming the file, the shapes and the fix.
    """
    per_axis = [[int(s)] * spatial_dims if isinstance(s, int) else [int(v) for v in s] for s in strides]
    minimum = [max(KERNEL_SIZE, math.prod(axis)) for axis in zip(*per_axis)]
    for item in items:
        image = str(first_path(item["image"]))
        shape, _ = file_grid(image)
        if len(shape) != spatial_dims or any(s < m for s, m in zip(shape, minimum)):
            raise ValueError(
                f"Case {image} has spatial shape {tuple(shape)}, but the quality head of this fit reads "
                f"{spatial_dims}D data of at least {tuple(minimum)} voxels (strides {per_axis}, chosen from the first "
                f"case). {_FIX_2D}"
            )
        label = str(first_path(item["label"]))
        label_shape, _ = file_grid(label)
        if label_shape != shape:
            raise ValueError(
                f"Label {label} does not lie on the grid of its image {image}: label shape {tuple(label_shape)}, "
                f"image shape {tuple(shape)}. Resample the label onto the image (e.g. monai.transforms.ResampleToMatch "
                "with mode='nearest') or pair the image with its own label in the datalist."
            )
