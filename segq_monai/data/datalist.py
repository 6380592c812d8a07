"""Decathlon (MSD) datalists: load with clear errors, write atomically with paths relative to the JSON file.

A datalist is ``{"training": [{"image": "a.nii.gz", "label": "a_seg.nii.gz"}, ...], "testing": [...], ...}``
plus optional metadata (``name``, ``labels``, ``numTraining``...); paths are relative to the JSON's folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from monai.data import load_decathlon_datalist

from segq_monai.utils.atomic import atomic_write_text

__all__ = [
    "DEFAULT_PATH_KEYS",
    "default_section",
    "demo_datalist_path",
    "load_stage2_items",
    "load_datalist",
    "read_datalist",
    "write_datalist",
]

#: keys whose values are always file paths (a path or a list of paths per item).
DEFAULT_PATH_KEYS: tuple[str, ...] = ("image", "label")


def demo_datalist_path() -> Path:
    """Path of the embedded demo set's ``dataset.json`` (2D Colin27 slices, see ``demo_data/README.md``)."""
    return Path(str(resources.files("segq_monai") / "demo_data" / "dataset.json"))


def default_section(path: str | os.PathLike) -> str:
    """The section inference reads from a datalist: ``"testing"`` when it has a non-empty one, else ``"training"``.

    A missing or invalid file gives ``"training"``; :func:`load_datalist` then reports the problem.
    """
    try:
        sections = read_datalist(path)
    except (OSError, ValueError):
        return "training"
    return "testing" if sections.get("testing") else "training"


def _paths_of(value: Any) -> list[str]:
    if isinstance(value, (str, os.PathLike)):
        return [os.fspath(value)]
    if isinstance(value, list) and value and all(isinstance(v, (str, os.PathLike)) for v in value):
        return [os.fspath(v) for v in value]
    return []


def read_datalist(path: str | os.PathLike) -> dict[str, Any]:
    """The content of the datalist JSON ``path`` (sections and metadata), unchecked beyond being a JSON object.

    Raises:
        FileNotFoundError: no such file. ValueError: invalid JSON, or not an object; the message names the file.
    """
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise FileNotFoundError(
            f"Datalist {path} does not exist; check the path (relative paths start at {Path.cwd()})."
        )
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"Datalist {path} is not valid JSON ({e}); fix the file or write it with write_datalist."
        ) from e
    if not isinstance(content, dict):
        raise ValueError(
            f"Datalist {path} must hold a JSON object such as {{\"training\": [...]}}, got {type(content).__name__}."
        )
    return content


def load_datalist(
    path: str | os.PathLike,
    key: str = "training",
    path_keys: Sequence[str] = DEFAULT_PATH_KEYS,
    required_keys: Sequence[str] = ("image",),
) -> list[dict]:
    """Load one section of a Decathlon datalist with absolute paths (``monai.data.load_decathlon_datalist``).

    Values under ``path_keys`` are joined to the JSON's folder and must exist; other string values are joined
    only where the joined path exists (MONAI's rule), e.g. the demo set's ``regions``.

    Args:
        path: the JSON file.
        key: the section, e.g. ``"training"``, ``"validation"``, ``"testing"``.
        path_keys: keys whose files must exist.
        required_keys: keys every item must have, e.g. ``["image", "label"]`` to evaluate.

    Returns:
        the section's items (new dicts), paths absolute and normalised.

    Raises:
        FileNotFoundError: the JSON file, or a file an item names under ``path_keys``, does not exist.
        ValueError: invalid JSON, not an object, ``key`` missing, the section empty / not a list, or an item without
            one of ``required_keys`` (the item, its keys and the missing one named).
    """
    path = Path(path).expanduser().absolute()
    content = read_datalist(path)
    if key not in content:
        sections = sorted(k for k, v in content.items() if isinstance(v, list))
        raise ValueError(
            f"Datalist {path} has no section {key!r}; its list sections are {sections}. Pass one as `key`."
        )
    section = content[key]
    if not isinstance(section, list) or not section:
        what = "is empty" if isinstance(section, list) else f"is a {type(section).__name__}, not a list"
        raise ValueError(f"Section {key!r} of datalist {path} {what}; it needs at least one item.")
    if not all(isinstance(i, dict) for i in section) and not (key == "test" and isinstance(section[0], str)):
        raise ValueError(f"Section {key!r} of datalist {path} must be a list of objects such as {{\"image\": ...}}.")
    items = load_decathlon_datalist(path, is_segmentation=True, data_list_key=key)  # MSD "test": bare paths ok
    for i, item in enumerate(items):
        missing = [k for k in required_keys if k not in item]
        if missing:
            raise ValueError(
                f"{key}[{i}] of datalist {path} has no {', '.join(map(repr, missing))} (its keys: {sorted(item)}); "
                f"name each case's files under {list(required_keys)}, as Decathlon datalists do."
            )

    for i, item in enumerate(items):
        for k in path_keys:
            if k in item:
                item[k] = _resolve(item[k], path.parent)
                for p in _paths_of(item[k]):
                    if not os.path.exists(p):
                        raise FileNotFoundError(
                            f"{key}[{i}][{k!r}] = {p} in datalist {path} does not exist; paths are relative to the "
                            f"JSON's folder {path.parent}: fix the path, restore the file, or remove the item."
                        )
    return items


