"""The synthetic failure kinds: one function per kind, and the registry :data:`FAILURE_KIND_REGISTRY`.

A kind acts on a class-probability map ``prob`` ``[C, *spatial]`` (softmax, float64; :mod:`.failure_maps`) through
a :class:`FailureTarget`: the map, its segmentation ``argmax(prob)``, a foreground class ``k`` drawn from those
present in it (and in the label where possible), ``k``'s mask, the radius ``r`` of a ball of the mask's size, and
the random state. The kind draws its own random parameters from that state once and returns ``severity -> prob'``:
a function of ``s`` in [0, 1] (0 returns ``prob`` unchanged) whose damage grows with ``s`` for fixed draws, so a
bisection on ``s`` meets a target Dice (:class:`segq_monai.transforms.failures.SegmentationFailure`).

======================  =================================================================================
kind                    what severity ``s`` sets
======================  =================================================================================
``erode``               grey-scale erosion of channel ``k`` with a ball of radius ``s x`` (inradius + 1)
``dilate``              grey-scale dilation of channel ``k`` with a ball of radius ``s x (2 r + 1)``
``shift``               translation of the whole map by ``s x`` the foreground's extent along a random direction
``affine``              rotation (up to 90 degrees per plane), scale (x 1.8 or / 1.8 per axis) and shear (up to
                        0.5) about the image centre, each ``x s`` (MONAI ``Affine``)
``hole``                a smooth irregular blob around a voxel of ``k``, radius ``s x`` its farthest voxel of
                        ``k``, moved from ``k`` to background
``remove_component``    one connected component of ``k``, cut away from one side over ``s x`` its length along a
                        random direction (``s = 1``: the whole component) and moved to background
``spurious_component``  a smooth blob of radius ``s x (2 r + 1)`` in the background, set to class ``k``
``boundary_noise``      a smooth random displacement field (Gaussian-filtered noise), amplitude ``s x r`` voxels
``class_swap``          a blob in class ``a = k`` (radius ``s x`` its farthest voxel of ``a``) reassigned to another
                        foreground class ``b``; needs ``num_classes >= 3``
======================  =================================================================================

:func:`failure_function` draws the target and returns the kind's function; :func:`corrupt_prob` is one failure at
one severity, with its inputs checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.transforms import Affine
from monai.utils import convert_to_tensor
from scipy import ndimage

from segq_monai.metrics.quality import as_class_indices
from segq_monai.transforms.failure_maps import (
    BLOB_RAMP,
    blob_distance,
    blob_weight,
    equivalent_radius,
    fill_background,
    level_distances,
    morph_prob,
    move_probability,
    random_voxel,
    smooth_noise,
    translate_prob,
    voxel_grid,
)

__all__ = [
    "FAILURE_KINDS",
    "FAILURE_KIND_REGISTRY",
    "FailureKind",
    "FailureTarget",
    "UnusableCase",
    "check_failure_inputs",
    "corrupt_prob",
    "failure_function",
]

#: ``severity in [0, 1] -> prob'``, float64 ``[C, *spatial]`` summing to 1 over ``C`` (severity 0: ``prob``)
SeverityMap = Callable[[float], np.ndarray]


class UnusableCase(ValueError):
    """A kind cannot act on this case (e.g. ``class_swap`` on a binary task); ``reason`` is a short counter key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class FailureTarget(NamedTuple):
    """The case a kind acts on, and the draws that every kind shares.

    ``prob`` float64 ``[C, *spatial]`` (sums to 1 over ``C``), ``seg`` ``[*spatial]`` its ``argmax``, ``cls`` the
    foreground class ``k`` to damage, ``mask`` ``seg == k``, ``radius`` the radius ``r`` (voxels) of a ball with as
    many voxels as ``mask``, ``num_classes`` ``C``, ``rng`` the random state the kind draws its parameters from.
    """

    prob: np.ndarray
    seg: np.ndarray
    cls: int
    mask: np.ndarray
    radius: float
    num_classes: int
    rng: np.random.RandomState


