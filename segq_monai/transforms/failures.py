"""Synthetic segmentation failures with an exactly known Dice, to train the stage-2 quality head.

The corruption acts on a class-probability map ``prob`` ``[C, H, W[, D]]`` (softmax: sums to 1 over ``C``), a
stage-1 output or a blurred ground truth (:func:`soft_one_hot`). The corrupted case is what stage 1 would hand to
stage 2: ``seg = argmax(prob')`` and ``entropy = H(prob')`` (nats), so the segmentation boundary lies on an entropy
ridge as at deployment. Its Dice and IoU are computed from ``seg`` against the label
(:func:`segq_monai.metrics.quality.segmentation_quality`), never taken from the requested target.

Each kind is a function of a severity ``s`` in [0, 1] (0 returns ``prob`` unchanged) and of random parameters
drawn once from a seed, so for a fixed seed the damage grows with ``s`` and a bisection on ``s`` meets a target
Dice. ``k`` is a foreground class drawn from those present in ``seg`` (and in the label where possible), ``r`` the
radius of a ball of the same size as its mask:

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
``class_swap``          a blob in class ``a`` (radius ``s x`` its farthest voxel of ``a``) reassigned to another
                        foreground class ``b``; needs ``num_classes >= 3``
======================  =================================================================================

Grey-scale erosion and dilation use the threshold decomposition (a flat ball commutes with thresholding): one
Euclidean distance transform per probability level gives the exact dilation of the map quantised to those levels,
at a cost independent of the radius (``scipy.ndimage.grey_dilation`` with a ball costs ``O(N r^3)`` in 3D). Values
that the interpolation or a blob leaves missing are given to the background, so ``prob'`` still sums to 1.
"""

from __future__ import annotations

import collections
import logging
import math
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import Affine, MapTransform, Randomizable, RandomizableTransform, Transform
from monai.utils import convert_to_dst_type, convert_to_tensor
from scipy import ndimage

from segq_monai.inferers.streaming import entropy
from segq_monai.metrics.quality import as_class_indices, segmentation_quality

__all__ = [
    "FAILURE_KINDS",
    "FailureCase",
    "SegmentationFailure",
    "SegmentationFailureD",
    "SegmentationFailureDict",
    "SegmentationFailured",
    "corrupt_prob",
    "failure_function",
    "morph_prob",
    "soft_one_hot",
    "translate_prob",
]

logger = logging.getLogger(__name__)

FAILURE_KINDS: tuple[str, ...] = (
    "erode",
    "dilate",
    "shift",
    "affine",
    "hole",
    "remove_component",
    "spurious_component",
    "boundary_noise",
    "class_swap",
)

# probability levels of the threshold decomposition: a uniform grid avoiding 0.5 (no argmax ties in a binary map)
# and levels close to 1, so a dilated interior stays confident (entropy near 0, as the interior it copies)
_LEVELS = np.concatenate([(np.arange(16) + 0.5) / 16, 1.0 - np.array([1e-2, 1e-3, 1e-4, 1e-6])])
_RAMP = 1.0  # width of a blob's soft edge, voxels
_BISECTION_STEPS = 8


class FailureCase(NamedTuple):
    """One synthetic (or passed-through) case; all float32 tensors.

    ``prob`` ``[C, *spatial]`` (sums to 1 over C), ``seg`` ``[1, *spatial]`` class indices (``argmax(prob)``),
    ``entropy`` ``[1, *spatial]`` nats, ``dice`` and ``iou`` ``[C - 1]`` of ``seg`` against the label, ``kind``
    the failure kind (``""``: passed through unchanged), ``target`` the mean foreground Dice that was drawn (for
    diagnostics only: ``dice`` is what the case has).
    """

    prob: torch.Tensor
    seg: torch.Tensor
    entropy: torch.Tensor
    dice: torch.Tensor
    iou: torch.Tensor
    kind: str
    target: float = float("nan")


