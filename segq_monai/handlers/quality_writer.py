"""``QualityWriter``: an Ignite handler that writes each case's maps as NIfTI and the run's ``quality.csv``.

Layout (as MONAI's ``SaveImaged`` names files by default)::

    output_dir/<case>/<case>_seg.nii.gz
    output_dir/<case>/<case>_entropy.nii.gz, ..._mutual_information.nii.gz, ...
    output_dir/quality.csv                 one row per case
    output_dir/<datalist_name>             optional: a Decathlon datalist of the cases, for stage-2 training

``<case>`` is the input image's file name without its extension. Every file is written whole or not at all
(a temporary name in the same folder, then ``os.replace``); ``quality.csv`` and the datalist are written when the
run completes, so a run that stops early leaves none.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from monai.data import MetaTensor, NibabelWriter
from monai.utils import min_version, optional_import

from segq_monai.data.datalist import write_datalist
from segq_monai.report import write_quality_csv

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["QualityWriter", "case_name"]

#: per-case values and the column prefix they get in quality.csv
QUALITY_COLUMNS = {"pred_dice": "pred_dice", "pred_iou": "pred_iou", "dice": "true_dice", "iou": "true_iou"}


def case_name(path: str | os.PathLike) -> str:
    """The case name of an image file: its name without ``.nii.gz`` / ``.nii`` / any last extension."""
    name = Path(path).name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def _source_path(item: Mapping[str, Any], image_key: str) -> str:
    image = item.get(image_key)
    path = image.meta.get("filename_or_obj") if isinstance(image, MetaTensor) else None
    if not path:
        raise ValueError(
            f"Cannot tell which file the case came from: '{image_key}' carries no 'filename_or_obj' metadata. "
            "Load images with LoadImaged and keep their MetaTensor through the postprocessing."
        )
    return str(path)


def _save_nifti(array: MetaTensor, path: Path) -> None:
    """Save a channel-first map ``[C, *spatial]`` with its affine; a temporary file, then ``os.replace``."""
    data = array.detach().cpu()
    if not data.is_floating_point():
        data = data.to(torch.uint8 if data.numel() == 0 or int(data.max()) < 256 else torch.int16)
    else:
        data = data.to(torch.float32)
    writer = NibabelWriter(output_dtype=data.numpy().dtype)
    writer.set_data_array(data, channel_dim=0, squeeze_end_dims=True)
    writer.set_metadata(dict(array.meta, affine=array.affine), resample=False)
    tmp = path.with_name(f".{path.name}.tmp.nii.gz")
    writer.write(tmp)
    os.replace(tmp, path)


def _values(value: Any) -> list[float]:
    return [float(v) for v in torch.as_tensor(value).detach().cpu().flatten()]


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
            hold the image, each saved map and the true ``dice`` / ``iou`` (stage-2 training data).
        image_key: the key of the input image in each output item.
        output_transform: maps ``engine.state.output`` to a list of per-case dictionaries.

    Columns of ``quality.csv``: ``image``; ``pred_dice``, ``pred_iou`` (or ``pred_dice_<class>`` ...);
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
    ) -> None:
        self.output_dir = Path(output_dir)
        self.map_keys = tuple(map_keys)
        self.class_names = list(class_names) if class_names is not None else None
        self.datalist = Path(datalist) if datalist is not None else None
        self.datalist_name = datalist_name
        self.image_key = image_key
        self.output_transform = output_transform
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
            probe = self.output_dir / ".segq_write_test"
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
            os.path.normpath(root / item[self.image_key]): item[self.image_key]
            for section in sections.values()
            if isinstance(section, list)
            for item in section
            if isinstance(item, dict) and isinstance(item.get(self.image_key), str)
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
            path = folder / f"{case}_{key}.nii.gz"
            _save_nifti(item[key], path)
            entry[key] = str(path)
        row: dict[str, Any] = {"case": case, "image": self._as_given.get(os.path.normpath(source), source)}
        for key, column in QUALITY_COLUMNS.items():
            if key in item:
                values = _values(item[key])
                row.update(self._columns(column, values))
                if key in ("dice", "iou"):
                    entry[key] = values
        if "flagged" in item:
            row["flagged"] = int(bool(torch.as_tensor(item["flagged"]).any()))
        for name, value in item.get("baselines", {}).items():
            row[f"baseline_{name}"] = float(value)
        self.rows.append(row)
        self.entries.append(entry)

    def _columns(self, prefix: str, values: list[float]) -> dict[str, float]:
        if len(values) == 1 and (self.class_names is None or len(self.class_names) == 1):
            return {prefix: values[0]}
        names = self.class_names or [str(i + 1) for i in range(len(values))]
        if len(names) != len(values):
            raise ValueError(f"class_names has {len(names)} names but {prefix} has {len(values)} classes.")
        return {f"{prefix}_{n}": v for n, v in zip(names, values)}

    def write(self, engine: Engine | None = None) -> None:
        """Write ``quality.csv`` (and the datalist) atomically."""
        columns = [c for c in dict.fromkeys(k for row in self.rows for k in row) if c != "case"]
        write_quality_csv(self.output_dir / "quality.csv", self.rows, columns=columns)
        if self.datalist_name:
            write_datalist(self.output_dir / self.datalist_name, {"training": self.entries})
