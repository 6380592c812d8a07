"""Running bundle workflows from Python as ``python -m monai.bundle run`` runs them, and writing the command lines
that run them again (values as :func:`segq_monai.utils.command_line.cli_value` writes them)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.bundle import run as bundle_run

from segq_monai.utils.command_line import cli_value

__all__ = ["bundle_command", "run_workflow"]


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
