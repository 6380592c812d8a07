"""``python -m segq_monai COMMAND`` (also ``segq-monai COMMAND``): the package's command-line applications.

Each command lives in its own module of :mod:`segq_monai.apps` and registers itself with ``add_parser``;
``python -m segq_monai COMMAND --help`` lists its options.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from segq_monai.apps import demo, example3d, fit

#: The modules of the commands, in ``--help`` order.
COMMANDS = (demo, fit, example3d)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m segq_monai", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