# ------------------------------------------------------------------------------------------------ the kinds
def erode(t: FailureTarget) -> SeverityMap:
    """Grey-scale erosion of channel ``k``, radius ``s x`` (its mask's largest inner distance + 1): ``s = 1``
    erases ``k`` from the segmentation."""
    dist = level_distances(1.0 - t.prob[t.cls])
    r_max = float(ndimage.distance_transform_edt(t.mask).max()) + 1.0
    return lambda s: morph_prob(t.prob, t.cls, s * r_max, False, dist)


def dilate(t: FailureTarget) -> SeverityMap:
    """Grey-scale dilation of channel ``k``, radius ``s x (2 r + 1)``."""
    dist = level_distances(t.prob[t.cls])
    r_max = 2.0 * t.radius + 1.0
    return lambda s: morph_prob(t.prob, t.cls, s * r_max, True, dist)


def shift(t: FailureTarget) -> SeverityMap:
    """Translation of the whole map by ``s x extent`` along a random unit direction ``u``; ``extent`` is the
    foreground's bounding box projected on ``|u|``, + 1 voxel."""
    u = t.rng.normal(size=t.prob.ndim - 1)
    u /= np.linalg.norm(u)
    idx = np.argwhere(t.seg > 0)
    extent = float(np.abs(u) @ (idx.max(0) - idx.min(0) + 1)) + 1.0
    return lambda s: t.prob if s == 0 else translate_prob(t.prob, s * extent * u)


def affine(t: FailureTarget) -> SeverityMap:
    """Rotation, scale and shear about the image centre, each drawn once at full strength and scaled by ``s``."""
    nd = t.prob.ndim - 1
    n_rot = 1 if nd == 2 else 3
    angles = t.rng.choice([-1.0, 1.0], n_rot) * t.rng.uniform(0.5, 1.0, n_rot) * (math.pi / 2)
    log_scale = t.rng.choice([-1.0, 1.0], nd) * t.rng.uniform(0.3, 1.0, nd) * math.log(1.8)
    shear = t.rng.uniform(-0.5, 0.5, 2 if nd == 2 else 6)

    def _affine(s: float) -> np.ndarray:
        if s == 0:
            return t.prob
        transform = Affine(
            rotate_params=(s * angles).tolist(),
            shear_params=(s * shear).tolist(),
            scale_params=np.exp(s * log_scale).tolist(),
            mode="bilinear",
            padding_mode="zeros",
            dtype=np.float64,
            image_only=True,
        )
        return fill_background(np.asarray(convert_to_tensor(transform(t.prob), track_meta=False), dtype=np.float64))

    return _affine


def _blob_in_class(t: FailureTarget, dst: int) -> SeverityMap:
    """A blob around a voxel of ``k`` (radius ``s x`` its farthest voxel of ``k``) moved from ``k`` to ``dst``:
    ``s = 1`` moves all of ``k``'s mask."""
    d = blob_distance(t.prob.shape[1:], random_voxel(t.mask, t.rng), t.radius / 2, t.rng)
    r_max = float(d[t.mask].max()) + BLOB_RAMP
    return lambda s: move_probability(t.prob, blob_weight(s * r_max, d), t.cls, dst)


def hole(t: FailureTarget) -> SeverityMap:
    """A blob of ``k`` moved to the background."""
    return _blob_in_class(t, 0)


def class_swap(t: FailureTarget) -> SeverityMap:
    """A blob of ``k`` moved to another foreground class, drawn uniformly."""
    others = [c for c in range(1, t.num_classes) if c != t.cls]
    return _blob_in_class(t, others[t.rng.randint(len(others))])


