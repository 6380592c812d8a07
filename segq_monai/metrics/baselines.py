"""Scalar uncertainty baselines: one confidence number per case, to compare with the stage-2 regressor.

Every function reads the maps of ONE case (channel-first, see the data keys table of CONTRIBUTING.md) and
returns a float "confidence" where HIGHER means the segmentation is more likely good: uncertainties (entropy,
mutual information, in nats) are negated; the pairwise Dice between samples is already a confidence.
Evaluate them with the same metrics as the predicted Dice (rank correlation with the true Dice, failure
detection AUC), so every claim is a side-by-side comparison.

Neighbourhoods are Chebyshev (a pixel's 8 neighbours in 2D, 26 in 3D), and the image edge is not a boundary.
"""

from __future__ import annotations

import numpy as np
from monai.config import NdarrayOrTensor
from monai.utils import convert_to_numpy
from scipy import ndimage

__all__ = [
    "BASELINES",
    "mean_entropy",
    "foreground_entropy",
    "non_boundary_entropy",
    "mean_mutual_information",
    "pairwise_dice",
    "boundary_band",
]

BASELINES = ("mean_entropy", "foreground_entropy", "non_boundary_entropy", "mean_mutual_information", "pairwise_dice")


def _map(x: NdarrayOrTensor, name: str) -> np.ndarray:
    """A one-channel map ``[1, *spatial]`` as float64 numpy ``[*spatial]``."""
    a = np.asarray(convert_to_numpy(x), dtype=np.float64)
    if a.ndim < 3 or a.shape[0] != 1:
        raise ValueError(f"{name} must be a one-channel map [1, H, W[, D]] of one case, got shape {a.shape}.")
    return a[0]


def _seg(seg: NdarrayOrTensor, spatial: tuple[int, ...]) -> np.ndarray:
    """A segmentation ``[1, *spatial]`` (class indices) or ``[C, *spatial]`` (sigmoid, binary) as int ``[C, ...]``."""
    s = np.asarray(convert_to_numpy(seg))
    if s.ndim < 3 or tuple(s.shape[1:]) != spatial:
        raise ValueError(
            f"seg must be [1 or C, {', '.join(map(str, spatial))}] to match the uncertainty map, got shape "
            f"{s.shape}; resample both onto one grid."
        )
    return s.astype(np.int64)


def _window(ndim: int, radius: int) -> tuple[int, ...]:
    return (2 * radius + 1,) * ndim


def boundary_band(seg: NdarrayOrTensor, width: int = 2) -> np.ndarray:
    """Pixels within ``width`` of the predicted boundary (``width`` pixels on each side of it).

    A pixel is in the band if its ``(2 width + 1)``-wide Chebyshev window holds two different labels (any pair
    of classes, so boundaries between foreground classes count too). The image edge is not a boundary (edge
    values are repeated outward).

    Args:
        seg: ``[1, *spatial]`` class indices, or ``[C, *spatial]`` binary channels (the band is their union).
        width: half-width in pixels, >= 1.

    Returns:
        bool ``[*spatial]``.
    """
    if width < 1:
        raise ValueError(f"width must be >= 1 pixel, got {width}.")
    s = np.asarray(convert_to_numpy(seg)).astype(np.int64)
    if s.ndim < 3:
        raise ValueError(f"seg must be channel-first [1 or C, H, W[, D]], got shape {s.shape}.")
    size = _window(s.ndim - 1, width)
    band = np.zeros(s.shape[1:], dtype=bool)
    for channel in s:
        hi = ndimage.maximum_filter(channel, size=size, mode="nearest")
        lo = ndimage.minimum_filter(channel, size=size, mode="nearest")
        band |= hi != lo
    return band


def mean_entropy(entropy: NdarrayOrTensor) -> float:
    """Negated mean predictive entropy over the whole image (Zenk et al. 2024).

    Raw definition: ``u = mean_x H(x)`` with ``H`` the predictive entropy (nats) of the mean class probability.
    Confidence ``= -u`` (<= 0).

    Args:
        entropy: ``[1, H, W[, D]]``, nats.
    """
    return -float(_map(entropy, "entropy").mean())


def foreground_entropy(entropy: NdarrayOrTensor, seg: NdarrayOrTensor, dilation: int = 1) -> float:
    """Negated mean entropy over the predicted foreground, dilated by ``dilation`` pixels.

    Raw definition: ``u = mean_{x in F} H(x)`` with ``F`` the predicted foreground (any class > 0) dilated by
    ``dilation`` pixels (Chebyshev). The default dilation of 1 adds the outer ring of the boundary, so the
    uncertainty on both sides of the predicted edge counts (a thin structure otherwise keeps only half of its
    boundary uncertainty); ``dilation=0`` is the plain foreground. If the predicted foreground is empty, ``F`` is
    the whole image (this case then scores like :func:`mean_entropy`). Confidence ``= -u``.

    Args:
        entropy: ``[1, H, W[, D]]``, nats.
        seg: ``[1, H, W[, D]]`` class indices (or ``[C, ...]`` binary channels).
        dilation: pixels, >= 0.
    """
    if dilation < 0:
        raise ValueError(f"dilation must be >= 0 pixels, got {dilation}.")
    h = _map(entropy, "entropy")
    fg = (_seg(seg, h.shape) > 0).any(axis=0)
    if not fg.any():
        return -float(h.mean())
    if dilation > 0:
        fg = ndimage.maximum_filter(fg, size=_window(h.ndim, dilation), mode="constant", cval=False)
    return -float(h[fg].mean())


def non_boundary_entropy(entropy: NdarrayOrTensor, seg: NdarrayOrTensor, width: int = 2) -> float:
    """Negated mean entropy away from the predicted boundary.

    Raw definition: ``u = mean_{x not in B} H(x)`` with ``B`` = :func:`boundary_band` ``(seg, width)``, the
    pixels within ``width`` of the predicted boundary on either side. Entropy concentrates on any boundary,
    right or wrong; what is left flags uncertainty the boundary does not explain (missed or spurious regions).
    If nothing is left outside the band, or there is no boundary, ``u`` is the mean over the whole image.
    Confidence ``= -u``.

    Args:
        entropy: ``[1, H, W[, D]]``, nats.
        seg: ``[1, H, W[, D]]`` class indices (or ``[C, ...]`` binary channels).
        width: pixels, >= 1.
    """
    h = _map(entropy, "entropy")
    keep = ~boundary_band(_seg(seg, h.shape), width)
    return -float(h[keep].mean() if keep.any() else h.mean())


def mean_mutual_information(mi: NdarrayOrTensor) -> float:
    """Negated mean mutual information (BALD, epistemic part of the entropy) over the whole image.

    Raw definition: ``u = mean_x MI(x)``, ``MI = H[mean p] - mean H[p]``, nats, >= 0. Confidence ``= -u``.

    Args:
        mi: ``[1, H, W[, D]]``, nats.
    """
    return -float(_map(mi, "mutual_information").mean())


def pairwise_dice(pairwise_dice: NdarrayOrTensor) -> float:
    """Mean over foreground classes of the pooled pairwise Dice between the samples' segmentations.

    Raw definition (Roy et al. 2019): for class ``k``, the Dice between every pair of sample segmentations,
    pooled; already a confidence in [0, 1] (samples agree -> 1), so it is not negated.

    Args:
        pairwise_dice: ``[K]`` (``K = num_classes - 1``), as the stage-1 inferer writes it.
    """
    a = np.asarray(convert_to_numpy(pairwise_dice), dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError("pairwise_dice is empty; it must hold one value per foreground class, shape [K].")
    return float(a.mean())
