"""Values on ``python -m monai.bundle run``'s command line, as MONAI's CLI (Python Fire) reads them back.

Fire does not read JSON: ``false`` stays the string ``'false'`` (true in a ``$`` expression), ``[a, b]`` becomes
``['a', 'b']`` and text after ``#`` is dropped from an unquoted value. :func:`cli_value` writes each value so that
Fire gives back exactly that value; the fit's printed commands and the host-binding refusal's fix use it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["cli_value"]


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
