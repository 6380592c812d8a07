"""Where a run's per-case outputs live, and which cases of a cohort still need computing.

Layout written by :class:`segq_monai.handlers.QualityWriter`::

    output_dir/<case>/<case>_<key>.nii.gz      one map per key (``seg``, ``entropy``, ...)
    output_dir/<case>/<case>_quality.json      the case's quality.csv row and datalist entry, written last

and, with a calibration file, the run's :data:`PROMISE_FILE` (what its intervals and flag promise) and
:data:`DRIFT_FILE` (the cohort against the calibration split), written by
:class:`segq_monai.handlers.CalibrationReport`.

``<case>`` is the input image's file name without its extension. Each file is written whole or not at all (a
temporary name, then ``os.replace``) and the JSON sidecar is written after the maps, so a case whose sidecar and
maps all exist is complete: :func:`pending_items` drops it from a rerun, and the writer reads its row back.

Inputs without NIfTI-like metadata (PNG / JPEG frames read by MONAI's ``PILReader``: no ``original_affine``) get
their maps on the input's pixel grid with an identity affine (1 mm pixels, as the reader reports them), said in the
log; 2D maps of such inputs are also written as an 8-bit PNG beside the NIfTI (``<case>_<key>.png``, the map scaled
to 0..255 over its own range, pixel (0, 0) top left as in the input) to lay over the input frame.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from monai.data import MetaTensor, NibabelWriter

from segq_monai.utils.atomic import atomic_path
from segq_monai.utils.booleans import as_bool

__all__ = [
    "DRIFT_FILE",
    "PROMISE_FILE",
    "case_name",
    "first_path",
    "items_to_run",
    "map_path",
    "pending_items",
    "save_map",
    "save_png",
    "saved_items",
    "sidecar_path",
]

#: what a run with a calibration file promises (coverage, λ̂, the statement); not the calibration file itself
PROMISE_FILE = "promise.json"
#: the drift check of a run with a calibration file
DRIFT_FILE = "drift.json"

logger = logging.getLogger(__name__)


def case_name(path: str | os.PathLike) -> str:
    """The case name of an image file: its name without ``.nii.gz`` / ``.nii`` / any last extension."""
    name = Path(path).name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def first_path(value: Any) -> Any:
    """The file that names a case: ``value`` itself, or the first of a list of files (several files per case, e.g.
    one per MR sequence, which ``LoadImaged`` stacks as channels and names by the first)."""
    return value[0] if isinstance(value, (list, tuple)) and value else value


def save_map(array: MetaTensor | torch.Tensor, path: Path) -> None:
    """Save a channel-first map ``[C, *spatial]`` with its affine; a temporary file, then ``os.replace``.

    Without NIfTI-like metadata (no ``original_affine``, e.g. a PNG / JPEG input) the affine is the identity and the
    map of a 2D input is also written as a PNG, ``path`` with ``.png`` (:func:`save_png`)."""
    meta = array.meta if isinstance(array, MetaTensor) else {}
    affine = array.affine if isinstance(array, MetaTensor) else torch.eye(4, dtype=torch.float64)  # PIL: identity
    nifti_like = meta.get("original_affine") is not None
    if not nifti_like:
        logger.info(f"{meta.get('filename_or_obj', 'the input')} has no NIfTI affine: {path.name} gets an identity "
                    "affine (1 mm pixels on the input's grid).")  # fmt: skip
    data = torch.as_tensor(array).detach().cpu().as_subclass(torch.Tensor)
    if not data.is_floating_point():
        data = data.to(torch.uint8 if data.numel() == 0 or int(data.max()) < 256 else torch.int16)
    else:
        data = data.to(torch.float32)
    writer = NibabelWriter(output_dtype=data.numpy().dtype)
    writer.set_data_array(data, channel_dim=0, squeeze_end_dims=True)
    # the data are on their grid already: no resampling (MONAI's set_metadata would resample, and fails on the
    # metadata of PIL-read inputs), only the affine
    writer.affine = torch.as_tensor(affine, dtype=torch.float64).numpy()
    with atomic_path(path, suffix=".nii.gz") as tmp:
        writer.write(tmp)
    if not nifti_like and data.ndim == 3:
        save_png(data, Path(str(path).removesuffix(".nii.gz") + ".png"))


def save_png(array: torch.Tensor, path: Path) -> None:
    """Save a 2D map ``[C, W, H]`` (MONAI's ``PILReader`` order: first axis = image columns) as an 8-bit grey PNG:
    the first channel scaled to 0..255 over its range (a constant map: 0); a temporary file, then ``os.replace``."""
    from PIL import Image

    v = array[0].to(torch.float64)
    span = float(v.max() - v.min()) if v.numel() else 0.0
    pixels = ((v - v.min()) / span * 255).round() if span > 0 else torch.zeros_like(v)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(pixels.to(torch.uint8).numpy().T).save(tmp, format="PNG")


def map_path(output_dir: str | os.PathLike, case: str, key: str) -> Path:
    """``output_dir/<case>/<case>_<key>.nii.gz``."""
    return Path(output_dir) / case / f"{case}_{key}.nii.gz"


def sidecar_path(output_dir: str | os.PathLike, case: str) -> Path:
    """``output_dir/<case>/<case>_quality.json``: the case's row and datalist entry."""
    return Path(output_dir) / case / f"{case}_quality.json"


def pending_items(
    items: Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike,
    map_keys: Sequence[str],
    image_key: str = "image",
    min_items: int | None = None,
    batch_size: int = 1,
) -> list[Mapping[str, Any]]:
    """The items of a cohort whose outputs are not all written yet, in their original order.

    A case is done when its sidecar ``<case>_quality.json`` and every map ``<case>_<key>.nii.gz`` of ``map_keys``
    exist in ``output_dir``. Cases are dropped by whole batches of ``batch_size`` (``items[k * batch_size:(k + 1) *
    batch_size]``, as an uninterrupted run batches them) when every case of the batch is done, so the rerun's
    batches are those of an uninterrupted run: MC dropout draws its masks per batch, and a case's samples depend
    on its place in its batch. Pass the full list to the writer (``QualityWriter(items=...)``) so that
    ``quality.csv`` still lists every case: the writer reads the done cases' rows from their sidecars.

    Args:
        items: the cohort, e.g. a datalist section; ``item[image_key]`` is the image path.
        output_dir: the run's output folder.
        map_keys: the maps the run writes (its writer's ``map_keys``).
        image_key: the key of the image path in each item.
        min_items: at least this many items are returned; done batches, last first, are computed again to reach
            it (the run then still runs, completes and writes ``quality.csv``; under ``torchrun`` every rank
            needs one case). ``None``: the number of ranks when ``torch.distributed`` is initialised, else 1.
        batch_size: the run's batch size (its data loader's), >= 1.

    Returns:
        the pending items (the same objects), in the order of ``items``.
    """
    if min_items is None:
        min_items = idist.get_world_size()
    size = int(batch_size)
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    done = []
    for item in items:
        case = case_name(first_path(item[image_key]))
        paths = [sidecar_path(output_dir, case)] + [map_path(output_dir, case, key) for key in map_keys]
        done.append(all(p.is_file() for p in paths))
    batches = [range(i, min(i + size, len(items))) for i in range(0, len(items), size)]
    batch_done = [all(done[i] for i in b) for b in batches]
    for k in reversed(range(len(batches))):  # done batches, last first, computed again to reach min_items
        if sum(len(b) for b, d in zip(batches, batch_done) if not d) >= min(min_items, len(items)):
            break
        batch_done[k] = False
    pending = [items[i] for b, d in zip(batches, batch_done) if not d for i in b]
    logger.info(
        f"{len(items) - len(pending)} of {len(items)} cases already written in {output_dir}; computing {len(pending)}."
    )
    return pending


def saved_items(
    items: Sequence[Mapping[str, Any]],
    maps_dir: str | os.PathLike,
    map_keys: Sequence[str],
    image_key: str = "image",
    prefix: str = "saved_",
) -> list[dict[str, Any]]:
    """The items of a cohort with the maps an earlier run wrote for them, to run a quality head without sampling.

    For each item, adds ``item[prefix + key] = maps_dir/<case>/<case>_<key>.nii.gz`` for every key of ``map_keys``
    and ``item[prefix + "baselines"] = {name: value}``: the scalar baselines of the case's sidecar row (its
    ``baseline_<name>`` columns; ``{}`` when the run computed none). The prefix keeps them apart from the keys a
    workflow computes (``evaluate_maps.json`` copies them to ``seg``, ``entropy``, ... in its postprocessing, so
    that they are outputs of the run, as the maps of a sampling run are).

    Raises:
        FileNotFoundError: a case's sidecar or map is missing, naming the case and the file.
    """
    out = []
    for item in items:
        case = case_name(first_path(item[image_key]))
        paths = {key: map_path(maps_dir, case, key) for key in map_keys}
        sidecar = sidecar_path(maps_dir, case)
        missing = [str(p) for p in [sidecar, *paths.values()] if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"Case {case!r} ({item[image_key]}) has no saved outputs in {maps_dir}: {missing} do not exist. "
                "Pass as maps_dir the output_dir of an inference run over the same datalist section with these "
                "map_keys."
            )
        row = json.loads(sidecar.read_text())["row"]
        baselines = {k[len("baseline_") :]: float(v) for k, v in row.items() if k.startswith("baseline_")}
        out.append({**item, **{prefix + k: str(p) for k, p in paths.items()}, prefix + "baselines": baselines})
    return out


def items_to_run(
    items: Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike,
    map_keys: Sequence[str],
    skip_existing: bool | str,
    batch_size: int = 1,
    name: str = "skip_existing",
) -> list[Mapping[str, Any]]:
    """The items a run computes: all of ``items`` (a copy of the list), or with ``skip_existing`` only those
    :func:`pending_items` leaves (a stopped run continued). ``skip_existing``: the value of the config id ``name``,
    a bool or ``"true"`` / ``"false"`` (:func:`segq_monai.utils.as_bool`)."""
    if as_bool(skip_existing, name):
        return pending_items(items, output_dir, map_keys, batch_size=batch_size)
    return list(items)
