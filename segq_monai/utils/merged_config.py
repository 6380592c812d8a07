"""A config file written out as the merge of others, the merge MONAI makes of a ``--config_file`` list.

A MONAI 1.6.1 config cannot include another file by a path relative to itself (a ``%file.json#id`` macro reads
the file from the working directory), and a bundle command names one file (DESIGN: ``--config_file
bundle/configs/inference.json``). A config that is by design the merge of others is therefore written out by
:func:`write_merged_config` and committed; a test checks that it is still the merge of its parts.

The segq bundle's ``inference.json`` is such a file: the merge of :func:`inference_parts`, the plain segmentation
pipeline of its stage-1 network (``segmentation.json``, a host like any other), the overlay that adds segq to a host
(``configs/segq_overlay.json``) and the bundle's settings wired into the overlay's ids (``segq_settings.json``).
After editing one of them, write it again::

    python -m segq_monai.utils.merged_config
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from pathlib import Path

from monai.bundle import ConfigParser

from segq_monai.utils.atomic import atomic_write_text
from segq_monai.utils.resources import bundle_root, overlay_path

__all__ = ["config_text", "inference_parts", "merged_config", "write_merged_config"]


def inference_parts() -> list[Path]:
    """The files the segq bundle's ``configs/inference.json`` is the merge of, in order."""
    configs = bundle_root() / "configs"
    return [configs / "segmentation.json", overlay_path("segq_overlay"), configs / "segq_settings.json"]


def merged_config(files: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """The config that ``--config_file "['f1', 'f2', ...]"`` runs: each file's entries merged in turn into the
    entries before it (``a#b`` sets a nested entry, ``+a`` appends to a list or dict), as
    ``monai.bundle.ConfigParser.read_config`` merges a list of files."""
    return ConfigParser.load_config_files([str(f) for f in files])


def _flat(value: Any) -> bool:
    """A list or dict holding no list or dict: written on one line when it fits."""
    items = value.values() if isinstance(value, dict) else value
    return not any(isinstance(v, (dict, list)) for v in items)


def _lines(value: Any, indent: int, head: str, tail: str, width: int) -> list[str]:
    """``value`` as JSON lines, the first starting with ``head`` (``"key": `` or nothing) at ``indent`` spaces, the
    last ending with ``tail`` (``,`` or nothing)."""
    pad = " " * indent
    one = json.dumps(value, ensure_ascii=False)
    if not isinstance(value, (dict, list)) or not value or (_flat(value) and len(pad + head + one + tail) <= width):
        return [pad + head + one + tail]
    pairs = list(value.items()) if isinstance(value, dict) else [(None, v) for v in value]
    out = [pad + head + ("{" if isinstance(value, dict) else "[")]
    for i, (key, item) in enumerate(pairs):
        name = "" if key is None else json.dumps(key, ensure_ascii=False) + ": "
        out += _lines(item, indent + 4, name, "," if i < len(pairs) - 1 else "", width)
    return out + [pad + ("}" if isinstance(value, dict) else "]") + tail]


def config_text(config: dict[str, Any], width: int = 120) -> str:
    """``config`` as JSON text: indented by 4, a list or dict without nested ones on one line where it fits in
    ``width`` characters, a newline at the end."""
    return "\n".join(_lines(config, 0, "", "", width)) + "\n"


def write_merged_config(files: Sequence[str | os.PathLike], output: str | os.PathLike, width: int = 120) -> bool:
    """Write :func:`merged_config` of ``files`` to ``output`` as :func:`config_text`; returns whether the file
    changed (``False``: it already held the merge)."""
    text = config_text(merged_config(files), width)
    if os.path.isfile(output):
        with open(output, encoding="utf-8") as f:
            if f.read() == text:
                return False
    atomic_write_text(output, text)
    return True


if __name__ == "__main__":
    inference = bundle_root() / "configs" / "inference.json"
    changed = write_merged_config(inference_parts(), inference)
    print(f"{inference}: {'written' if changed else 'unchanged'}")
