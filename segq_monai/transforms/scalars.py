"""Per-case scalar aggregates of stage 1's outputs, gathered into one vector for the quality head.

:class:`~segq_monai.networks.QualityRegressor` with ``num_scalars = S`` concatenates them to its pooled features. Each
aggregate reads only what stage 1 writes for every case, at training (the stage-2 datalist's maps and its
``pairwise_dice``) and at inference (the inferer's outputs) alike; the uncertainty ones are the raw values (not negated)
of the scalar baselines of :mod:`segq_monai.metrics.baselines`, so ``quality.csv``'s ``baseline_*`` columns hold them
too (with the opposite sign).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_numpy

from segq_monai.metrics.baselines import foreground_entropy, mean_mutual_information, pairwise_dice

__all__ = [
    "QUALITY_SCALARS",
    "QualityScalars",
    "QualityScalarsD",
    "QualityScalarsDict",
    "QualityScalarsd",
    "foreground_fraction",
]


def foreground_fraction(seg: NdarrayOrTensor) -> float:
    """Fraction of the voxels predicted foreground (any class > 0), in [0, 1].

    Args:
        seg: ``[1, *spatial]`` class indices, or ``[C, *spatial]`` binary channels (a voxel in any of them counts).
    """
    s = np.asarray(convert_to_numpy(seg))
    if s.ndim < 3:
        raise ValueError(f"seg must be channel-first [1 or C, H, W[, D]], got shape {s.shape}.")
    return float((s > 0).any(axis=0).mean())


#: aggregate name -> (the inputs it reads, in the order of ``QualityScalars.__call__``'s keywords; its function)
QUALITY_SCALARS: dict[str, tuple[tuple[str, ...], Callable[..., float]]] = {
    "pairwise_dice": (("pairwise_dice",), pairwise_dice),  # mean over classes of the samples' pooled Dice, [0, 1]
    "foreground_entropy": (("entropy", "seg"), lambda e, s: -foreground_entropy(e, s)),  # nats, fg dilated by 1
    "mutual_information": (("mutual_information",), lambda m: -mean_mutual_information(m)),  # nats, whole image
    "foreground_volume": (("seg",), foreground_fraction),  # fraction of the voxels
}


class QualityScalars(Transform):
    """The aggregates ``names`` of one case as a float32 vector ``[S]``, ``S = len(names)``, in that order.

    Args:
        names: keys of :data:`QUALITY_SCALARS`: ``"pairwise_dice"`` (mean over foreground classes of the pooled
            pairwise Dice between stage 1's samples, [0, 1]), ``"foreground_entropy"`` (mean predictive entropy over
            the predicted foreground dilated by one voxel, nats; the whole image when nothing is predicted),
            ``"mutual_information"`` (mean mutual information over the image, nats), ``"foreground_volume"``
            (fraction of the voxels predicted foreground, [0, 1]).

    ``__call__(seg=None, entropy=None, mutual_information=None, pairwise_dice=None)``: ``seg`` ``[1, *spatial]`` class
    indices (or ``[C, ...]`` binary masks), the maps ``[1, *spatial]`` (nats), ``pairwise_dice`` ``[K]``; an input
    no chosen aggregate reads may be left out.
    """

    def __init__(self, names: Sequence[str]) -> None:
        unknown = [n for n in names if n not in QUALITY_SCALARS]
        if unknown or not names:
            raise ValueError(f"QualityScalars names must be some of {list(QUALITY_SCALARS)}, got {list(names)}.")
        self.names = tuple(names)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The inputs the chosen aggregates read (``seg``, ``entropy``, ``mutual_information``, ``pairwise_dice``)."""
        return tuple(dict.fromkeys(k for n in self.names for k in QUALITY_SCALARS[n][0]))

    def __call__(
        self,
        seg: NdarrayOrTensor | None = None,
        entropy: NdarrayOrTensor | None = None,
        mutual_information: NdarrayOrTensor | None = None,
        pairwise_dice: NdarrayOrTensor | None = None,
    ) -> torch.Tensor:
        given = {"seg": seg, "entropy": entropy, "mutual_information": mutual_information, "pairwise_dice": pairwise_dice}
        missing = [k for k in self.inputs if given[k] is None]
        if missing:
            raise ValueError(f"The quality scalars {list(self.names)} need {missing} too; pass them.")
        values = [QUALITY_SCALARS[n][1](*(given[k] for k in QUALITY_SCALARS[n][0])) for n in self.names]
        return torch.tensor(values, dtype=torch.float32)


class QualityScalarsd(MapTransform):
    """Dictionary twin of :class:`QualityScalars`: writes ``output_key`` (float32 ``[S]``) from the case's keys.

    Args:
        names: the aggregates, in order (see :class:`QualityScalars`).
        output_key: where the vector goes (``scalars``, the data key the head reads).
        seg_key, entropy_key, mi_key, pairwise_key: the keys of the inputs.
    """

    def __init__(
        self,
        names: Sequence[str],
        output_key: str = "scalars",
        seg_key: str = "seg",
        entropy_key: str = "entropy",
        mi_key: str = "mutual_information",
        pairwise_key: str = "pairwise_dice",
    ) -> None:
        self.scalars = QualityScalars(names)
        self.input_keys = {"seg": seg_key, "entropy": entropy_key, "mutual_information": mi_key,
                           "pairwise_dice": pairwise_key}  # fmt: skip
        super().__init__([self.input_keys[k] for k in self.scalars.inputs])
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        missing = [k for k in self.keys if k not in d]
        if missing:
            raise ValueError(
                f"QualityScalarsd {list(self.scalars.names)} needs the keys {missing} (the case has {list(d)}); a "
                "stage-2 datalist written before 'pairwise_dice' was kept lacks it: sample the cases again."
            )
        d[self.output_key] = self.scalars(**{k: d[key] for k, key in self.input_keys.items() if k in self.scalars.inputs})
        return d


QualityScalarsD = QualityScalarsDict = QualityScalarsd
