"""Geometric shifts of a 2D slice for the demo's shift split: orientations and resolutions stage 1 never saw.

Stage 1 trains on axial slices at 2 mm with the head upright; stage 2 on their artifact copies (flips only as a
random augmentation). A shifted copy moves the slice away from both, with its label moved the same way:

- ``rotate90``: the array turned by 90° (``numpy.rot90``; ``[H, W] -> [W, H]``), another in-plane orientation;
- ``zoom_out``: resampled to 3 mm pixels (factor 2/3; linear for the image, nearest for the label), zero-padded
  back to ``[H, W]``: a coarser scanner grid with a wider field of view;
- ``zoom_in``: resampled to 1.5 mm pixels (factor 4/3), centre-cropped back to ``[H, W]``: a finer grid whose
  field of view cuts into the head.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["SHIFT_KINDS", "shift_slice"]

SHIFT_KINDS: tuple[str, ...] = ("rotate90", "zoom_out", "zoom_in")
_ZOOM = {"zoom_out": 2 / 3, "zoom_in": 4 / 3}


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
