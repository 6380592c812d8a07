"""Input checks that fail early with a message naming the file and the fix."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

__all__ = ["CheckImage", "CheckImaged", "CheckImageD", "CheckImageDict"]


def _source(img: NdarrayOrTensor) -> str:
    if isinstance(img, MetaTensor) and img.meta.get("filename_or_obj"):
        return str(img.meta["filename_or_obj"])
    return "the input"


class CheckImage(Transform):
    """Checks a channel-first image ``[C, *spatial]`` before it reaches a network.

    Args:
        spatial_dims: the number of spatial dimensions the networks take (2 or 3).

    Raises:
        ValueError: the image has another number of spatial dimensions, or holds NaN / Inf values. The message
            names the file (from the MetaTensor's ``filename_or_obj``) and the fix.
    """

    def __init__(self, spatial_dims: int) -> None:
        self.spatial_dims = spatial_dims

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        dims = img.ndim - 1
        if dims != self.spatial_dims:
            raise ValueError(
                f"{_source(img)} has {dims} spatial dimensions (shape {tuple(img.shape)} after adding the channel "
                f"axis) but the networks take {self.spatial_dims}D images; use {self.spatial_dims}D images or "
                f"networks trained with spatial_dims={dims}."
            )
        t = torch.as_tensor(img)
        if not torch.isfinite(t).all():
            raise ValueError(
                f"{_source(img)} holds {int((~torch.isfinite(t)).sum())} NaN/Inf values; repair the file or "
                "remove it from the datalist."
            )
        return img


class CheckImaged(MapTransform):
    """Dictionary twin of :class:`CheckImage`."""

    def __init__(self, keys: KeysCollection, spatial_dims: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.check = CheckImage(spatial_dims)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            self.check(d[key])
        return d


CheckImageD = CheckImageDict = CheckImaged
