"""Synthetic segmentation failures with an exactly known Dice, to train the stage-2 quality head.

The corruption acts on a class-probability map ``prob`` ``[C, H, W[, D]]`` (softmax: sums to 1 over ``C``), a
stage-1 output or a blurred ground truth (:func:`~segq_monai.transforms.failure_maps.soft_one_hot`), with one of the
kinds of :mod:`segq_monai.transforms.failure_kinds` at a severity in [0, 1]. The corrupted case is what stage 1
would hand to stage 2: ``seg = argmax(prob')`` and ``entropy = H(prob')`` (nats), so the segmentation boundary lies
on an entropy ridge as at deployment. Its Dice and IoU are computed from ``seg`` against the label
(:func:`segq_monai.metrics.quality.segmentation_quality`), never taken from the requested target.

:class:`SegmentationFailure` draws a target Dice, a kind and a seed, and bisects the severity to meet the target;
:class:`SegmentationFailured` is its dictionary twin, writing the keys that stage-2 training reads.
"""

from __future__ import annotations

import collections
import logging
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable, RandomizableTransform, Transform
from monai.utils import convert_to_dst_type

from segq_monai.inferers.streaming import entropy
from segq_monai.metrics.quality import segmentation_quality
from segq_monai.transforms.failure_kinds import FAILURE_KINDS, UnusableCase, check_failure_inputs, failure_function
from segq_monai.transforms.failure_maps import soft_one_hot

__all__ = [
    "FailureCase",
    "SegmentationFailure",
    "SegmentationFailureD",
    "SegmentationFailureDict",
    "SegmentationFailured",
]

logger = logging.getLogger(__name__)

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
        p, lab_np = check_failure_inputs(prob, label, self.num_classes)
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
            except UnusableCase as e:
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
