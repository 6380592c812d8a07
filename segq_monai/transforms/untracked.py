"""``Untracked``: run transforms without MONAI's metadata tracking, for random training augmentation.

MONAI's transforms return ``MetaTensor``s that record every operation for ``Invertd``. Training augmentation is never
inverted, and on a CPU that record costs more than the augmentation itself: two thirds of the quality head's epoch
on small 2D slices (measured with cProfile: ``track_transform_meta``, ``copy_meta_from``). :class:`Untracked` turns
tracking off (``monai.data.set_track_meta(False)``) for the transforms it wraps and restores it after them, also when
one raises, so that everything before and after (loading, ``EnsureChannelFirstd``, inference) keeps its metadata.
The switch is process-wide: use it where one thread runs transforms at a time (``num_workers`` processes each have
their own).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from monai.data import get_track_meta, set_track_meta
from monai.transforms import Compose, Randomizable, Transform
from monai.utils import convert_to_tensor

__all__ = ["Untracked"]


class Untracked(Randomizable, Transform):
    """Apply ``transforms`` (a sequence, composed in order) with MONAI's metadata tracking off; inputs arrive as plain
    tensors and outputs leave as plain tensors.

    Args:
        transforms: the transforms to run (dictionary or array transforms), e.g. the random augmentation of a
            training config: ``{"_target_": "segq_monai.Untracked", "transforms": "@train#random_transforms"}``.
    """

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = Compose(list(transforms))

    def set_random_state(self, seed: int | None = None, state: Any = None) -> Untracked:
        self.transforms.set_random_state(seed, state)
        return self

    def randomize(self, data: Any) -> None:  # each wrapped transform draws its own parameters
        pass

    def __call__(self, data: Any) -> Any:
        tracking = get_track_meta()
        set_track_meta(False)
        try:
            if isinstance(data, dict):
                data = {k: convert_to_tensor(v, track_meta=False) if hasattr(v, "shape") else v for k, v in data.items()}
            return self.transforms(data)
        finally:
            set_track_meta(tracking)
