"""Boolean ids of bundle configs, as they arrive from the ``python -m monai.bundle run`` command line."""

from __future__ import annotations

from typing import Any

__all__ = ["as_bool"]


def as_bool(value: Any, name: str) -> bool:
    """``value`` of the config id ``name`` as a bool.

    Accepts a bool, or the strings ``"true"`` / ``"false"`` in any case: Python Fire, which parses the bundle command
    line, turns ``--flag False`` into ``False`` but keeps ``--flag false`` the string ``"false"``, which Python
    would take as true.

    Raises:
        ValueError: another string. TypeError: another type (e.g. 0 or 1: write true or false).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"{name} must be true or false, got {value!r}.")
    raise TypeError(f"{name} must be true or false, got {value!r} ({type(value).__name__}).")
