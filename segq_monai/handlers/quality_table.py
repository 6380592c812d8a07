"""The table job of :class:`~segq_monai.handlers.QualityWriter`: one case's ``quality.csv`` row (and the quality
values its stage-2 datalist entry carries), and the table and datalist written whole."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from segq_monai.data.columns import FLAG_COLUMN, ITEM_KINDS, baseline_column, class_columns, write_quality_csv
from segq_monai.data.datalist import write_datalist
from segq_monai.data.outputs import first_path

__all__ = ["QualityTable"]

#: item keys whose values the stage-2 datalist entry also carries (the regression target)
ENTRY_KEYS = ("true_dice", "true_iou")
#: item keys the entry carries beside them: stage 1's per-case values a head may read (``QualityScalarsd``)
ENTRY_EXTRAS = ("pairwise_dice",)


def _values(value: Any) -> list[float]:
    return [float(v) for v in torch.as_tensor(value).detach().cpu().flatten()]


class QualityTable:
    """Rows of ``quality.csv``.

    Args:
        class_names: names of the foreground classes (columns ``pred_dice_<name>``); one foreground class gives
            plain ``pred_dice`` / ``pred_iou``. ``None``: ``1 .. K``.
        datalist: the Decathlon datalist the cases came from; the ``image`` column then holds each path as written
            there. ``None``: the absolute path.
        image_key: the key of the input image in the datalist's items.
    """

    def __init__(
        self,
        class_names: Sequence[str] | None = None,
        datalist: str | os.PathLike | None = None,
        image_key: str = "image",
    ) -> None:
        self.class_names = list(class_names) if class_names is not None else None
        self.datalist = Path(datalist) if datalist is not None else None
        self.image_key = image_key
        self._as_given: dict[str, str] = {}

    def read_datalist(self) -> None:
        """Read how the datalist writes each image path (at ``attach``: the file may be written after init)."""
        self._as_given = {}
        if self.datalist is None:
            return
        sections = json.loads(self.datalist.read_text())
        root = self.datalist.parent
        self._as_given = {
            os.path.normpath(root / first_path(item[self.image_key])): first_path(item[self.image_key])
            for section in sections.values()
            if isinstance(section, list)
            for item in section
            if isinstance(item, dict) and isinstance(first_path(item.get(self.image_key)), str)
        }

    def row(self, item: Mapping[str, Any], case: str, source: str, entry: dict[str, Any]) -> dict[str, Any]:
        """The row of one case; adds the item's :data:`ENTRY_KEYS` and :data:`ENTRY_EXTRAS` values to ``entry``."""
        row: dict[str, Any] = {"case": case, "image": self._as_given.get(os.path.normpath(source), source)}
        for key, (kind, bound) in ITEM_KINDS.items():
            if key in item:
                values = _values(item[key])
                row.update(class_columns(kind, values, self.class_names, bound))
                if key in ENTRY_KEYS:
                    entry[key] = values
        for key in ENTRY_EXTRAS:
            if key in item:
                entry[key] = _values(item[key])
        if FLAG_COLUMN in item:  # the flag's key of a case is its column's name
            row[FLAG_COLUMN] = int(bool(torch.as_tensor(item[FLAG_COLUMN]).any()))
        for name, value in item.get("baselines", {}).items():
            row[baseline_column(name)] = float(value)
        return row

    @staticmethod
    def write(
        output_dir: Path,
        rows: Sequence[Mapping[str, Any]],
        entries: Sequence[Mapping[str, Any]],
        datalist_name: str | None,
    ) -> None:
        """``output_dir/quality.csv`` (columns in order of appearance, ``case`` left out) and, with
        ``datalist_name``, the stage-2 datalist of ``entries``; each written atomically."""
        columns = [c for c in dict.fromkeys(k for row in rows for k in row) if c != "case"]
        write_quality_csv(output_dir / "quality.csv", rows, columns=columns)
        if datalist_name:
            write_datalist(output_dir / datalist_name, {"training": list(entries)})