class _Unusable(ValueError):
    """A kind cannot act on this case (e.g. ``class_swap`` on a binary task); ``reason`` is a short counter key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# ----------------------------------------------------------------------------------------- functional core
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


def _fill_background(p: np.ndarray) -> np.ndarray:
    """Give the probability that an interpolation left missing (outside the image) to the background channel."""
    p = np.clip(p, 0.0, None)
    p[0] += np.clip(1.0 - p.sum(0), 0.0, None)
    return p / p.sum(0, keepdims=True)


def translate_prob(prob: np.ndarray, offset: Sequence[float]) -> np.ndarray:
    """Translate a probability map ``[C, *spatial]`` by ``offset`` voxels (one per spatial axis, linear
    interpolation: exact for integer offsets); what enters the field of view is background."""
    p = np.stack([ndimage.shift(c, offset, order=1, mode="constant", cval=0.0) for c in prob])
    return _fill_background(p)


def _level_distances(p: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """``(t, distance in voxels to the nearest voxel with p >= t)`` for each level ``t`` that ``p`` reaches, and
    for ``t = max(p)``, so that the dilation reproduces the map's top value exactly."""
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
    output of ``_level_distances`` for the channel (or its complement), to reuse across radii.
    """
    pk = prob[cls] if dilate else 1.0 - prob[cls]
    dist = _level_distances(pk) if distances is None else distances
    out = pk.copy()
    for t, d in dist:
        out = np.where(d <= radius, np.maximum(out, t), out)
    return _set_channel(prob, cls, out if dilate else 1.0 - out)


def _move(prob: np.ndarray, w: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Move the fraction ``w`` (``[*spatial]`` in [0, 1]) of channel ``src``'s probability to channel ``dst``."""
    out = prob.copy()
    moved = w * prob[src]
    out[src] -= moved
    out[dst] += moved
    return out


def _ramp(radius: float, d: np.ndarray) -> np.ndarray:
    """Soft blob weight: 1 where ``d <= radius - _RAMP``, 0 where ``d >= radius``, linear between (0 at radius 0)."""
    return np.clip((radius - d) / _RAMP, 0.0, 1.0)


def _grid(shape: Sequence[int]) -> np.ndarray:
    return np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"))


def _smooth_noise(shape: Sequence[int], scale: float, rng: np.random.RandomState) -> np.ndarray:
    """A smooth random field in [-1, 1] (white noise, Gaussian-filtered with ``scale`` voxels)."""
    n = ndimage.gaussian_filter(rng.normal(size=tuple(shape)), scale, mode="wrap")
    return n / max(np.abs(n).max(), 1e-12)


def _blob_distance(shape: Sequence[int], centre: np.ndarray, scale: float, rng: np.random.RandomState) -> np.ndarray:
    """Distance-like map of an irregular blob around ``centre``: an axis-aligned ellipse norm (semi-axes ratios in
    [0.6, 1.4]) times ``1 + 0.3 x`` a smooth noise field (``scale`` voxels); its sub-level sets are the blobs."""
    axes = rng.uniform(0.6, 1.4, size=len(shape))
    g = _grid(shape) - centre.reshape((-1,) + (1,) * len(shape))
    ell = np.sqrt(sum((g[i] / axes[i]) ** 2 for i in range(len(shape))))
    return ell * (1.0 + 0.3 * _smooth_noise(shape, max(scale, 1.0), rng))


def _equivalent_radius(mask: np.ndarray) -> float:
    """Radius in voxels of the ball (disk in 2D) with as many voxels as ``mask``."""
    nd = mask.ndim
    unit = math.pi if nd == 2 else 4.0 / 3.0 * math.pi
    return float((mask.sum() / unit) ** (1.0 / nd))


