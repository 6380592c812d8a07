"""Command-line argument types shared by the ``segq-monai`` subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from segq_monai.utils.resources import check_bundle

__all__ = ["add_subcommand", "bundle_root_arg"]


def add_subcommand(
    sub: argparse._SubParsersAction,
    name: str,
    summary: str,
    doc: str | None,
    func: Callable[[argparse.Namespace], None],
) -> argparse.ArgumentParser:
    """Register the subcommand ``name`` on ``sub``: ``summary`` in the command list, ``doc`` (its module docstring)
    in its ``--help``, ``func(args)`` run when it is chosen."""
    p = sub.add_parser(name, help=summary, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=func)
    return p


def bundle_root_arg(value: str) -> Path:
    """``--bundle_root``: the folder resolved, or an argparse error naming it and the file it lacks."""
    try:
        return check_bundle(value)
    except FileNotFoundError as e:
        raise argparse.ArgumentTypeError(str(e)) from e
