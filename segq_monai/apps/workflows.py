"""Running a bundle step: one workflow of a bundle (a config file, or several merged in order) as
``python -m monai.bundle run`` runs it, and the command line that runs it again.

:func:`bundle_argv` writes the step's arguments (values as :func:`segq_monai.utils.command_line.cli_value` writes
them, as MONAI's command line reads them back); :func:`bundle_command` is that line shell-quoted, to print;
:func:`run_workflow` runs the step in this process (the same ``monai.bundle.run`` entry point). A command that runs
each step in a process of its own (``example3d``) runs ``[sys.executable, *bundle_argv(...)]``.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.bundle import run as bundle_run

from segq_monai.utils import resources
from segq_monai.utils.command_line import cli_value

__all__ = ["bundle_argv", "bundle_command", "run_workflow"]


def _shell_quote(text: str) -> str:
    """``text`` quoted for a POSIX shell, in double quotes where that reads better (a Python literal with single
    quotes and nothing the shell expands inside double quotes)."""
    if shlex.quote(text) == text or any(c in text for c in '"$`\\!'):
        return shlex.quote(text)
    return f'"{text}"'


def bundle_argv(
    configs: Sequence[str | os.PathLike],
    bundle_root: str | os.PathLike,
    run_id: str = "run",
    overrides: Mapping[str, Any] | None = None,
) -> list[str]:
    """The arguments after ``python`` of ``python -m monai.bundle run`` on ``configs`` (merged in order) of the
    bundle at ``bundle_root``, with ``overrides`` (``id: value``) as ``--id value``, each value as :func:`cli_value`
    writes it. MONAI then reads the metadata and logging files beside the first config."""
    argv = ["-m", "monai.bundle", "run"] + ([run_id] if run_id != "run" else [])
    argv += ["--bundle_root", str(bundle_root), "--config_file", cli_value([str(f) for f in configs])]
    for key, value in (overrides or {}).items():
        argv += [f"--{key}", cli_value(value)]
    return argv


def bundle_command(
    configs: Sequence[str | os.PathLike], bundle_root: str | os.PathLike, run_id: str, overrides: Mapping[str, Any]
) -> str:
    """:func:`bundle_argv` as one shell command line, ``python -m monai.bundle run ...``, its values shell-quoted."""
    argv = bundle_argv(configs, bundle_root, run_id, overrides)
    start = 3 if run_id == "run" else 4  # "-m monai.bundle run [RUN_ID]", then "--id value" pairs
    pairs = [word if i % 2 == 0 else _shell_quote(word) for i, word in enumerate(argv[start:])]
    return " ".join(["python", *argv[:start], *pairs])


def _bundle_file(bundle_root: str | os.PathLike, name: str) -> str:
    """``bundle_root/configs/name``, or the segq bundle's where that bundle has none."""
    own = Path(bundle_root) / "configs" / name
    return str(own if own.is_file() else resources.bundle_root() / "configs" / name)


def run_workflow(bundle_root: Path, configs: Sequence[str | os.PathLike], run_id: str = "run", **overrides: Any) -> None:
    """Run one workflow of the bundle at ``bundle_root`` in this process, as ``python -m monai.bundle run`` runs it.

    Args:
        bundle_root: the bundle's folder.
        configs: config files, merged in order; relative ones are in ``bundle_root/configs/``.
        run_id: the config id to run (``"run"``; a host's evaluator may be another).
        overrides: ``id=value`` pairs, as ``--id value`` on the command line (Python objects too).

    The metadata and logging files are the bundle's (``configs/metadata.json``, ``configs/logging.conf``), or the
    segq bundle's where it has none.
    """
    files = [str(p if os.path.isabs(p) else bundle_root / "configs" / p) for p in configs]
    bundle_run(
        run_id=run_id,
        config_file=files if len(files) > 1 else files[0],
        meta_file=_bundle_file(bundle_root, "metadata.json"),
        logging_file=_bundle_file(bundle_root, "logging.conf"),
        bundle_root=str(bundle_root),
        **overrides,
    )
