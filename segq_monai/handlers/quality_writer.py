"""``QualityWriter``: an Ignite handler that writes each case's maps as NIfTI and the run's ``quality.csv``.

Layout (as MONAI's ``SaveImaged`` names files by default)::

    output_dir/<case>/<case>_seg.nii.gz
    output_dir/<case>/<case>_entropy.nii.gz, ..._mutual_information.nii.gz, ...
    output_dir/<case>/<case>_quality.json  the case's row and datalist entry, written after its maps
    output_dir/quality.csv                 one row per case
    output_dir/<datalist_name>             optional: a Decathlon datalist of the cases, for stage-2 training

``<case>`` is the input image's file name without its extension. Every file is written whole or not at all
(a temporary name in the same folder, then ``os.replace``); ``quality.csv`` and the datalist are written when the
run completes, so a run that stops early leaves none, and the temporary files a killed run left in ``output_dir``
and the case folders are deleted then. A rerun can skip the cases already written
(:func:`segq_monai.data.outputs.pending_items`): the writer reads their rows back from the sidecars.

Under ``torchrun`` (``torch.distributed`` initialised) every rank writes the maps of its own cases; when the run
completes the rows are gathered, put in the order of the input items and written by rank 0 only.

The handler composes one class per job: :class:`~segq_monai.handlers.case_maps.CaseMaps` (the maps),
:class:`~segq_monai.handlers.quality_table.QualityTable` (rows, ``quality.csv`` and the datalist),
:class:`~segq_monai.handlers.sidecars.Sidecars` (each case's sidecar) and
:class:`~segq_monai.handlers.cohort_order.CohortOrder` (the order of the items, and the cases a rerun skipped).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ignite.distributed as idist
from monai.utils import min_version, optional_import

from segq_monai.data.outputs import case_name
from segq_monai.handlers.case_maps import CaseMaps, source_path
from segq_monai.handlers.cohort_order import CohortOrder
from segq_monai.handlers.quality_table import QualityTable
from segq_monai.handlers.sidecars import Sidecars
from segq_monai.utils.atomic import remove_temporaries, writable_dir

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["QualityWriter"]


class QualityWriter:
    """Writes the maps of every case as NIfTI and, when the run completes, ``quality.csv``.

    Args:
        output_dir: the output folder (created; must be writable).
        map_keys: output keys saved as ``<case>_<key>.nii.gz``, e.g. ``("seg", "entropy", "mutual_information")``;
            each ``[C, *spatial]`` MetaTensor on the input's grid (after ``Invertd``).
        class_names: names of the foreground classes, for the columns ``pred_dice_<name>``; a single foreground
            class gives plain ``pred_dice`` / ``pred_iou`` columns. ``None``: ``1 .. K``.
        datalist: the Decathlon datalist the cases came from; the ``image`` column then holds each path as it
            is written there. ``None``: the absolute path.
        datalist_name: if set, also write a datalist ``output_dir/<datalist_name>`` whose ``training`` items
            hold the image, each saved map and ``true_dice`` / ``true_iou`` (stage-2 training data). With ``image``
            among ``map_keys`` (the image as the network saw it, e.g. after a host bundle's intensity preprocessing)
            the entry's ``image`` names that saved map and ``source`` the input file.
        image_key: the key of the input image in each output item.
        output_transform: maps ``engine.state.output`` to a list of per-case dictionaries.
        items: the cohort ``quality.csv`` lists, in this order (e.g. the datalist section); the cases this run
            does not compute (left out by :func:`segq_monai.data.outputs.pending_items`) are read back from their
            sidecars ``<case>/<case>_quality.json``. ``None``: the cases of the run, in the order of the engine's
            dataset (``engine.data_loader.dataset.data``) where it has one.

    Columns of ``quality.csv``: ``image``; ``pred_dice``, ``pred_iou`` (or ``pred_dice_<class>`` ...); with a quality
    calibration (:class:`segq_monai.transforms.RecalibrateQualityd`) ``pred_dice_raw``, ``pred_dice_lo``,
    ``pred_dice_hi`` (or per class);
    ``flagged`` (0/1); with labels ``true_dice``, ``true_iou`` (or per class); one ``baseline_<name>`` column per
    scalar baseline (confidence, higher = better) when the items carry ``baselines``.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        map_keys: Sequence[str] = ("seg", "entropy", "mutual_information"),
        class_names: Sequence[str] | None = None,
        datalist: str | os.PathLike | None = None,
        datalist_name: str | None = None,
        image_key: str = "image",
        output_transform: Callable[[Any], Sequence[Mapping[str, Any]]] = lambda x: x,
        items: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.map_keys = tuple(map_keys)
        self.datalist_name = datalist_name
        self.image_key = image_key
        self.output_transform = output_transform
        self.items = items
        self.rows: list[dict[str, Any]] = []
        self.entries: list[dict[str, Any]] = []
        self.maps = CaseMaps(self.output_dir, self.map_keys, image_key)
        self.table = QualityTable(class_names, datalist, image_key)
        self.sidecars = Sidecars(self.output_dir)
        self.order = CohortOrder(self._restore, image_key)

    def attach(self, engine: Engine) -> None:
        """Check the output folder, then write at every iteration and when the run completes."""
        writable_dir(self.output_dir)
        self.table.read_datalist()
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def _reset(self, engine: Engine) -> None:
        self.rows, self.entries = [], []

    def __call__(self, engine: Engine) -> None:
        for item in self.output_transform(engine.state.output):
            self.record(item)

    def record(self, item: Mapping[str, Any]) -> None:
        """Save one case's maps and keep its row (``item``: the postprocessed dictionary of one case)."""
        source = source_path(item, self.image_key)
        case = case_name(source)
        if any(row["case"] == case for row in self.rows):
            raise ValueError(
                f"Two inputs share the case name {case!r} (the last is {source}); output files would collide. "
                "Give the images distinct file names."
            )
        (self.output_dir / case).mkdir(parents=True, exist_ok=True)
        entry = self.maps.save(item, source)
        row = self.table.row(item, case, source, entry)
        self.sidecars.write(case, row, entry)
        self.rows.append(row)
        self.entries.append(entry)

    def write(self, engine: Engine | None = None) -> None:
        """Write ``quality.csv`` (and the datalist) atomically: every case once, in the order of the items.

        Under ``torch.distributed`` the rows of all ranks are gathered first (every rank then holds them all, in
        ``rows`` / ``entries``) and rank 0 alone writes.
        """
        rows, entries = self.rows, self.entries
        if idist.get_world_size() > 1:
            gathered = idist.all_gather((rows, entries))
            rows = [r for part, _ in gathered for r in part]
            entries = [e for _, part in gathered for e in part]
        items = self.items
        if items is None:
            data = getattr(getattr(getattr(engine, "data_loader", None), "dataset", None), "data", None)
            items = data if isinstance(data, Sequence) else ()
        self.rows, self.entries = self.order(rows, entries, items, resume=self.items is not None)
        if idist.get_rank() != 0:
            return
        remove_temporaries(self.output_dir, depth=1)  # a killed run's half-written files; every rank is done here
        self.table.write(self.output_dir, self.rows, self.entries, self.datalist_name)

    def _restore(self, path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
        """The row and entry of a case written by an earlier run, from its sidecar (the maps where they lie now)."""
        row, entry = self.sidecars.read(path)
        return row, dict(entry, **self.maps.paths(case_name(path)))