def _random_voxel(mask: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    idx = np.argwhere(mask)
    return idx[rng.randint(len(idx))].astype(np.float64)


def _pick_class(seg: np.ndarray, lab: np.ndarray, num_classes: int, rng: np.random.RandomState) -> int:
    """A foreground class present in ``seg`` and in the label (else in ``seg``), drawn uniformly."""
    in_seg = {int(c) for c in np.unique(seg) if c > 0}
    in_lab = {int(c) for c in np.unique(lab) if c > 0}
    pool = sorted(in_seg & in_lab) or sorted(in_seg)
    if not pool:
        raise _Unusable("empty_prediction", "the segmentation argmax(prob) has no foreground to corrupt")
    return pool[rng.randint(len(pool))]


def failure_function(
    prob: np.ndarray, label: np.ndarray, kind: str, num_classes: int, seed: int | None = None
) -> Callable[[float], np.ndarray]:
    """Draw the random parameters of ``kind`` from ``seed`` and return ``severity -> prob'``.

    Args:
        prob: float64 ``[C, *spatial]`` (2D or 3D), sums to 1 over channels.
        label: ``[*spatial]`` class indices (used only to prefer a class present in the label).
        kind: one of :data:`FAILURE_KINDS`.
        num_classes: ``C``.
        seed: seeds every random choice (class, direction, blob, field); they do not change with severity.

    Returns:
        a function of severity in [0, 1] giving the corrupted float64 ``[C, *spatial]`` map (severity 0: ``prob``).

    Raises:
        ValueError: unknown kind, or the kind cannot act on this case (no foreground in ``argmax(prob)``;
            ``class_swap`` with fewer than 2 foreground classes).
    """
    if kind not in FAILURE_KINDS:
        raise ValueError(f"kind must be one of {FAILURE_KINDS}, got {kind!r}.")
    rng = np.random.RandomState(seed)
    shape, nd = prob.shape[1:], prob.ndim - 1
    seg = prob.argmax(0)
    if kind == "class_swap" and num_classes < 3:
        raise _Unusable("needs_two_foreground_classes", "class_swap needs >= 2 foreground classes (num_classes >= 3)")
    k = _pick_class(seg, label, num_classes, rng)
    mask = seg == k
    r_eq = _equivalent_radius(mask)

    if kind in ("erode", "dilate"):
        dilate = kind == "dilate"
        dist = _level_distances(prob[k] if dilate else 1.0 - prob[k])
        r_max = 2.0 * r_eq + 1.0 if dilate else float(ndimage.distance_transform_edt(mask).max()) + 1.0
        return lambda s: morph_prob(prob, k, s * r_max, dilate, dist)

    if kind == "shift":
        u = rng.normal(size=nd)
        u /= np.linalg.norm(u)
        idx = np.argwhere(seg > 0)
        extent = float(np.abs(u) @ (idx.max(0) - idx.min(0) + 1)) + 1.0
        return lambda s: prob if s == 0 else translate_prob(prob, s * extent * u)

    if kind == "affine":
        n_rot = 1 if nd == 2 else 3
        angles = rng.choice([-1.0, 1.0], n_rot) * rng.uniform(0.5, 1.0, n_rot) * (math.pi / 2)
        log_scale = rng.choice([-1.0, 1.0], nd) * rng.uniform(0.3, 1.0, nd) * math.log(1.8)
        shear = rng.uniform(-0.5, 0.5, 2 if nd == 2 else 6)

        def _affine(s: float) -> np.ndarray:
            if s == 0:
                return prob
            t = Affine(
                rotate_params=(s * angles).tolist(),
                shear_params=(s * shear).tolist(),
                scale_params=np.exp(s * log_scale).tolist(),
                mode="bilinear",
                padding_mode="zeros",
                dtype=np.float64,
                image_only=True,
            )
            return _fill_background(np.asarray(convert_to_tensor(t(prob), track_meta=False), dtype=np.float64))

        return _affine

    if kind in ("hole", "class_swap"):
        src = k
        dst = 0
        if kind == "class_swap":
            others = [c for c in range(1, num_classes) if c != k]
            dst = others[rng.randint(len(others))]
        d = _blob_distance(shape, _random_voxel(mask, rng), r_eq / 2, rng)
        r_max = float(d[mask].max()) + _RAMP
        return lambda s: _move(prob, _ramp(s * r_max, d), src, dst)

    if kind == "remove_component":
        comps, n = ndimage.label(mask)
        j = 1 + rng.randint(n)
        u = rng.normal(size=nd)
        u /= np.linalg.norm(u)
        # voxels nearer to component j than to any other part of class k: its soft boundary goes with it
        nearest = ndimage.distance_transform_edt(~mask, return_distances=False, return_indices=True)
        own = comps[tuple(nearest)] == j
        proj = np.tensordot(u, _grid(shape), axes=1)
        lo, hi = proj[comps == j].min(), proj[comps == j].max()
        d = np.clip(proj - lo, 0.0, None) + _RAMP  # 0 at severity 0, also in the soft rim before lo
        r_max = float(hi - lo) + 2 * _RAMP
        return lambda s: _move(prob, _ramp(s * r_max, d) * own, k, 0)

    if kind == "spurious_component":
        outside = ndimage.distance_transform_edt(seg == 0)
        far = outside >= max(2.0, 0.25 * r_eq)
        if not far.any():
            raise _Unusable("no_background", "no background voxel lies away from the foreground")
        d = _blob_distance(shape, _random_voxel(far, rng), r_eq / 2, rng)
        r_max = 2.0 * r_eq + 1.0 + _RAMP
        return lambda s: _move(prob, _ramp(s * r_max, d), 0, k)

    # boundary_noise
    field = np.stack([_smooth_noise(shape, max(2.0, r_eq / 2), rng) for _ in range(nd)])
    field /= max(np.sqrt((field**2).sum(0)).max(), 1e-12)
    grid = _grid(shape)

    def _warp(s: float) -> np.ndarray:
        if s == 0:
            return prob
        coords = grid + s * r_eq * field
        p = np.stack([ndimage.map_coordinates(c, coords, order=1, mode="constant", cval=0.0) for c in prob])
        return _fill_background(p)

    return _warp


def _check_inputs(prob: NdarrayOrTensor, label: NdarrayOrTensor, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``prob`` ``[C, *spatial]`` and ``label`` ``[1, *spatial]``; return float64 prob, int64 label
    ``[*spatial]``."""
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
    p, lab = _check_inputs(prob, label, num_classes)
    return torch.as_tensor(failure_function(p, lab, kind, num_classes, seed)(severity), dtype=torch.float32)


# ---------------------------------------------------------------------------------------------- transforms
class SegmentationFailure(Randomizable, Transform):
    """Synthetic failure with a Dice drawn uniformly in ``dice_range``, exactly measured.

    Each call draws a target Dice in ``dice_range``, a kind among ``kinds`` and a seed, then bisects the severity
    (8 steps) for the mean foreground Dice of ``argmax(prob')`` closest to the target. If the best Dice of that
    kind is farther than ``tolerance`` from the target, or the kind cannot act on the case, the other kinds are
    tried in random order; if none works (or the label has no foreground, or the target lies above the input's
    own Dice) the case passes through unchanged with ``kind = ""``. Every skip is counted in ``skipped``
    (a ``collections.Counter`` by reason, e.g. ``"empty_label"``, ``"class_swap:needs_two_foreground_classes"``,
    ``"shift:unreachable"``, ``"target_above_input"``, ``"pass_through"``) and warned about.

    Args:
        num_classes: classes including background (>= 2).
        kinds: failure kinds to draw from, a subset of :data:`FAILURE_KINDS`.
        dice_range: ``(low, high)`` in [0, 1], the range of target mean foreground Dice.
        tolerance: largest accepted distance between the achieved and the target Dice.
        multi_label: must be False (softmax outputs only).

    ``__call__(prob, label)``: ``prob`` ``[C, H, W[, D]]`` softmax probabilities, ``label`` ``[1, H, W[, D]]``
    class indices (numpy or torch) -> :class:`FailureCase` of float32 tensors.

    Example::

        failure = SegmentationFailure(num_classes=2).set_random_state(0)
        case = failure(soft_one_hot(label, 2), label)  # case.dice: achieved Dice, uniform in [0, 1] over calls
    """

    def __init__(
        self,
        num_classes: int,
        kinds: Sequence[str] = FAILURE_KINDS,
        dice_range: tuple[float, float] = (0.0, 1.0),
        tolerance: float = 0.05,
        multi_label: bool = False,
    ) -> None:
        if multi_label:
            raise ValueError(
                "SegmentationFailure corrupts softmax probabilities only; multi_label=True (sigmoid outputs) is not "
                "supported: pass multi_label=False and a [C, *spatial] softmax map."
            )
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}.")
        bad = [k for k in kinds if k not in FAILURE_KINDS]
        if bad or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {FAILURE_KINDS}, got {list(kinds)}.")
        lo, hi = dice_range
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"dice_range must be (low, high) with 0 <= low <= high <= 1, got {dice_range}.")
        if tolerance <= 0:
            raise ValueError(f"tolerance is a Dice distance and must be > 0, got {tolerance}.")
        self.num_classes = num_classes
        self.kinds = tuple(kinds)
        self.dice_range = (float(lo), float(hi))
        self.tolerance = float(tolerance)
        self.skipped: collections.Counter[str] = collections.Counter()
        self._target, self._order, self._seed = 0.0, list(self.kinds), 0

    def randomize(self, data: object = None) -> None:
        self._target = float(self.R.uniform(*self.dice_range))
        self._order = [self.kinds[i] for i in self.R.permutation(len(self.kinds))]
        self._seed = int(self.R.randint(2**31 - 1))

    def _skip(self, reason: str, detail: str) -> None:
        """Count a skip; warn with a fixed text per reason (Python shows each once), log the details."""
        self.skipped[reason] += 1
        warnings.warn(f"SegmentationFailure skipped ({reason}); counts by reason in .skipped", stacklevel=3)
        logger.debug("SegmentationFailure skipped (%s): %s", reason, detail)

    def _case(self, p: np.ndarray, lab: torch.Tensor, kind: str) -> FailureCase:
        prob = torch.as_tensor(p, dtype=torch.float32)
        seg = torch.as_tensor(p.argmax(0)[None])
        dice, iou = segmentation_quality(seg, lab, self.num_classes)
        return FailureCase(prob, seg.float(), entropy(torch.as_tensor(p)[None])[0].float(), dice, iou, kind)

    def __call__(self, prob: NdarrayOrTensor, label: NdarrayOrTensor) -> FailureCase:
        p, lab_np = _check_inputs(prob, label, self.num_classes)
        lab = torch.as_tensor(lab_np[None])
        self.randomize()
        base = self._case(p, lab, "")._replace(target=self._target)
        if not (lab_np > 0).any():
            self._skip("empty_label", "the label has no foreground; the case passes through unchanged")
            return base
        target, tol = self._target, self.tolerance
        if float(base.dice.mean()) < target - tol:
            self._skip("target_above_input", f"target Dice {target:.3f} > the input's {float(base.dice.mean()):.3f}")
            return base
        for kind in self._order:
            try:
                fn = failure_function(p, lab_np, kind, self.num_classes, self._seed)
            except _Unusable as e:
                self._skip(f"{kind}:{e.reason}", str(e))
                continue
            best = self._bisect(fn, target, base, lab)
            if abs(float(best.dice.mean()) - target) <= tol:
                return best._replace(kind=kind, target=target)
            self._skip(f"{kind}:unreachable", f"best Dice {float(best.dice.mean()):.3f} for target {target:.3f}")
        self._skip("pass_through", f"no kind of {self._order} reached target Dice {target:.3f}")
        return base

    def _bisect(
        self, fn: Callable[[float], np.ndarray], target: float, base: FailureCase, lab: torch.Tensor
    ) -> FailureCase:
        """Severity bisection, assuming the Dice falls with severity; returns the case closest to ``target``."""
        best, lo, hi = base, 0.0, 1.0
        for s in [1.0] + [None] * _BISECTION_STEPS:
            s = (lo + hi) / 2 if s is None else s
            case = self._case(fn(s), lab, "")
            dice = float(case.dice.mean())
            if abs(dice - target) < abs(float(best.dice.mean()) - target):
                best = case
            if s == 1.0 and dice > target + self.tolerance:
                break  # even the strongest failure of this kind stays above the target
            if abs(dice - target) < self.tolerance / 10:
                break
            lo, hi = (s, hi) if dice > target else (lo, s)
        return best


class SegmentationFailured(RandomizableTransform, MapTransform):
    """Dictionary twin of :class:`SegmentationFailure`, writing the keys that stage-2 training reads.

    Args:
        num_classes: classes including background (>= 2).
        prob_key: ``[C, *spatial]`` softmax probabilities (read when ``source="prob"``; written when corrupted).
        label_key: ``[1, *spatial]`` ground-truth class indices.
        prob: probability of corrupting a case; otherwise it passes through unchanged (``failure = ""``).
        source: ``"prob"`` corrupts ``d[prob_key]`` (a stage-1 output); ``"label"`` corrupts
            :func:`soft_one_hot` of the label with ``sigma`` voxels.
        sigma: Gaussian smoothing of the label's one-hot map, voxels (``source="label"`` only).
        kinds, dice_range, tolerance, multi_label: as :class:`SegmentationFailure`.
        seg_key, entropy_key, dice_key, iou_key, failure_key: output keys: ``seg`` ``[1, *spatial]`` float32 class
            indices, ``entropy`` ``[1, *spatial]`` nats (``None``: keep the loaded map of the uncorrupted
            prediction; the measured alternative of docs/results.md), ``true_dice``/``true_iou`` float32 ``[C - 1]``,
            ``failure`` the kind.
        allow_missing_keys: return the data unchanged when an input key is missing.

    A case that is not drawn (probability ``1 - prob``), or that no kind could bring to its target Dice, passes
    through unchanged (the real stage-1 case with its own ``seg``, maps and Dice) with ``failure = ""``: the real
    cases must already hold the output keys, so batches collate. MetaTensor inputs give MetaTensor
    ``prob``/``seg``/``entropy`` with the label's metadata. ``skipped`` is the array transform's counter.
    """

    def __init__(
        self,
        num_classes: int,
        prob_key: str = "prob",
        label_key: str = "label",
        prob: float = 1.0,
        source: str = "prob",
        sigma: float = 1.0,
        kinds: Sequence[str] = FAILURE_KINDS,
        dice_range: tuple[float, float] = (0.0, 1.0),
        tolerance: float = 0.05,
        multi_label: bool = False,
        seg_key: str = "seg",
        entropy_key: str | None = "entropy",
        dice_key: str = "true_dice",
        iou_key: str = "true_iou",
        failure_key: str = "failure",
        allow_missing_keys: bool = False,
    ) -> None:
        if source not in ("prob", "label"):
            raise ValueError(f"source must be 'prob' (a stage-1 output) or 'label' (the ground truth), got {source!r}.")
        if sigma < 0:
            raise ValueError(f"sigma is a Gaussian standard deviation in voxels and must be >= 0, got {sigma}.")
        MapTransform.__init__(self, [label_key, prob_key] if source == "prob" else [label_key], allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.failure = SegmentationFailure(num_classes, kinds, dice_range, tolerance, multi_label)
        self.num_classes, self.source, self.sigma = num_classes, source, float(sigma)
        self.prob_key, self.label_key = prob_key, label_key
        self.seg_key, self.entropy_key, self.dice_key, self.iou_key = seg_key, entropy_key, dice_key, iou_key
        self.failure_key = failure_key

    @property
    def skipped(self) -> collections.Counter[str]:
        return self.failure.skipped

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.failure.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        if any(k not in d for k in self.keys):
            if self.allow_missing_keys:
                return d
            raise ValueError(f"SegmentationFailured needs keys {list(self.keys)}, the data has {list(d)}.")
        label = d[self.label_key]
        src = d[self.prob_key] if self.source == "prob" else soft_one_hot(label, self.num_classes, self.sigma)
        self.randomize(None)
        case = self.failure(src, label) if self._do_transform else None
        d[self.failure_key] = case.kind if case is not None else ""
        if not d[self.failure_key]:  # not drawn, or no kind could make the target: the real case as it is
            return d
        ref = label if isinstance(label, MetaTensor) else None
        outputs = ((self.prob_key, case.prob), (self.seg_key, case.seg), (self.entropy_key, case.entropy))
        for key, value in outputs:
            if key is not None:
                d[key] = value if ref is None else convert_to_dst_type(value, ref, dtype=torch.float32)[0]
        d[self.dice_key], d[self.iou_key] = case.dice, case.iou
        return d


SegmentationFailureD = SegmentationFailureDict = SegmentationFailured
