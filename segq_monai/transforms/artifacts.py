"""MR artifacts at a graded severity, built from MONAI's intensity transforms.

``severity`` in [0, 1]: 0 returns the input values untouched (as float32), 1 is a strong but still readable
artifact. Each kind scales one parameter of a MONAI transform with ``severity``; the random parts (bias
field coefficients, noise, spike position, gamma direction) are drawn from ``seed`` and do not change with
``severity``, so for a fixed seed the artifact only grows:

==============  ==========================================================================================
kind            MONAI transform and what ``severity`` sets
==============  ==========================================================================================
``bias_field``  ``RandBiasField`` (degree 3): coefficients ``U(-1, 1) * 0.6 * severity`` (log field)
``noise``       ``RandRicianNoise``: std ``0.15 * severity * (max - min)`` of the input
``gibbs``       ``GibbsNoise``: ``alpha = 0.35 + 0.45 * severity`` for severity > 0 (the k-space truncation
                radius shrinks; below alpha ~0.35 it only trims the k-space corners, which is invisible)
``spikes``      ``KSpaceSpikeNoise``: one spike per channel at a seeded k-space position, magnitude raised
                by ``0.6 * severity * |DC|`` (stripes of about ``0.6 * severity`` x the mean intensity)
``contrast``    ``AdjustContrast``: ``gamma = 2.5 ** (+-severity)``, direction drawn from the seed
==============  ==========================================================================================

Three more kinds are written here, not built from MONAI (:data:`EXTRA_ARTIFACT_KINDS`; the demo's held-out copies
use :data:`ARTIFACT_KINDS` only, its development copies can take all eight: ``--development_artifacts``). The first
spatial axis is the phase-encoding direction; magnitude images are reconstructed from the altered k-space:

===============  =========================================================================================
kind             what ``severity`` sets
===============  =========================================================================================
``motion``       a rigid shift along the phase-encoding axis during part of the scan: the k-space lines of a
                 seeded ``0.4 * severity`` fraction take the phase of a ``0.08 * severity`` x size shift (ghosts)
``aliasing``     undersampling: every other line is left out beyond a fully sampled centre of ``0.08 + 0.92 *
                 (1 - severity) ** 2`` of the lines (zero-filled: a fold-over ghost at half the field of view)
``signal_void``  a susceptibility-like loss of signal: a seeded ellipse (radii 10 to 20 % of each axis) with a
                 soft edge, its intensity scaled by ``1 - 0.9 * severity``
===============  =========================================================================================

Outputs are clipped to the input's ``[min, max]`` (bias field, noise, Gibbs ringing and spikes would leave it).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import AdjustContrast, GibbsNoise, KSpaceSpikeNoise, MapTransform, RandBiasField, RandRicianNoise
from monai.transforms.transform import Transform
from monai.transforms.utils import Fourier
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

__all__ = [
    "ARTIFACT_KINDS",
    "EXTRA_ARTIFACT_KINDS",
    "MRArtifact",
    "MRArtifactD",
    "MRArtifactDict",
    "MRArtifactd",
    "apply_mr_artifact",
    "graded_artifact_plan",
]

#: the kinds built from MONAI's transforms: the demo's held-out copies and the default of every plan
ARTIFACT_KINDS: tuple[str, ...] = ("bias_field", "noise", "gibbs", "spikes", "contrast")
#: the kinds written here (k-space motion and undersampling, a signal void)
EXTRA_ARTIFACT_KINDS: tuple[str, ...] = ("motion", "aliasing", "signal_void")

_BIAS_MAX_COEFF = 0.6
_NOISE_MAX_STD = 0.15
_GIBBS_ALPHA = (0.35, 0.8)  # alpha at severity 0+ and 1
_SPIKE_MAX_FRACTION = 0.6
_CONTRAST_MAX_GAMMA = 2.5
_MOTION_MAX_FRACTION, _MOTION_MAX_SHIFT = 0.4, 0.08
_ALIASING_MIN_CENTRE = 0.08
_VOID_MAX_ATTENUATION, _VOID_RADIUS = 0.9, (0.1, 0.2)


def _check(kind: str, severity: float) -> None:
    if kind not in ARTIFACT_KINDS + EXTRA_ARTIFACT_KINDS:
        raise ValueError(f"kind must be one of {ARTIFACT_KINDS + EXTRA_ARTIFACT_KINDS}, got {kind!r}.")
    if isinstance(severity, bool) or not isinstance(severity, (int, float)) or not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be a number in [0, 1] (0 = no artifact), got {severity!r}.")


def _spike(img: torch.Tensor, severity: float, rng: np.random.RandomState) -> torch.Tensor:
    """One k-space spike per channel, at a seeded offset of 15-40 % of the half-width from the centre."""
    spatial = img.shape[1:]
    k = Fourier.shift_fourier(img.detach().cpu().to(torch.float64), len(spatial))
    centre = tuple(s // 2 for s in spatial)
    direction = rng.normal(size=len(spatial))
    direction /= np.linalg.norm(direction)
    radius = rng.uniform(0.15, 0.4)
    loc = tuple(int(np.clip(c + round(radius * (s // 2) * d), 0, s - 1)) for c, s, d in zip(centre, spatial, direction))
    if loc == centre:  # tiny images: never overwrite DC
        loc = (centre[0] + 1,) + centre[1:] if spatial[0] > 1 else centre[:-1] + (centre[-1] + 1,)
    locs, intensities = [], []
    for c in range(img.shape[0]):
        old, dc = k[(c,) + loc].abs().item(), k[(c,) + centre].abs().item()
        locs.append((c,) + loc)
        intensities.append(float(np.log(old + _SPIKE_MAX_FRACTION * severity * dc + 1e-10)))
    return KSpaceSpikeNoise(loc=locs, k_intensity=intensities)(img)


def _line_frequencies(img: torch.Tensor) -> torch.Tensor:
    """``[H, 1, ...]`` the frequency (cycles per pixel) of each line along the first spatial axis, broadcastable
    against the k-space of ``img`` ``[C, H, ...]`` without its channel axis."""
    n = img.shape[1]
    return torch.fft.fftfreq(n, dtype=torch.float64).reshape((n,) + (1,) * (img.ndim - 2))


def _magnitude(k: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    """The magnitude image of k-space ``k`` (``torch.fft.fftn`` over the spatial axes of ``img``), as float32 of
    ``img``'s type (a ``MetaTensor`` keeps its metadata)."""
    out = torch.fft.ifftn(k, dim=tuple(range(1, img.ndim))).abs()
    return convert_to_dst_type(out, img, dtype=torch.float32)[0]


