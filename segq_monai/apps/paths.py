"""``segq-monai paths``: where the shipped bundle, overlays, schema, demo data and MONAI Label app lie.

A wheel install has no checkout, so this is how a user finds what to pass to ``--bundle_root`` and
``--config_file``::

    segq-monai paths                  # every path, one per line
    segq-monai paths --json           # the same as a JSON object
    segq-monai paths segq_overlay     # one path, e.g. inside "$(...)" in a shell
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys

from segq_monai.apps.arguments import add_subcommand
from segq_monai.utils.resources import paths

__all__ = ["add_parser", "run"]

_MONAILABEL_HINT = 'needs MONAI Label: pip install "segq-monai[monailabel]"'


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``paths`` on the subcommands ``sub`` of the ``segq-monai`` parser."""
    p = add_subcommand(sub, "paths", "print the paths of the shipped bundle, overlays, schema, demo data and MONAI "
                       "Label app", __doc__, run)  # fmt: skip
    p.add_argument("name", nargs="?", help="print only this path (a name of the full listing)")
    p.add_argument("--json", action="store_true", help="print every path as one JSON object")
    return p


def run(args: argparse.Namespace) -> None:
    found = paths()
    if args.name is not None:
        if args.name not in found:
            sys.exit(f"segq-monai paths: no path called {args.name!r}; the names are: {', '.join(found)}.")
        print(found[args.name])
        return
    if args.json:
        print(json.dumps(found, indent=2))
        return
    width = max(len(name) for name in found)
    has_monailabel = importlib.util.find_spec("monailabel") is not None
    for name, path in found.items():
        note = f"  ({_MONAILABEL_HINT})" if name == "monailabel_app" and not has_monailabel else ""
        print(f"{name:<{width}}  {path}{note}")
