"""Names renamed in this release: the old config id or argument is still accepted, with a ``FutureWarning`` naming
the new one. To be removed in the next release."""

from __future__ import annotations

import warnings
from typing import Any, TypeVar

__all__ = ["renamed"]

_T = TypeVar("_T")


def renamed(old_value: Any, old: str, new: str, value: _T) -> _T | Any:
    """The value of ``new``: ``value``, unless the deprecated ``old`` was given (is not None), which then wins with a
    ``FutureWarning`` (shown by default) naming ``new``.

    For a config id, the bundle keeps ``"<old>": null`` and computes ``new`` from it, e.g.
    ``"tau": "$segq_monai.utils.renamed(@quality_threshold, 'quality_threshold', 'tau', 0.8)"``: ``--quality_threshold
    0.7`` still sets τ (and warns), ``--tau 0.7`` replaces the expression. For an argument, the function keeps
    ``old=None`` in its signature and calls ``renamed(old, "old", "new", new)``.
    """
    if old_value is None:
        return value
    warnings.warn(
        f"{old!r} is renamed {new!r}; {old!r} is still accepted in this release only. Use {new!r} "
        f"(on the command line: --{new}).",
        FutureWarning,
        stacklevel=2,
    )
    return old_value