def _motion(img: torch.Tensor, severity: float, rng: np.random.RandomState) -> torch.Tensor:
    """A shift of ``0.08 * severity * H`` pixels along the first spatial axis in a seeded ``0.4 * severity`` fraction
    of its k-space lines: each such line takes the shifted object's phase ``exp(-2 pi i f d)``."""
    x = img.detach().cpu().to(torch.float64)
    k = torch.fft.fftn(x, dim=tuple(range(1, x.ndim)))
    n = x.shape[1]
    order = rng.permutation(n)  # which lines move first, fixed by the seed: more of them as severity grows
    moved = torch.zeros(n, dtype=torch.bool)
    moved[torch.as_tensor(order[: int(round(_MOTION_MAX_FRACTION * severity * n))])] = True
    shift = (1.0 if rng.uniform() < 0.5 else -1.0) * _MOTION_MAX_SHIFT * severity * n
    phase = torch.exp(-2j * torch.pi * _line_frequencies(x) * shift)
    mask = moved.reshape((n,) + (1,) * (x.ndim - 2))
    return _magnitude(torch.where(mask, k * phase, k), img)


def _aliasing(img: torch.Tensor, severity: float, rng: np.random.RandomState) -> torch.Tensor:
    """Every other k-space line along the first spatial axis (parity from the seed) set to zero beyond a fully
    sampled centre of ``0.08 + 0.92 * (1 - severity) ** 2`` of the lines."""
    x = img.detach().cpu().to(torch.float64)
    k = torch.fft.fftn(x, dim=tuple(range(1, x.ndim)))
    n = x.shape[1]
    f = _line_frequencies(x).reshape(-1)
    centre = (_ALIASING_MIN_CENTRE + (1.0 - _ALIASING_MIN_CENTRE) * (1.0 - severity) ** 2) / 2  # |f| <= centre: kept
    index = torch.arange(n)
    dropped = (f.abs() > centre) & (index % 2 == int(rng.randint(2)))
    return _magnitude(k * (~dropped).to(k.dtype).reshape((n,) + (1,) * (x.ndim - 2)), img)


def _signal_void(img: torch.Tensor, severity: float, rng: np.random.RandomState) -> torch.Tensor:
    """Intensity scaled by ``1 - 0.9 * severity`` inside a seeded ellipse (centre in the middle 60 % of each axis,
    radii 10 to 20 % of it), with a logistic edge of about 1 pixel."""
    spatial = img.shape[1:]
    grids = torch.meshgrid(*(torch.arange(s, dtype=torch.float32) for s in spatial), indexing="ij")
    centre = [rng.uniform(0.2, 0.8) * s for s in spatial]
    radii = [rng.uniform(*_VOID_RADIUS) * s for s in spatial]
    r = torch.sqrt(sum(((g - c) / max(a, 1.0)) ** 2 for g, c, a in zip(grids, centre, radii)))
    inside = torch.sigmoid((1.0 - r) * min(radii))  # 1 inside, 0 outside, over about a pixel
    return img.to(torch.float32) * (1.0 - _VOID_MAX_ATTENUATION * severity * inside)


