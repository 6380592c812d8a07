"""The resume job of :class:`~segq_monai.handlers.QualityWriter`: the cohort's rows in the order of its items, one
per case, the cases a rerun skipped read back from their sidecars."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from segq_monai.data.outputs import first_path

__all__ = ["CohortOrder"]

Row = dict[str, Any]


def _key(path: str | os.PathLike) -> str:
    return os.path.normpath(os.path.abspath(os.fspath(path)))


class CohortOrder:
    """Puts rows and entries in the order of ``items``.

    Args:
        restore: the ``(row, entry)`` of an input path that this run did not compute (an earlier run's sidecar).
        image_key: the key of the input image in each item.
    """

    def __init__(self, restore: Callable[[str | os.PathLike], tuple[Row, Row]], image_key: str = "image") -> None:
        self.restore = restore
        self.image_key = image_key

    def __call__(
        self, rows: Sequence[Row], entries: Sequence[Row], items: Sequence[Mapping[str, Any]], resume: bool
    ) -> tuple[list[Row], list[Row]]:
        """Every case once (a padded ``DistributedSampler`` repeats cases), in the order of ``items``; with
        ``resume``, an item without a row is restored; cases not among the items follow in the order recorded.
        Two input files with one case name raise ``ValueError``."""
        by_source: dict[str, tuple[Row, Row]] = {}
        source_of: dict[str, str] = {}
        for row, entry in zip(rows, entries):
            source = _key(entry.get("source", entry["image"]))
            if source_of.setdefault(row["case"], source) != source:
                raise ValueError(
                    f"Two inputs share the case name {row['case']!r} ({source_of[row['case']]} and {source}); "
                    "output files would collide. Give the images distinct file names."
                )
            by_source.setdefault(source, (row, entry))
        ordered = []
        for item in items:
            path = first_path(item.get(self.image_key)) if isinstance(item, Mapping) else None
            if not isinstance(path, (str, os.PathLike)):
                continue
            if _key(path) in by_source:
                ordered.append(by_source.pop(_key(path)))
            elif resume:
                ordered.append(self.restore(path))
        ordered += by_source.values()
        return [row for row, _ in ordered], [entry for _, entry in ordered]
