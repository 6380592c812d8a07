"""Geometric shifts of a 2D slice: the demo's shift split, and the turned copies stage 2 learns from.

Stage 1 trains on axial slices at 2 mm with the head upright (flips only as a random augmentation). A shifted
copy of the shift split moves the slice away from that, with its label moved the same way:

- ``rotate90``: the array turned by 90° (``numpy.rot90``; ``[H, W] -> [W, H]``), another in-plane orientation;
- ``zoom_out``: resampled to 3 mm pixels (factor 2/3; linear for the image, nearest for the label), zero-padded
  back to ``[H, W]``: a coarser scanner grid with a wider field of view;
- ``zoom_in``: resampled to 1.5 mm pixels (factor 4/3), centre-cropped back to ``[H, W]``: a finer grid whose
  field of view cuts into the head.

The quality head trains with random rotations (any angle) and zooms (0.6 to 1.4) of its inputs
(``train_quality.json``), and :func:`random_geometry` makes turned and zoomed copies of development slices for its
training data (``prepare_demo(geometric_variants=...)``); the shift split's 90° and 2/3, 4/3 lie inside that range,
so for the head the shift split is new slices, new artifacts and stage-1 failures of new images, but not a new
geometry.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["SHIFT_KINDS", "random_geometry", "shift_slice"]

SHIFT_KINDS: tuple[str, ...] = ("rotate90", "zoom_out", "zoom_in")
_ZOOM = {"zoom_out": 2 / 3, "zoom_in": 4 / 3}
#: the range of :func:`random_geometry`: angle in degrees, zoom factor
ANGLE_RANGE, ZOOM_RANGE = (-180.0, 180.0), (0.6, 1.4)


def _fit(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Centre-crop or zero-pad ``array`` to ``shape``, per axis (the extra pixel of an odd difference at the end)."""
    out = array
    for axis, size in enumerate(shape):
        n = out.shape[axis]
        if n > size:
            start = (n - size) // 2
            out = np.take(out, np.arange(start, start + size), axis=axis)
        elif n < size:
            pad = [(0, 0)] * out.ndim
            pad[axis] = ((size - n) // 2, size - n - (size - n) // 2)
            out = np.pad(out, pad)
    return out


def shift_slice(image: np.ndarray, label: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Shift one 2D slice and its label (see the module docstring).

    Args:
        image: ``[H, W]`` float intensities.
        label: ``[H, W]`` integer class indices.
        kind: one of :data:`SHIFT_KINDS`.

    Returns:
        ``(image, label)``: float32 and the label's dtype; ``[W, H]`` for ``rotate90``, else ``[H, W]``.
    """
    if kind not in SHIFT_KINDS:
        raise ValueError(f"kind must be one of {SHIFT_KINDS}, got {kind!r}.")
    if image.ndim != 2 or image.shape != label.shape:
        raise ValueError(f"image and label must be 2D of one shape, got {image.shape} and {label.shape}.")
    if kind == "rotate90":
        return np.ascontiguousarray(np.rot90(image)).astype(np.float32), np.ascontiguousarray(np.rot90(label))
    factor = _ZOOM[kind]
    zoomed = ndimage.zoom(image.astype(np.float32), factor, order=1, mode="nearest", grid_mode=True)
    zoomed_label = ndimage.zoom(label, factor, order=0, mode="nearest", grid_mode=True)
    return _fit(zoomed, image.shape).astype(np.float32), _fit(zoomed_label, label.shape).astype(label.dtype)


def random_geometry(
    image: np.ndarray, label: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Turn one 2D slice and its label by a random angle about the centre and zoom them by a random factor (both
    uniform in :data:`ANGLE_RANGE` degrees and :data:`ZOOM_RANGE`; linear for the image, nearest for the label,
    zeros outside the slice), back on the ``[H, W]`` grid (centre crop or zero padding).

    Args:
        image: ``[H, W]`` float intensities.
        label: ``[H, W]`` integer class indices.
        rng: the random generator (e.g. ``numpy.random.default_rng(seed)``).

    Returns:
        ``(image, label, angle, zoom)``: float32 ``[H, W]``, the label's dtype ``[H, W]``, degrees, factor.
    """
    if image.ndim != 2 or image.shape != label.shape:
        raise ValueError(f"image and label must be 2D of one shape, got {image.shape} and {label.shape}.")
    angle, zoom = float(rng.uniform(*ANGLE_RANGE)), float(rng.uniform(*ZOOM_RANGE))
    turned = ndimage.rotate(image.astype(np.float32), angle, reshape=False, order=1, mode="constant")
    turned_label = ndimage.rotate(label, angle, reshape=False, order=0, mode="constant")
    zoomed = ndimage.zoom(turned, zoom, order=1, mode="nearest", grid_mode=True)
    zoomed_label = ndimage.zoom(turned_label, zoom, order=0, mode="nearest", grid_mode=True)
    return (_fit(zoomed, image.shape).astype(np.float32), _fit(zoomed_label, label.shape).astype(label.dtype), angle,
            zoom)  # fmt: skip
