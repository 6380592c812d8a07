"""Dictionary transform that computes every scalar uncertainty baseline of one case."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

from monai.config import NdarrayOrTensor
from monai.transforms import MapTransform

from segq_monai.metrics.baselines import (
    foreground_entropy,
    mean_entropy,
    mean_mutual_information,
    non_boundary_entropy,
    pairwise_dice,
)

__all__ = ["ScalarBaselinesD", "ScalarBaselinesDict", "ScalarBaselinesd"]


class ScalarBaselinesd(MapTransform):
    """All scalar baselines of one case as ``dict[str, float]`` under ``output_key`` (keys: :data:`BASELINES`).

    A baseline whose input key is absent is skipped (``mean_entropy`` needs ``entropy_key``;
    ``foreground_entropy`` and ``non_boundary_entropy`` need ``entropy_key`` and ``seg_key``;
    ``mean_mutual_information`` needs ``mi_key``; ``pairwise_dice`` needs ``pairwise_key``).

    Args:
        width: boundary half-width of :func:`non_boundary_entropy`, pixels.
        dilation: foreground dilation of :func:`foreground_entropy`, pixels.
    """

    def __init__(
        self,
        entropy_key: str = "entropy",
        mi_key: str = "mutual_information",
        seg_key: str = "seg",
        pairwise_key: str = "pairwise_dice",
        output_key: str = "baselines",
        width: int = 2,
        dilation: int = 1,
    ) -> None:
        super().__init__(keys=[entropy_key, mi_key, seg_key, pairwise_key], allow_missing_keys=True)
        self.entropy_key, self.mi_key, self.seg_key, self.pairwise_key = entropy_key, mi_key, seg_key, pairwise_key
        self.output_key = output_key
        self.width, self.dilation = width, dilation

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, object]:
        d = dict(data)
        e, m, s, p = self.entropy_key, self.mi_key, self.seg_key, self.pairwise_key
        recipes: dict[str, tuple[tuple[str, ...], Callable[[], float]]] = {
            "mean_entropy": ((e,), lambda: mean_entropy(d[e])),
            "foreground_entropy": ((e, s), lambda: foreground_entropy(d[e], d[s], self.dilation)),
            "non_boundary_entropy": ((e, s), lambda: non_boundary_entropy(d[e], d[s], self.width)),
            "mean_mutual_information": ((m,), lambda: mean_mutual_information(d[m])),
            "pairwise_dice": ((p,), lambda: pairwise_dice(d[p])),
        }
        d[self.output_key] = {
            name: fn() for name, (needs, fn) in recipes.items() if all(k in d for k in needs)
        }
        return d


ScalarBaselinesD = ScalarBaselinesDict = ScalarBaselinesd