def remove_component(t: FailureTarget) -> SeverityMap:
    """One connected component of ``k``, drawn uniformly, cut away from one side along a random direction over
    ``s x`` its length, with the soft rim nearer to it than to the rest of ``k``; ``s = 1``: all of it."""
    comps, n = ndimage.label(t.mask)
    j = 1 + t.rng.randint(n)
    u = t.rng.normal(size=t.prob.ndim - 1)
    u /= np.linalg.norm(u)
    # voxels nearer to component j than to any other part of class k: its soft boundary goes with it
    nearest = ndimage.distance_transform_edt(~t.mask, return_distances=False, return_indices=True)
    own = comps[tuple(nearest)] == j
    proj = np.tensordot(u, voxel_grid(t.prob.shape[1:]), axes=1)
    lo, hi = proj[comps == j].min(), proj[comps == j].max()
    d = np.clip(proj - lo, 0.0, None) + BLOB_RAMP  # 0 at severity 0, also in the soft rim before lo
    r_max = float(hi - lo) + 2 * BLOB_RAMP
    return lambda s: move_probability(t.prob, blob_weight(s * r_max, d) * own, t.cls, 0)


def spurious_component(t: FailureTarget) -> SeverityMap:
    """A blob of radius ``s x (2 r + 1)`` around a background voxel at least ``max(2, r / 4)`` voxels from the
    foreground, set to class ``k``."""
    outside = ndimage.distance_transform_edt(t.seg == 0)
    far = outside >= max(2.0, 0.25 * t.radius)
    if not far.any():
        raise UnusableCase("no_background", "no background voxel lies away from the foreground")
    d = blob_distance(t.prob.shape[1:], random_voxel(far, t.rng), t.radius / 2, t.rng)
    r_max = 2.0 * t.radius + 1.0 + BLOB_RAMP
    return lambda s: move_probability(t.prob, blob_weight(s * r_max, d), 0, t.cls)


def boundary_noise(t: FailureTarget) -> SeverityMap:
    """A smooth random displacement field of largest length ``s x r`` voxels (linear interpolation; what comes
    from outside the image is background)."""
    shape, nd = t.prob.shape[1:], t.prob.ndim - 1
    field = np.stack([smooth_noise(shape, max(2.0, t.radius / 2), t.rng) for _ in range(nd)])
    field /= max(np.sqrt((field**2).sum(0)).max(), 1e-12)
    grid = voxel_grid(shape)

    def _warp(s: float) -> np.ndarray:
        if s == 0:
            return t.prob
        coords = grid + s * t.radius * field
        p = np.stack([ndimage.map_coordinates(c, coords, order=1, mode="constant", cval=0.0) for c in t.prob])
        return fill_background(p)

    return _warp


# ------------------------------------------------------------------------------------------------ the registry
class FailureKind(NamedTuple):
    """A kind: ``corrupt(target) -> severity map`` and the classes it needs, background included."""

    corrupt: Callable[[FailureTarget], SeverityMap]
    min_classes: int = 2


#: every kind, by name, in the order :class:`~segq_monai.transforms.failures.SegmentationFailure` draws from
FAILURE_KIND_REGISTRY: dict[str, FailureKind] = {
    "erode": FailureKind(erode),
    "dilate": FailureKind(dilate),
    "shift": FailureKind(shift),
    "affine": FailureKind(affine),
    "hole": FailureKind(hole),
    "remove_component": FailureKind(remove_component),
    "spurious_component": FailureKind(spurious_component),
    "boundary_noise": FailureKind(boundary_noise),
    "class_swap": FailureKind(class_swap, min_classes=3),
}
FAILURE_KINDS: tuple[str, ...] = tuple(FAILURE_KIND_REGISTRY)


def _pick_class(seg: np.ndarray, lab: np.ndarray, rng: np.random.RandomState) -> int:
    """A foreground class present in ``seg`` and in the label (else in ``seg``), drawn uniformly."""
    in_seg = {int(c) for c in np.unique(seg) if c > 0}
    in_lab = {int(c) for c in np.unique(lab) if c > 0}
    pool = sorted(in_seg & in_lab) or sorted(in_seg)
    if not pool:
        raise UnusableCase("empty_prediction", "the segmentation argmax(prob) has no foreground to corrupt")
    return pool[rng.randint(len(pool))]