def apply_mr_artifact(img: NdarrayOrTensor, kind: str, severity: float, seed: int | None = None) -> torch.Tensor:
    """Apply one MR artifact of graded ``severity`` to a channel-first image.

    Args:
        img: ``[C, H, W[, D]]``, any intensity unit; a ``MetaTensor`` keeps its metadata.
        kind: one of :data:`ARTIFACT_KINDS` or :data:`EXTRA_ARTIFACT_KINDS`.
        severity: in [0, 1]; 0 returns the input values unchanged.
        seed: seeds the random parts; the same seed gives the same output. ``None``: new draws per call.

    Returns:
        float32 tensor of the input's shape, values in the input's ``[min, max]``.
    """
    _check(kind, severity)
    img = convert_to_tensor(img, dtype=torch.float32, track_meta=get_track_meta())
    if severity == 0:
        return img
    rng = np.random.RandomState(seed)
    lo, hi = img.min().item(), img.max().item()
    s = float(severity)
    if kind == "bias_field":
        t = RandBiasField(degree=3, coeff_range=(-_BIAS_MAX_COEFF * s, _BIAS_MAX_COEFF * s), prob=1.0)
        out = t.set_random_state(state=rng)(img)
    elif kind == "noise":
        t = RandRicianNoise(prob=1.0, std=_NOISE_MAX_STD * s * (hi - lo), sample_std=False)
        out = t.set_random_state(state=rng)(img)
    elif kind == "gibbs":
        out = GibbsNoise(alpha=_GIBBS_ALPHA[0] + (_GIBBS_ALPHA[1] - _GIBBS_ALPHA[0]) * s)(img)
    elif kind == "spikes":
        out = _spike(img, s, rng)
    elif kind in _WRITTEN:
        out = _WRITTEN[kind](img, s, rng)
    else:  # contrast
        sign = 1.0 if rng.uniform() < 0.5 else -1.0
        out = AdjustContrast(gamma=float(_CONTRAST_MAX_GAMMA ** (sign * s)))(img)
    out = convert_to_tensor(out, dtype=torch.float32, track_meta=get_track_meta())
    return out.clamp(lo, hi)


_WRITTEN = {"motion": _motion, "aliasing": _aliasing, "signal_void": _signal_void}


class MRArtifact(Transform):
    """Array transform: :func:`apply_mr_artifact` with ``kind``, ``severity`` and ``seed`` fixed at init.

    With an integer ``seed`` the transform is deterministic (same input, same output, every call), so it can
    sit before a cache. Input ``[C, H, W[, D]]``; output float32, same shape, within the input's range.

    Example::

        noisy = MRArtifact("noise", severity=0.5, seed=3)(image)  # image: [1, 96, 112]
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, kind: str, severity: float, seed: int | None = None) -> None:
        _check(kind, severity)
        self.kind, self.severity, self.seed = kind, float(severity), seed

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        return apply_mr_artifact(img, self.kind, self.severity, self.seed)


class MRArtifactd(MapTransform):
    """Dictionary twin of :class:`MRArtifact`: the same artifact (same seed) on every key in ``keys``."""

    def __init__(
        self,
        keys: KeysCollection,
        kind: str,
        severity: float,
        seed: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.artifact = MRArtifact(kind, severity, seed)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.artifact(d[key])
        return d


MRArtifactD = MRArtifactDict = MRArtifactd


def graded_artifact_plan(
    num_cases: int,
    severities: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    kinds: Sequence[str] = ARTIFACT_KINDS,
    seed: int = 0,
) -> list[tuple[str, float]]:
    """``(kind, severity)`` per case, spread so that every contiguous block of data gets all severities.

    Cases are taken in cycles of ``len(severities)``: each cycle holds every severity once (order shuffled
    with ``seed``), so any block of ``2 * len(severities) - 1`` consecutive cases contains all severities.
    Kinds rotate across cycles (``kind = kinds[(severity index + cycle) % len(kinds)]``, kinds order shuffled
    with ``seed``): over ``len(kinds)`` cycles every (kind, severity) pair occurs once.

    Raises:
        ValueError: ``num_cases < 0``, empty ``severities`` / ``kinds``, or an invalid kind or severity.
    """
    if num_cases < 0:
        raise ValueError(f"num_cases must be >= 0, got {num_cases}.")
    if not severities or not kinds:
        raise ValueError("severities and kinds must each name at least one value.")
    for k in kinds:
        for s in severities:
            _check(k, s)
    rng = np.random.RandomState(seed)
    kind_order = [kinds[i] for i in rng.permutation(len(kinds))]
    n_sev = len(severities)
    plan: list[tuple[str, float]] = []
    for cycle in range((num_cases + n_sev - 1) // n_sev):
        for j in rng.permutation(n_sev):
            plan.append((kind_order[(int(j) + cycle) % len(kinds)], float(severities[j])))
    return plan[:num_cases]
