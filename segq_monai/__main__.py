"""``python -m segq_monai COMMAND`` (also ``segq-monai COMMAND``): the package's command-line applications.

Each command lives in its own module of :mod:`segq_monai.apps` and registers itself with ``add_parser``;
``python -m segq_monai COMMAND --help`` lists its options. Bad input ends on one message that names the file or id
and the fix, with exit code 1 and no traceback; ``python -m segq_monai --debug COMMAND ...`` (or ``SEGQ_DEBUG=1``)
shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from segq_monai.apps import demo, example3d, export, fit, pacs, paths
from segq_monai.utils.errors import DEBUG_ENV, bad_input_message, debug_requested

#: The modules of the commands, in ``--help`` order.
COMMANDS = (demo, fit, example3d, paths, export, pacs)
PROG = "python -m segq_monai"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback when a command stops on bad input (also {DEBUG_ENV}=1)")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run a command in this process; its errors propagate (for Python callers and tests, see :func:`cli`)."""
    args = _parse(argv)
    args.func(args)


def cli(argv: Sequence[str] | None = None) -> None:
    """The command line: :func:`main`, where bad input (:func:`~segq_monai.utils.errors.bad_input_message`) ends on
    its message on stderr and exit code 1, without a traceback unless ``--debug`` or ``SEGQ_DEBUG`` asks for it.
    Other errors (bugs) keep their traceback; usage errors keep argparse's exit code 2."""
    args = _parse(argv)
    try:
        args.func(args)
    except Exception as e:
        message = bad_input_message(e)
        if message is None or args.debug or debug_requested():
            raise
        sys.stdout.flush()
        print(f"{PROG} {args.command}: stopped on bad input (--debug or {DEBUG_ENV}=1 shows the traceback):\n"
              f"{message}", file=sys.stderr)  # fmt: skip
        raise SystemExit(1) from None


if __name__ == "__main__":
    cli()
