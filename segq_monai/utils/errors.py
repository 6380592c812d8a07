"""Bad input ends on the project's own words: find segq's message in an exception chain, and print it last.

segq's checks raise ``ValueError`` (or an ``OSError`` such as ``FileNotFoundError``) whose message names the file or
id and the fix (CONTRIBUTING.md). On the way up it gets wrapped: MONAI's transforms raise ``RuntimeError("applying
transform ...")`` from it, MONAI's config parser ``RuntimeError("Failed to evaluate ConfigExpression: ...")``, the
fit names its step. :func:`bad_input` walks the chain back to it; :func:`causes` is the one walker of the package.

Two ways of printing it last:

* segq's own commands (``python -m segq_monai``) catch the error and print :func:`bad_input_message` alone, with
  no traceback and exit code 1; ``--debug`` or ``SEGQ_DEBUG=1`` (:func:`debug_requested`) shows the traceback.
* ``python -m monai.bundle run`` is MONAI's command: the bundle configs import :mod:`segq_monai.utils.uncaught`,
  which installs :func:`report_uncaught`'s ``sys.excepthook``. Python calls it only for an exception that nothing
  caught, at the top of the process: it prints the usual traceback, then the project's message. A library caller
  (``ConfigWorkflow`` in Python, a MONAI Label server, the fit running ``monai.bundle.run`` in its process) still
  receives the exception as raised.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from types import TracebackType

__all__ = ["DEBUG_ENV", "bad_input", "bad_input_message", "causes", "debug_requested", "report_uncaught"]

#: the environment variable that shows the traceback of bad input in segq's own commands (``SEGQ_DEBUG=1``)
DEBUG_ENV = "SEGQ_DEBUG"
#: the kinds of exception whose message is the project's word on bad input (CONTRIBUTING.md)
BAD_INPUT = (ValueError, OSError)


def causes(error: BaseException | None) -> Iterator[BaseException]:
    """``error``, then what it was raised from (``__cause__``, else ``__context__``), and so on, each once.

    Example::

        messages = [str(e) for e in causes(raised)]  # the outermost first
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def bad_input(error: BaseException | None, kinds: tuple[type[BaseException], ...] = BAD_INPUT) -> BaseException | None:
    """The outermost exception of ``kinds`` in the chain of ``error`` (:func:`causes`): the check that refused the
    input, with the message that names the file or id and the fix; ``None`` when there is none (a bug, not bad
    input)."""
    return next((e for e in causes(error) if isinstance(e, kinds)), None)


def bad_input_message(error: BaseException | None) -> str | None:
    """The message of :func:`bad_input` (``OSError``s raised by the system, e.g. ``[Errno 28] No space left on
    device: 'PATH'``, keep their kind in front); ``None`` when the chain holds no bad input."""
    cause = bad_input(error)
    if cause is None:
        return None
    text = str(cause).strip() or repr(cause)
    return f"{type(cause).__name__}: {text}" if isinstance(cause, OSError) and cause.errno is not None else text


def debug_requested() -> bool:
    """Whether ``SEGQ_DEBUG`` asks for tracebacks: set to anything but empty, ``0``, ``false`` or ``no``."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


class _ReportBadInput:
    """A ``sys.excepthook``: the previous hook (the traceback), then the project's message of bad input."""

    def __init__(self, previous: Callable[[type[BaseException], BaseException, TracebackType | None], object]) -> None:
        self.previous = previous

    def __call__(self, kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        sys.stdout.flush()  # what was printed before the error stays before it
        self.previous(kind, error, tb)
        message = bad_input_message(error)
        if message is not None:
            sys.stderr.write(f"\nsegq_monai: the run stopped on bad input (raised where the traceback above "
                             f"shows):\n{message}\n")  # fmt: skip
            sys.stderr.flush()


def report_uncaught() -> None:
    """Make an uncaught exception whose chain holds bad input end with the project's message: installs a
    ``sys.excepthook`` that prints the usual traceback, then :func:`bad_input_message`. Only the top of a process
    calls it; callers that catch exceptions see no change. Installs once, keeping the previous hook."""
    if not isinstance(sys.excepthook, _ReportBadInput):
        sys.excepthook = _ReportBadInput(sys.excepthook)
