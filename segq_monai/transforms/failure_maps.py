"""Operations on class-probability maps that the synthetic failure kinds (:mod:`.failure_kinds`) are made of.

A map ``prob`` is float64 ``[C, *spatial]`` (2D or 3D), softmax: >= 0, summing to 1 over ``C``; channel 0 is the
background. Every operation returns such a map: probability that a move leaves missing is given to the background.

Grey-scale erosion and dilation use the threshold decomposition (a flat ball commutes with thresholding): one
Euclidean distance transform per probability level gives the exact dilation of the map quantised to those levels,
at a cost independent of the radius (``scipy.ndimage.grey_dilation`` with a ball costs ``O(N r^3)`` in 3D).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from scipy import ndimage

from segq_monai.metrics.quality import as_class_indices

__all__ = [
    "BLOB_RAMP",
    "blob_distance",
    "blob_weight",
    "equivalent_radius",
    "fill_background",
    "level_distances",
    "morph_prob",
    "move_probability",
    "random_voxel",
    "smooth_noise",
    "soft_one_hot",
    "translate_prob",
    "voxel_grid",
]

# probability levels of the threshold decomposition: a uniform grid avoiding 0.5 (no argmax ties in a binary map)
# and levels close to 1, so a dilated interior stays confident (entropy near 0, as the interior it copies)
_LEVELS = np.concatenate([(np.arange(16) + 0.5) / 16, 1.0 - np.array([1e-2, 1e-3, 1e-4, 1e-6])])
#: width of a blob's soft edge, voxels
BLOB_RAMP = 1.0


def soft_one_hot(label: NdarrayOrTensor, num_classes: int, sigma: float = 1.0) -> torch.Tensor:
    """Class probabilities from a label: the one-hot label, Gaussian-smoothed per channel and renormalised.

    Args:
        label: ``[1, H, W[, D]]`` class indices in ``[0, num_classes - 1]``.
        num_classes: classes including background (>= 2).
        sigma: Gaussian standard deviation in voxels (>= 0; 0 gives the hard one-hot map).

    Returns:
        float32 ``[num_classes, H, W[, D]]``, sums to 1 over channels.
    """
    if sigma < 0:
        raise ValueError(f"sigma is a Gaussian standard deviation in voxels and must be >= 0, got {sigma}.")
    lab = as_class_indices(label, "label", num_classes).cpu().numpy()
    if lab.ndim not in (3, 4) or lab.shape[0] != 1:
        raise ValueError(f"label must be a class-index map [1, H, W[, D]], got shape {tuple(lab.shape)}.")
    p = np.stack([(lab[0] == c).astype(np.float64) for c in range(num_classes)])
    if sigma > 0:
        p = np.stack([ndimage.gaussian_filter(c, sigma, mode="nearest") for c in p])
        p = np.clip(p, 0.0, None)
        p /= p.sum(0, keepdims=True)
    return torch.as_tensor(p, dtype=torch.float32)


def fill_background(p: np.ndarray) -> np.ndarray:
    """``p`` ``[C, *spatial]`` clipped at 0, with the probability that an interpolation left missing (outside the
    image) given to the background channel, renormalised to sum to 1."""
    p = np.clip(p, 0.0, None)
    p[0] += np.clip(1.0 - p.sum(0), 0.0, None)
    return p / p.sum(0, keepdims=True)


def translate_prob(prob: np.ndarray, offset: Sequence[float]) -> np.ndarray:
    """Translate a probability map ``[C, *spatial]`` by ``offset`` voxels (one per spatial axis, linear
    interpolation: exact for integer offsets); what enters the field of view is background."""
    p = np.stack([ndimage.shift(c, offset, order=1, mode="constant", cval=0.0) for c in prob])
    return fill_background(p)


def level_distances(p: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """``(t, distance in voxels to the nearest voxel with p >= t)`` for each level ``t`` that ``p`` ``[*spatial]``
    reaches, and for ``t = max(p)``, so that the dilation reproduces the map's top value exactly."""
    levels = np.unique(np.append(_LEVELS[_LEVELS < p.max()], p.max()))
    return [(float(t), ndimage.distance_transform_edt(p < t)) for t in levels]


