"""Sampling in a band around the predicted foreground: the cheaper stage-1 sampler for big 3D hosts.

A CT of 512 x 512 x 120 voxels through spleen's ``SlidingWindowInferer`` is 200 windows of 96³ a pass; T = 20
passes cost twenty times that (``benchmarks/bench_real_sizes.py``). The organ and the voxels where its segmentation
can go wrong fill a few percent of the volume. :class:`ForegroundBandSampler` therefore runs the host once over the
whole input (its own deterministic prediction, eval mode), takes the bounding box of the predicted foreground
widened by ``margin`` voxels on every side, and draws the T samples of the sampler it wraps on that box alone.
Each yielded sample is the deterministic prediction outside the box and the sample inside it, so outside the band
every map is that of the single pass: predictive entropy of the deterministic probabilities, mutual information and
variance 0, agreement 1. Cost: one full pass plus T passes over the box, instead of T full passes.

Rules:

- the foreground is every voxel whose deterministic argmax is not class 0 (softmax) or where any label's
  probability exceeds 0.5 (sigmoid), over all cases of the batch;
- the box grows to a multiple of ``multiple`` voxels per axis (networks such as ``UNet`` need sizes divisible by
  their total stride when run without a sliding window; a ``SlidingWindowInferer`` pads its windows itself, so by
  default no rounding there and 16 under any other inferer), or to the whole axis where the axis is shorter;
- no predicted foreground (a host that missed the structure, itself a likely failure), or a box that covers the
  whole input: the wrapped sampler runs on the whole input, as it would without this wrapper (T + 1 passes then:
  the first pass is not reused as a sample).

What it costs in quality (samples near the box edge see zero padding instead of the image beyond it, and the maps
outside the band are those of one pass) is measured on the 3D example in ``docs/fit.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from monai.inferers import SlidingWindowInferer
from monai.utils import ensure_tuple_rep

from segq_monai.inferers.modes import network_modes
from segq_monai.inferers.samplers import Sampler

__all__ = ["ForegroundBandSampler", "foreground_box"]

logger = logging.getLogger(__name__)


def _per_axis(
    margin: int | Sequence[int], multiple: int | Sequence[int], dims: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``margin`` and ``multiple`` as one value per spatial axis, checked: margins >= 0, multiples >= 1."""
    margins, multiples = ensure_tuple_rep(margin, dims), ensure_tuple_rep(multiple, dims)
    if min(margins) < 0 or min(multiples) < 1:
        raise ValueError(f"margin must be >= 0 and multiple >= 1 voxels, got {margin} and {multiple}.")
    return margins, multiples


def foreground_box(
    prob: torch.Tensor, activation: str, margin: int | Sequence[int], multiple: int | Sequence[int] = 1
) -> tuple[slice, ...] | None:
    """The spatial box around the predicted foreground of ``prob``, or ``None`` when nothing is predicted.

    Args:
        prob: class probabilities ``[B, C, *spatial]``.
        activation: ``"softmax"`` (foreground: argmax not 0) or ``"sigmoid"`` (foreground: any channel > 0.5).
        margin: voxels added on each side of the tight box, one value or one per spatial axis; >= 0.
        multiple: the box's size along each axis is rounded up to a multiple of it (kept inside the input, shifted
            where it would cross an edge; the whole axis where the axis is shorter); one value or one per axis.

    Returns:
        one ``slice`` per spatial axis (voxel indices), or ``None`` when no voxel of any case is foreground.
    """
    spatial = prob.shape[2:]
    margins, multiples = _per_axis(margin, multiple, len(spatial))
    if activation == "softmax":
        foreground = prob.argmax(dim=1) != 0
    else:
        foreground = (prob > 0.5).any(dim=1)
    foreground = foreground.any(dim=0)  # [*spatial], over the batch
    if not foreground.any():
        return None
    box = []
    for axis, (size, pad, step) in enumerate(zip(spatial, margins, multiples)):
        other = tuple(a for a in range(len(spatial)) if a != axis)
        hits = foreground.any(dim=other).nonzero().flatten() if other else foreground.nonzero().flatten()
        start, stop = max(0, int(hits[0]) - pad), min(size, int(hits[-1]) + 1 + pad)
        length = -(-(stop - start) // step) * step
        if length >= size:
            start, stop = 0, size
        else:
            start = min(max(0, start - (length - (stop - start)) // 2), size - length)
            stop = start + length
        box.append(slice(start, stop))
    return tuple(box)


class ForegroundBandSampler(Sampler):
    """Draws the samples of ``sampler`` only in a box around the host's predicted foreground (see the module).

    Args:
        sampler: the sampler to run inside the box (MC dropout, TTA, ensemble, ...); its ``activation``,
            ``temperature`` and ``num_samples`` are this sampler's.
        margin: voxels of context kept on each side of the predicted foreground, one value or one per spatial
            axis. A sliding-window host sees zero padding beyond the box, so keep it near half its ``roi_size``.
        multiple: the box's size per axis is rounded up to a multiple of it; ``None``: 1 under a
            ``SlidingWindowInferer`` (it pads its windows by itself), else 16 (a ``UNet`` with four stride-2 levels
            run by a ``SimpleInferer`` needs it).

    Example::

        sampler = ForegroundBandSampler(TTASampler(num_samples=20), margin=48)
        out = UncertaintyInferer(sampler, SlidingWindowInferer((96, 96, 96), sw_batch_size=4))(image, network)
    """

    def __init__(
        self, sampler: Sampler, margin: int | Sequence[int] = 16, multiple: int | Sequence[int] | None = None
    ) -> None:
        super().__init__(sampler.activation, sampler.temperature)
        self.sampler = sampler
        self.margin = margin
        self.multiple = multiple
        _per_axis(margin, 1 if multiple is None else multiple, 1)  # bad values fail here, not at the first case

    @property
    def num_samples(self) -> int:
        return self.sampler.num_samples

    def __call__(self, inputs, network, inferer, *args, **kwargs):
        with network_modes(network), torch.no_grad():
            single = self.activate(inferer(inputs, network, *args, **kwargs))
        multiple = self.multiple
        if multiple is None:
            multiple = 1 if isinstance(inferer, SlidingWindowInferer) else 16
        box = foreground_box(single, self.activation, self.margin, multiple)
        if box is None or all(s.stop - s.start == n for s, n in zip(box, inputs.shape[2:])):
            reason = "no predicted foreground" if box is None else "the box is the whole input"
            logger.info("foreground band: %s; sampling the whole input", reason)
            yield from self.sampler(inputs, network, inferer, *args, **kwargs)
            return
        index = (Ellipsis, *box)
        for prob in self.sampler(inputs[index], network, inferer, *args, **kwargs):
            sample = single.clone()
            sample[index] = prob
            yield sample
