"""What binds a fit to its host: the host's weights, network, preprocessing and inferer as they run.

A quality head and its calibration hold only for the pipeline they were fitted on. :func:`host_binding` describes
that pipeline from the objects themselves, after the config is resolved and the weights are loaded, so that every
way of writing the same pipeline (an override, a ``$`` expression, a macro) gives the same description and any
change of what runs gives another:

* ``weights``: SHA-256 over the network's state dict (names, dtypes, shapes and bytes, in key order);
* ``network``: SHA-256 of the network's ``repr`` (its modules and their hyper-parameters) and its class;
* ``preprocessing``, ``inferer``: :func:`describe` of each object, a flat ``{path: value}`` of every setting it
  holds (e.g. ``transforms[3].spacing_transform.pixdim: [3.0, 3.0, 3.0]``), and its SHA-256;
* ``weight_files``: ``{path: SHA-256}`` of the files the weights came from, to name them in a refusal.

Settings that say where or how verbosely a pipeline runs, not what it computes (the device, progress bars), are
left out, so a fit made on a CPU deploys on a GPU. :func:`binding_differences` compares two bindings and names each
difference with both values.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "HOST_BINDING_FILE",
    "binding_differences",
    "describe",
    "file_sha256",
    "host_binding",
    "plain_value",
    "weights_sha256",
]

#: the fit folder's record of the host as the fit's sample step ran it
HOST_BINDING_FILE = "host_binding.json"
#: attribute names that say where or how verbosely a component runs, not what it computes
_IGNORED = frozenset({"device", "sw_device", "progress", "verbose", "log_stats", "logger", "R"})
#: private attributes that hold settings: MONAI's ``LoadImaged`` keeps its ``LoadImage`` in ``_loader``
_KEPT_PRIVATE = frozenset({"_loader"})
_SMALL = 64  # arrays with more elements are described by their digest
_DEPTH = 8
_FUNCTIONS = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, types.BuiltinMethodType)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(network: nn.Module) -> str:
    """SHA-256 over ``network.state_dict()``: each entry's name, dtype, shape and bytes (on the CPU), in key order."""
    digest = hashlib.sha256()
    for name, value in sorted(network.state_dict().items()):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def plain_value(value: Any) -> Any:
    """A JSON value for a plain setting (a number, string, bool, dtype or class, a small array as a list, a large one
    as its shape and digest, a device as its text); ``None`` when ``value`` is not one."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # NaN is unequal to itself: compared as text
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (torch.Tensor, np.ndarray)):
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        if array.size <= _SMALL:
            return json.loads(json.dumps(array.tolist()).replace("NaN", '"nan"').replace("Infinity", '"inf"'))
        return f"array{list(array.shape)} sha256:{hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()}"
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (torch.dtype, np.dtype, type, torch.device)):
        return str(value)
    return None


def describe(obj: Any, path: str = "") -> dict[str, Any]:
    """Every setting that ``obj`` holds, as a flat ``{path: JSON value}``.

    Plain values (numbers, strings, small arrays) are kept as they are; lists, tuples and dicts by index or key;
    other objects by their class (``path.__class__``) and their public attributes (and ``LoadImaged``'s ``_loader``),
    to a depth of 8. Functions are named by their qualified name and a digest of their bytecode; networks by their
    class alone; random states, loggers, the readers ``LoadImage`` registers by itself (those installed on the
    machine; a reader it is given is kept as ``readers[-1]``) and the settings of :data:`_IGNORED` are left out.

    Example::

        describe(Spacingd("image", pixdim=(3, 3, 3)))["spacing_transform.pixdim"]  # [3.0, 3.0, 3.0]
    """
    out: dict[str, Any] = {}
    _describe(obj, path, out, set(), 0)
    return out


def _describe(obj: Any, path: str, out: dict[str, Any], seen: set[int], depth: int) -> None:
    leaf = plain_value(obj)
    if leaf is not None or obj is None:
        out[path] = leaf
        return
    if id(obj) in seen or depth > _DEPTH:
        return
    seen.add(id(obj))
    if isinstance(obj, Mapping):
        for key in sorted(obj, key=str):
            _describe(obj[key], f"{path}[{key!r}]", out, seen, depth + 1)
    elif isinstance(obj, (list, tuple)):
        out[f"{path}.__len__"] = len(obj)
        for i, item in enumerate(obj):
            _describe(item, f"{path}[{i}]", out, seen, depth + 1)
    elif isinstance(obj, (nn.Module, np.random.RandomState, np.random.Generator, torch.Generator)):
        out[f"{path}.__class__"] = type(obj).__qualname__  # a network is bound by its own digests
    elif isinstance(obj, _FUNCTIONS):
        code = getattr(obj, "__code__", None)  # a config's lambda: its bytecode and names, not its address
        body = "" if code is None else f" {_sha256(code.co_code.hex() + repr(code.co_names))[:12]}"
        out[path] = f"callable {getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '?')}{body}"
    elif hasattr(obj, "__dict__"):
        cls = type(obj)
        if cls.__module__.startswith(("logging", "threading", "_thread")):
            return
        out[f"{path}.__class__"] = f"{cls.__module__}.{cls.__qualname__}"
        for name, value in sorted(vars(obj).items()):
            if name in _IGNORED or (name.startswith("_") and name not in _KEPT_PRIVATE):
                continue
            key = f"{path}.{name}" if path else name
            if name == "readers" and hasattr(obj, "auto_select"):
                # LoadImage registers every reader installed (the machine's, not the pipeline's), then the one named,
                # which it tries first: that one alone is a setting
                if not obj.auto_select and value:
                    _describe(value[-1], f"{key}[-1]", out, seen, depth + 1)
                continue
            _describe(value, key, out, seen, depth + 1)


def host_binding(
    network: nn.Module, preprocessing: Any, inferer: Any, weight_files: Iterable[str | os.PathLike] = ()
) -> dict[str, Any]:
    """The binding of a host pipeline (module docstring), JSON-ready: ``weights``, ``weight_files``, ``network``
    (``class``, ``sha256``), ``preprocessing`` and ``inferer`` (``sha256``, ``settings``)."""
    parts = {}
    for name, obj in (("preprocessing", preprocessing), ("inferer", inferer)):
        settings = describe(obj)
        parts[name] = {"sha256": _sha256(json.dumps(settings, sort_keys=True)), "settings": settings}
    return json.loads(json.dumps({  # as fit.json holds it (enums as their values, tuples as lists)
        "weights": weights_sha256(network),
        "weight_files": {str(Path(f).resolve()): file_sha256(f) for f in weight_files if Path(f).is_file()},
        "network": {"class": type(network).__qualname__, "sha256": _sha256(repr(network))},
        **parts,
    }))


def _file_change(fitted: Mapping[str, str], here: Mapping[str, str]) -> str:
    """The weight files whose content differs between the fit and here, each with both digests (by content, so a
    host moved to another folder with the same files has none)."""
    new = {f: d for f, d in here.items() if d not in fitted.values()}
    old = {f: d for f, d in fitted.items() if d not in here.values()}
    return "; ".join(
        [f"{f} is {d[:12]} here" for f, d in new.items()] + [f"{f} was {d[:12]} at the fit" for f, d in old.items()]
    )


def binding_differences(fitted: Mapping[str, Any], here: Mapping[str, Any], limit: int = 5) -> list[str]:
    """What differs between the binding of the fit (``fitted``) and of the pipeline at hand (``here``), one line a
    difference naming what and both values (at most ``limit`` settings per part); ``[]`` when they are the same."""
    lines = []
    files = _file_change(fitted.get("weight_files", {}), here["weight_files"])
    if fitted["weights"] != here["weights"] or files:
        lines.append(
            f"weights: the network's weights digest is {here['weights'][:12]} here, {fitted['weights'][:12]} in the "
            f"fit{f' (changed files: {files})' if files else ''}"
        )
    if fitted["network"] != here["network"]:
        lines.append(
            f"network: {here['network']['class']} (architecture digest {here['network']['sha256'][:12]}) here, "
            f"{fitted['network']['class']} ({fitted['network']['sha256'][:12]}) in the fit"
        )
    for part in ("preprocessing", "inferer"):
        if fitted[part]["sha256"] == here[part]["sha256"]:
            continue
        a, b = fitted[part]["settings"], here[part]["settings"]
        keys = [k for k in sorted(set(a) | set(b)) if a.get(k, "<absent>") != b.get(k, "<absent>")]
        for key in keys[:limit]:
            lines.append(f"{part}: {key} is {b.get(key, '<absent>')!r} here, {a.get(key, '<absent>')!r} in the fit")
        if len(keys) > limit:
            lines.append(f"{part}: and {len(keys) - limit} more settings")
    return lines