def _set_channel(prob: np.ndarray, k: int, pk: np.ndarray) -> np.ndarray:
    """Replace foreground channel ``k`` (>= 1) by ``pk`` and rescale the other channels to fill ``1 - pk`` in
    their old proportions (all to the background where they held nothing)."""
    others = np.delete(prob, k, axis=0)  # channel 0 is still the background
    total = others.sum(0)
    share = np.where(total > 1e-12, others / np.maximum(total, 1e-12), 0.0)
    share[0] = np.where(total > 1e-12, share[0], 1.0)
    return np.insert(share * (1.0 - pk), k, pk, axis=0)


def morph_prob(
    prob: np.ndarray,
    cls: int,
    radius: float,
    dilate: bool = True,
    distances: list[tuple[float, np.ndarray]] | None = None,
) -> np.ndarray:
    """Grey-scale dilation (or erosion) of channel ``cls`` of ``prob`` ``[C, *spatial]`` with a ball of
    ``radius`` voxels, then renormalisation of the other channels.

    The dilation is the threshold decomposition: at each level ``t`` the set ``{p >= t}`` is dilated with the
    ball (distance transform ``<= radius``); the result is ``max(p, largest such t)``, exact where ``p`` holds
    only those levels (e.g. a hard one-hot map). Erosion is the dual, ``1 - dilate(1 - p)``. ``distances``: the
    output of :func:`level_distances` for the channel (or its complement), to reuse across radii.
    """
    pk = prob[cls] if dilate else 1.0 - prob[cls]
    dist = level_distances(pk) if distances is None else distances
    out = pk.copy()
    for t, d in dist:
        out = np.where(d <= radius, np.maximum(out, t), out)
    return _set_channel(prob, cls, out if dilate else 1.0 - out)


def move_probability(prob: np.ndarray, w: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Move the fraction ``w`` (``[*spatial]`` in [0, 1]) of channel ``src``'s probability to channel ``dst``."""
    out = prob.copy()
    moved = w * prob[src]
    out[src] -= moved
    out[dst] += moved
    return out


def blob_weight(radius: float, d: np.ndarray) -> np.ndarray:
    """Soft blob weight of the distance-like map ``d``: 1 where ``d <= radius - BLOB_RAMP``, 0 where
    ``d >= radius``, linear between (0 everywhere at radius 0)."""
    return np.clip((radius - d) / BLOB_RAMP, 0.0, 1.0)


def voxel_grid(shape: Sequence[int]) -> np.ndarray:
    """``[len(shape), *shape]`` float64: the coordinates (voxels) of every voxel, one channel per axis."""
    return np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"))


def smooth_noise(shape: Sequence[int], scale: float, rng: np.random.RandomState) -> np.ndarray:
    """A smooth random field in [-1, 1] (white noise, Gaussian-filtered with ``scale`` voxels)."""
    n = ndimage.gaussian_filter(rng.normal(size=tuple(shape)), scale, mode="wrap")
    return n / max(np.abs(n).max(), 1e-12)


def blob_distance(shape: Sequence[int], centre: np.ndarray, scale: float, rng: np.random.RandomState) -> np.ndarray:
    """Distance-like map of an irregular blob around ``centre``: an axis-aligned ellipse norm (semi-axes ratios in
    [0.6, 1.4]) times ``1 + 0.3 x`` a smooth noise field (``scale`` voxels); its sub-level sets are the blobs."""
    axes = rng.uniform(0.6, 1.4, size=len(shape))
    g = voxel_grid(shape) - centre.reshape((-1,) + (1,) * len(shape))
    ell = np.sqrt(sum((g[i] / axes[i]) ** 2 for i in range(len(shape))))
    return ell * (1.0 + 0.3 * smooth_noise(shape, max(scale, 1.0), rng))


def equivalent_radius(mask: np.ndarray) -> float:
    """Radius in voxels of the ball (disk in 2D) with as many voxels as ``mask``."""
    nd = mask.ndim
    unit = math.pi if nd == 2 else 4.0 / 3.0 * math.pi
    return float((mask.sum() / unit) ** (1.0 / nd))


def random_voxel(mask: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """The coordinates (float64 ``[nd]``) of a voxel of ``mask`` drawn uniformly."""
    idx = np.argwhere(mask)
    return idx[rng.randint(len(idx))].astype(np.float64)
