"""The maps job of :class:`~segq_monai.handlers.QualityWriter`: one case's maps saved as NIfTI, named as MONAI's
``SaveImaged`` names them (``output_dir/<case>/<case>_<key>.nii.gz``), and the case's datalist entry that points at
them."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from monai.data import MetaTensor

from segq_monai.data.outputs import case_name, map_path, save_map

__all__ = ["CaseMaps", "source_path"]


def source_path(item: Mapping[str, Any], image_key: str) -> str:
    """The input file a postprocessed case came from (its image's ``filename_or_obj``)."""
    image = item.get(image_key)
    path = image.meta.get("filename_or_obj") if isinstance(image, MetaTensor) else None
    if not path:
        raise ValueError(
            f"Cannot tell which file the case came from: '{image_key}' carries no 'filename_or_obj' metadata. "
            "Load images with LoadImaged and keep their MetaTensor through the postprocessing."
        )
    return str(path)


class CaseMaps:
    """Saves ``map_keys`` of each case under ``output_dir``.

    Args:
        output_dir: the output folder.
        map_keys: keys saved as ``<case>_<key>.nii.gz``, each ``[C, *spatial]`` MetaTensor on the input's grid.
        image_key: the key of the input image; when it is among ``map_keys`` the entry's ``image`` names the saved
            map and ``source`` the input file.
    """

    def __init__(self, output_dir: str | os.PathLike, map_keys: Sequence[str], image_key: str = "image") -> None:
        self.output_dir = output_dir
        self.map_keys = tuple(map_keys)
        self.image_key = image_key

    def save(self, item: Mapping[str, Any], source: str) -> dict[str, Any]:
        """Save the maps of one case (input file ``source``); returns its datalist entry: ``image``, ``label`` (the
        label file, where the item's label names one), each map's path, and ``source``."""
        case = case_name(source)
        entry: dict[str, Any] = {"image": source}
        label = item.get("label")
        if isinstance(label, MetaTensor) and label.meta.get("filename_or_obj"):
            entry["label"] = str(label.meta["filename_or_obj"])
        for key in self.map_keys:
            if key not in item:
                raise ValueError(f"Output key {key!r} is missing (has {sorted(item)}); check map_keys and the maps.")
            path = map_path(self.output_dir, case, key)
            save_map(item[key], path)
            entry[key] = str(path)
        if self.image_key in self.map_keys:
            entry["source"] = source  # "image" now names the saved map (the stage-2 input)
        return entry

    def paths(self, case: str) -> dict[str, str]:
        """Where the maps of ``case`` lie (written by an earlier run)."""
        return {key: str(map_path(self.output_dir, case, key)) for key in self.map_keys}
