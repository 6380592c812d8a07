"""Running bundle workflows from Python as ``python -m monai.bundle run`` runs them, and writing the command lines
that run them again.

``python -m monai.bundle run`` reads its arguments with Python Fire, which does not read JSON: ``false`` stays the
string ``'false'`` (true in a ``$`` expression), ``[a, b]`` becomes ``['a', 'b']`` and text after ``#`` is dropped
from an unquoted value. :func:`cli_value` writes each value so that Fire gives back exactly that value.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.bundle import run as bundle_run

__all__ = ["bundle_command", "cli_value", "run_workflow"]


def _fire_parse(text: str) -> Any:
    """``text`` as Fire parses one command-line value (``fire.parser.DefaultParseValue``)."""
    from fire.parser import DefaultParseValue

    return DefaultParseValue(text)


def cli_value(value: Any) -> str:
    """The command-line text of a config value for ``python -m monai.bundle run --id TEXT`` (before shell quoting).

    A string is written as it is where Fire keeps it so (a path, ``$@network_def.to(@device)``, ``cpu``), else as a
    Python string literal (``'[a, b]'``, ``'123'``, ``'a#b'``); other values as Python literals (``False``, ``None``,
    ``[1.5, 1.5, 3.0]``, ``{'a': True}``), which Fire evaluates back to the value.

    Raises:
        ValueError: a value Fire cannot give back (e.g. ``inf``); pass it as a ``$`` expression instead.
    """
    text = value if isinstance(value, str) and _fire_parse(value) == value else repr(value)
    parsed = _fire_parse(text)
    if parsed != value or type(parsed) is not type(value):
        raise ValueError(
            f"{value!r} cannot be written on the python -m monai.bundle run command line (Fire reads {text!r} as "
            f"{parsed!r}); write it as a $ expression, e.g. \"$float('inf')\"."
        )
    return text


def _shell_quote(text: str) -> str:
    """``text`` quoted for a POSIX shell, in double quotes where that reads better (a Python literal with single
    quotes and nothing the shell expands inside double quotes)."""
    if shlex.quote(text) == text or any(c in text for c in '"$`\\!'):
        return shlex.quote(text)
    return f'"{text}"'


def bundle_command(
    configs: Sequence[str | os.PathLike], bundle_root: str | os.PathLike, run_id: str, overrides: Mapping[str, Any]
) -> str:
    """The ``python -m monai.bundle run`` command line, shell-quoted, that runs ``configs`` (merged in order) of the
    bundle at ``bundle_root`` with ``overrides`` (``id: value``), each value as :func:`cli_value` writes it."""
    files = cli_value([str(f) for f in configs])
    parts = ["python -m monai.bundle run"] + ([run_id] if run_id != "run" else [])
    parts += ["--bundle_root", shlex.quote(str(bundle_root)), "--config_file", _shell_quote(files)]
    for key, value in overrides.items():
        parts += [f"--{key}", _shell_quote(cli_value(value))]
    return " ".join(parts)


def run_workflow(bundle_root: Path, configs: Sequence[str], **overrides: Any) -> None:
    """Run one workflow (a config file, or several merged in order) of the bundle at ``bundle_root``, with
    ``configs`` relative to its ``configs/`` folder unless absolute and ``overrides`` as ``--id value`` pairs."""
    files = [str(p if os.path.isabs(p) else bundle_root / "configs" / p) for p in configs]
    bundle_run(
        config_file=files if len(files) > 1 else files[0],
        meta_file=str(bundle_root / "configs" / "metadata.json"),
        logging_file=str(bundle_root / "configs" / "logging.conf"),
        bundle_root=str(bundle_root),
        **overrides,
    )