def _resolve(value: Any, base: Path) -> Any:
    paths = _paths_of(value)
    if not paths:
        return value
    out = [os.path.normpath(os.path.join(base, p)) for p in paths]
    return out[0] if isinstance(value, (str, os.PathLike)) else out


def _relative(value: Any, base: Path, always: bool) -> Any:
    """Rewrite path(s) relative to ``base`` (posix separators); non-path keys only when absolute and existing."""
    paths = _paths_of(value)
    if not paths or not (always or all(os.path.isabs(p) and os.path.exists(p) for p in paths)):
        return value
    out = [Path(os.path.relpath(os.path.abspath(p), base)).as_posix() for p in paths]
    return out[0] if isinstance(value, (str, os.PathLike)) else out


def write_datalist(
    path: str | os.PathLike,
    sections: Mapping[str, Sequence[Mapping[str, Any]]],
    metadata: Mapping[str, Any] | None = None,
    path_keys: Sequence[str] = DEFAULT_PATH_KEYS,
) -> Path:
    """Write a Decathlon datalist atomically (temporary file in the same folder, then ``os.replace``).

    Paths are read as Python reads them (absolute, or relative to the working directory) and written relative
    to the JSON's folder: values under ``path_keys`` always, other string values when absolute and existing.
    ``numTraining`` / ``numTest`` are added for ``training`` / ``testing`` unless ``metadata`` sets them.

    Args:
        path: the JSON file to write; its folder is created if needed.
        sections: section name -> list of items (dicts), e.g. ``{"training": [...], "testing": [...]}``.
        metadata: Decathlon metadata written before the sections (``name``, ``description``, ``labels``...).
        path_keys: keys holding file paths.

    Returns:
        the absolute path written.
    """
    path = Path(path).expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    content: dict[str, Any] = dict(metadata or {})
    for name, count in (("training", "numTraining"), ("testing", "numTest")):
        if name in sections and count not in content:
            content[count] = len(sections[name])
    for name, items in sections.items():
        if isinstance(items, (str, bytes)) or not all(isinstance(i, Mapping) for i in items):
            raise ValueError(f"Section {name!r} must be a list of dicts such as {{'image': ...}}.")
        content[name] = [{k: _relative(v, path.parent, k in path_keys) for k, v in item.items()} for item in items]
    atomic_write_text(path, json.dumps(content, indent=2) + "\n")
    return path


def load_stage2_items(
    paths: Sequence[str | os.PathLike],
    keys: Sequence[str],
    path_keys: Sequence[str],
    optional_keys: Sequence[str] = (),
) -> list[dict]:
    """The quality head's training cases: section ``"training"`` of each stage-2 datalist in ``paths`` (written by
    the sample step), in order, each item cut to ``keys`` and those of ``optional_keys`` it has (e.g. the
    ``pairwise_dice`` number that only a sampling step with several samples writes), keys in that order.

    Args:
        paths: stage-2 datalist JSON files.
        keys: keys every item must have and keeps, e.g. ``["image", "seg", "entropy", "true_dice"]``.
        path_keys: keys whose files must exist (:func:`load_datalist`).
        optional_keys: keys kept where an item has them.

    Raises:
        ValueError: an item lacks one of ``keys`` (:func:`load_datalist`, naming the file).
    """
    items = [x for p in paths for x in load_datalist(p, "training", path_keys, required_keys=keys)]
    return [{k: x[k] for k in [*keys, *optional_keys] if k in x} for x in items]
