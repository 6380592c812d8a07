"""Key lists of the stage-2 postprocessing, as the configs wire them."""

from __future__ import annotations

from collections.abc import Sequence

from segq_monai.transforms.scalars import QUALITY_SCALARS

__all__ = ["inverted_keys", "scalar_map_keys"]


def scalar_map_keys(names: Sequence[str]) -> list[str]:
    """The maps that the scalar aggregates ``names`` (keys of :data:`QUALITY_SCALARS`) read, in the order they name
    them (a map read by two aggregates comes twice), without ``"pairwise_dice"``: that one is a number per case,
    not a map on the image's grid.

    Raises:
        ValueError: a name that is not a key of :data:`QUALITY_SCALARS`.
    """
    unknown = [n for n in names if n not in QUALITY_SCALARS]
    if unknown:
        raise ValueError(f"Unknown quality scalar(s) {unknown}; use keys of segq_monai.QUALITY_SCALARS: "
                         f"{sorted(QUALITY_SCALARS)}.")  # fmt: skip
    return [k for n in names for k in QUALITY_SCALARS[n][0] if k != "pairwise_dice"]


def inverted_keys(keys: Sequence[str]) -> list[str]:
    """The keys for one ``Invertd(orig_keys="image")`` that brings ``keys`` back to the input's grid: each once, in
    their first order, ``"label"`` left out (loaded on the input grid already) and ``"image"`` last when present:
    ``Invertd`` reads the operations to undo from ``image``, and inverting ``image`` clears them, so a key after it
    would stay on the preprocessed grid.

    Example: ``["entropy", "image", "seg", "entropy", "label"]`` -> ``["entropy", "seg", "image"]``.
    """
    unique = list(dict.fromkeys(keys))
    return [k for k in unique if k not in ("image", "label")] + (["image"] if "image" in unique else [])