def failure_function(
    prob: np.ndarray, label: np.ndarray, kind: str, num_classes: int, seed: int | None = None
) -> SeverityMap:
    """Draw the class and the random parameters of ``kind`` from ``seed`` and return ``severity -> prob'``.

    Args:
        prob: float64 ``[C, *spatial]`` (2D or 3D), sums to 1 over channels.
        label: ``[*spatial]`` class indices (used only to prefer a class present in the label).
        kind: one of :data:`FAILURE_KINDS`.
        num_classes: ``C``.
        seed: seeds every random choice (class, direction, blob, field); they do not change with severity.

    Returns:
        a function of severity in [0, 1] giving the corrupted float64 ``[C, *spatial]`` map (severity 0: ``prob``).

    Raises:
        ValueError: unknown kind; :class:`UnusableCase` (a ``ValueError``) when the kind cannot act on this case (no
            foreground in ``argmax(prob)``; ``class_swap`` with fewer than 2 foreground classes).
    """
    if kind not in FAILURE_KIND_REGISTRY:
        raise ValueError(f"kind must be one of {FAILURE_KINDS}, got {kind!r}.")
    entry = FAILURE_KIND_REGISTRY[kind]
    rng = np.random.RandomState(seed)
    seg = prob.argmax(0)
    if num_classes < entry.min_classes:
        raise UnusableCase(
            "needs_two_foreground_classes",
            f"{kind} needs >= {entry.min_classes - 1} foreground classes (num_classes >= {entry.min_classes})",
        )
    k = _pick_class(seg, label, rng)
    mask = seg == k
    return entry.corrupt(FailureTarget(prob, seg, k, mask, equivalent_radius(mask), num_classes, rng))


def check_failure_inputs(
    prob: NdarrayOrTensor, label: NdarrayOrTensor, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``prob`` ``[C, *spatial]`` and ``label`` ``[1, *spatial]``; return float64 prob (renormalised),
    int64 label ``[*spatial]``."""
    p = np.asarray(convert_to_tensor(prob, track_meta=False).detach().cpu().double().numpy())
    if p.ndim not in (3, 4) or p.shape[0] != num_classes:
        raise ValueError(
            f"prob must be class probabilities [C={num_classes}, H, W[, D]], got shape {tuple(p.shape)}; "
            "set num_classes to the number of channels (background included)."
        )
    if tuple(label.shape) != (1,) + p.shape[1:]:
        raise ValueError(
            f"label must be [1, *spatial] on prob's grid {(1,) + p.shape[1:]}, got shape {tuple(label.shape)}; "
            "resample the probabilities onto the label's grid first."
        )
    if not np.isfinite(p).all():
        raise ValueError("prob holds NaN or inf values; check the stage-1 network's output.")
    sums = p.sum(0)
    if p.min() < -1e-6 or np.abs(sums - 1.0).max() > 1e-3:
        raise ValueError(
            f"prob must be softmax probabilities, >= 0 and summing to 1 over channels (got values >= {p.min():.3g}, "
            f"sums in [{sums.min():.4g}, {sums.max():.4g}]); apply a softmax over channels first (sigmoid, "
            "multi-label outputs are not supported)."
        )
    lab = as_class_indices(label, "label", num_classes).cpu().numpy()[0]
    return np.clip(p, 0.0, None) / np.clip(p, 0.0, None).sum(0, keepdims=True), lab


def corrupt_prob(
    prob: NdarrayOrTensor,
    label: NdarrayOrTensor,
    kind: str,
    severity: float,
    num_classes: int,
    seed: int | None = None,
) -> torch.Tensor:
    """One failure of ``kind`` at ``severity`` in [0, 1] (0: ``prob`` unchanged).

    ``prob`` ``[C, *spatial]`` softmax probabilities, ``label`` ``[1, *spatial]``; returns float32
    ``[C, *spatial]`` summing to 1. The same ``seed`` gives the same random parameters at every severity.
    """
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1] (0 = unchanged), got {severity}.")
    p, lab = check_failure_inputs(prob, label, num_classes)
    return torch.as_tensor(failure_function(p, lab, kind, num_classes, seed)(severity), dtype=torch.float32)
