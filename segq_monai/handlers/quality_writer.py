"""``QualityWriter``: an Ignite handler that writes each case's maps as NIfTI and the run's ``quality.csv``.

Layout (as MONAI's ``SaveImaged`` names files by default)::

    output_dir/<case>/<case>_seg.nii.gz
    output_dir/<case>/<case>_entropy.nii.gz, ..._mutual_information.nii.gz, ...
    output_dir/<case>/<case>_quality.json  the case's row and datalist entry, written after its maps
    output_dir/quality.csv                 one row per case
    output_dir/<datalist_name>             optional: a Decathlon datalist of the cases, for stage-2 training

``<case>`` is the input image's file name without its extension. Every file is written whole or not at all
(a temporary name in the same folder, then ``os.replace``); ``quality.csv`` and the datalist are written when the
run completes, so a run that stops early leaves none. A rerun can skip the cases already written
(:func:`segq_monai.data.outputs.pending_items`): the writer reads their rows back from the sidecars.

Under ``torchrun`` (``torch.distributed`` initialised) every rank writes the maps of its own cases; when the run
completes the rows are gathered, put in the order of the input items and written by rank 0 only.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ignite.distributed as idist
import torch
from monai.data import MetaTensor
from monai.utils import min_version, optional_import

from segq_monai.data.datalist import write_datalist
from segq_monai.data.outputs import case_name, first_path, map_path, save_map, sidecar_path
from segq_monai.data.columns import FLAG_COLUMN, ITEM_KINDS, baseline_column, class_columns, write_quality_csv
from segq_monai.utils.atomic import atomic_write_text

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["QualityWriter"]

def _source_path(item: Mapping[str, Any], image_key: str) -> str:
    image = item.get(image_key)
    path = image.meta.get("filename_or_obj") if isinstance(image, MetaTensor) else None
    if not path:
        raise ValueError(
            f"Cannot tell which file the case came from: '{image_key}' carries no 'filename_or_obj' metadata. "
            "Load images with LoadImaged and keep their MetaTensor through the postprocessing."
        )
    return str(path)


def _values(value: Any) -> list[float]:
    return [float(v) for v in torch.as_tensor(value).detach().cpu().flatten()]


def _key(path: str | os.PathLike) -> str:
    return os.path.normpath(os.path.abspath(os.fspath(path)))


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
        self.class_names = list(class_names) if class_names is not None else None
        self.datalist = Path(datalist) if datalist is not None else None
        self.datalist_name = datalist_name
        self.image_key = image_key
        self.output_transform = output_transform
        self.items = items
        self.rows: list[dict[str, Any]] = []
        self.entries: list[dict[str, Any]] = []
        self._as_given: dict[str, str] = {}

    def attach(self, engine: Engine) -> None:
        """Check the output folder, then write at every iteration and when the run completes."""
        self._check_output_dir()
        self._as_given = self._paths_as_given()
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def _check_output_dir(self) -> None:
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            probe = self.output_dir / f".segq_write_test.{uuid.uuid4().hex}"  # ranks probe the folder at once
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise ValueError(
                f"Cannot write to output_dir {self.output_dir} ({e.strerror}); pass a writable --output_dir."
            ) from e

    def _paths_as_given(self) -> dict[str, str]:
        if self.datalist is None:
            return {}
        sections = json.loads(self.datalist.read_text())
        root = self.datalist.parent
        return {
            os.path.normpath(root / first_path(item[self.image_key])): first_path(item[self.image_key])
            for section in sections.values()
            if isinstance(section, list)
            for item in section
            if isinstance(item, dict) and isinstance(first_path(item.get(self.image_key)), str)
        }

    def _reset(self, engine: Engine) -> None:
        self.rows, self.entries = [], []

    def __call__(self, engine: Engine) -> None:
        for item in self.output_transform(engine.state.output):
            self.record(item)

    def record(self, item: Mapping[str, Any]) -> None:
        """Save one case's maps and keep its row (``item``: the postprocessed dictionary of one case)."""
        source = _source_path(item, self.image_key)
        case = case_name(source)
        if any(row["case"] == case for row in self.rows):
            raise ValueError(
                f"Two inputs share the case name {case!r} (the last is {source}); output files would collide. "
                "Give the images distinct file names."
            )
        folder = self.output_dir / case
        folder.mkdir(parents=True, exist_ok=True)
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
        row: dict[str, Any] = {"case": case, "image": self._as_given.get(os.path.normpath(source), source)}
        for key, (kind, bound) in ITEM_KINDS.items():
            if key in item:
                values = _values(item[key])
                row.update(class_columns(kind, values, self.class_names, bound))
                if key in ("true_dice", "true_iou"):
                    entry[key] = values
        if "flagged" in item:
            row[FLAG_COLUMN] = int(bool(torch.as_tensor(item["flagged"]).any()))
        for name, value in item.get("baselines", {}).items():
            row[baseline_column(name)] = float(value)
        atomic_write_text(sidecar_path(self.output_dir, case), json.dumps({"row": row, "entry": entry}, indent=1))
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
        self.rows, self.entries = self._in_order(rows, entries, engine)
        if idist.get_rank() != 0:
            return
        columns = [c for c in dict.fromkeys(k for row in self.rows for k in row) if c != "case"]
        write_quality_csv(self.output_dir / "quality.csv", self.rows, columns=columns)
        if self.datalist_name:
            write_datalist(self.output_dir / self.datalist_name, {"training": self.entries})

    def _in_order(
        self, rows: list[dict[str, Any]], entries: list[dict[str, Any]], engine: Engine | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        by_source: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        source_of: dict[str, str] = {}
        for row, entry in zip(rows, entries):
            source = _key(entry.get("source", entry["image"]))
            if source_of.setdefault(row["case"], source) != source:
                raise ValueError(
                    f"Two inputs share the case name {row['case']!r} ({source_of[row['case']]} and {source}); "
                    "output files would collide. Give the images distinct file names."
                )
            by_source.setdefault(source, (row, entry))  # a padded DistributedSampler repeats cases: keep one
        items = self.items
        if items is None:
            data = getattr(getattr(getattr(engine, "data_loader", None), "dataset", None), "data", None)
            items = data if isinstance(data, Sequence) else ()
        ordered = []
        for item in items:
            path = first_path(item.get(self.image_key)) if isinstance(item, Mapping) else None
            if not isinstance(path, (str, os.PathLike)):
                continue
            if _key(path) in by_source:
                ordered.append(by_source.pop(_key(path)))
            elif self.items is not None:
                ordered.append(self._restore(path))
        ordered += by_source.values()  # cases not among the items: in the order recorded
        return [row for row, _ in ordered], [entry for _, entry in ordered]

    def _restore(self, path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
        """The row and entry of a case written by an earlier run, from its sidecar."""
        case = case_name(path)
        sidecar = sidecar_path(self.output_dir, case)
        if not sidecar.is_file():
            raise FileNotFoundError(
                f"Case {case!r} ({path}) has no result: this run did not compute it and {sidecar} does not exist. "
                "Leave it in the dataset (segq_monai.data.outputs.pending_items keeps unfinished cases) or drop it "
                "from the writer's items."
            )
        saved = json.loads(sidecar.read_text())
        entry = dict(saved["entry"], **{key: str(map_path(self.output_dir, case, key)) for key in self.map_keys})
        return saved["row"], entry
