"""Input checks that fail early with a message naming the file and the fix."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import LoadImaged, MapTransform, Transform

__all__ = ["CheckImage", "CheckImaged", "CheckImageD", "CheckImageDict", "SafeLoadImaged"]


def _source(img: NdarrayOrTensor) -> str:
    if isinstance(img, MetaTensor) and img.meta.get("filename_or_obj"):
        return str(img.meta["filename_or_obj"])
    return "the input"


class CheckImage(Transform):
    """Checks a channel-first image ``[C, *spatial]`` before it reaches a network.

    Args:
        spatial_dims: the number of spatial dimensions the networks take (2 or 3).

    Raises:
        ValueError: the image has another number of spatial dimensions, holds NaN / Inf values, or holds only zeros
            (a blank export). The message names the file (from the MetaTensor's ``filename_or_obj``) and the fix.
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
        if not t.any():
            raise ValueError(
                f"{_source(img)} holds only zeros (shape {tuple(img.shape)}): a blank or failed export, with nothing "
                "to segment; re-export it from the original, or remove it from the datalist."
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


class SafeLoadImaged(LoadImaged):
    """MONAI's ``LoadImaged``, whose errors name the file that failed and the fix.

    A missing, truncated or corrupt file otherwise surfaces as a bare reader error (e.g. ``EOFError: Compressed file
    ended before the end-of-stream marker was reached``) that does not say which of the datalist's files broke.
    Takes the arguments of ``monai.transforms.LoadImaged``.
    """

    def __call__(self, data, reader=None):
        try:
            return super().__call__(data, reader)
        except Exception as e:
            files = [str(data[k]) for k in self.key_iterator(dict(data)) if isinstance(data[k], (str, os.PathLike))]
            raise ValueError(
                f"Cannot read {', '.join(files)} ({type(e).__name__}: {e}); the file is missing, truncated or not an "
                "image readable by nibabel/ITK: re-export it, or remove it from the datalist."
            ) from e


CheckImageD = CheckImageDict = CheckImaged
