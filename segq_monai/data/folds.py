"""Contiguous splits: k folds and a hold-out, by blocks of neighbouring cases, never shuffled.

Slices of one head (or neighbouring slices of any volume) are nearly identical; a random split would put
near-copies on both sides and make held-out quality look better than it is. Keep ``items`` in their natural
order (e.g. by z) and cut blocks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["contiguous_folds", "holdout_split", "split_fold"]

T = TypeVar("T")


def contiguous_folds(num_cases: int, num_folds: int) -> list[list[int]]:
    """Split ``range(num_cases)`` into ``num_folds`` contiguous blocks whose sizes differ by at most 1.

    The first ``num_cases % num_folds`` blocks get the extra case.

    Example::

        contiguous_folds(7, 3)  # [[0, 1, 2], [3, 4], [5, 6]]

    Raises:
        ValueError: ``num_folds < 2`` or ``num_folds > num_cases``.
    """
    if isinstance(num_folds, bool) or not isinstance(num_folds, int) or num_folds < 2:
        raise ValueError(f"num_folds must be an integer >= 2, got {num_folds!r}; for a single split use holdout_split.")
    if num_folds > num_cases:
        raise ValueError(
            f"num_folds={num_folds} exceeds num_cases={num_cases}; every fold needs a case: lower num_folds."
        )
    size, extra = divmod(num_cases, num_folds)
    folds, start = [], 0
    for f in range(num_folds):
        stop = start + size + (f < extra)
        folds.append(list(range(start, stop)))
        start = stop
    return folds


def split_fold(
    items: Sequence[T], fold: int, num_folds: int, group_key: str | None = None
) -> tuple[list[T], list[T]]:
    """``(train, held_out)`` for fold ``fold`` of :func:`contiguous_folds` over ``items`` (order kept).

    Args:
        items: cases in their natural order.
        fold: the held-out fold, in ``[0, num_folds)``.
        num_folds: the number of folds.
        group_key: items are dictionaries and those with the same ``item[group_key]`` (e.g. a patient, or
            the source slice of several augmented copies) stay on one side: the folds are contiguous blocks of
            groups, in order of first appearance. ``None``: every item is its own group.

    Raises:
        ValueError: ``fold`` outside ``[0, num_folds)``, an item without ``group_key``, or the errors of
            :func:`contiguous_folds`.
    """
    if group_key is None:
        groups = list(range(len(items)))
    else:
        missing = [i for i, x in enumerate(items) if group_key not in x]  # type: ignore[operator]
        if missing:
            raise ValueError(f"Items {missing[:5]} have no key {group_key!r}; add it to every item or unset group_key.")
        groups = [x[group_key] for x in items]  # type: ignore[index]
    order = list(dict.fromkeys(groups))
    blocks = contiguous_folds(len(order), num_folds)
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in [0, {num_folds}), got {fold}.")
    held = {order[i] for i in blocks[fold]}
    train = [x for x, g in zip(items, groups) if g not in held]
    return train, [x for x, g in zip(items, groups) if g in held]


def holdout_split(items: Sequence[T], fraction: float, position: str = "end") -> tuple[list[T], list[T]]:
    """``(train, held_out)``: one contiguous block of ``round(fraction * len(items))`` cases held out.

    Args:
        items: cases in their natural order.
        fraction: share held out, in (0, 1); at least one case stays on each side.
        position: where the held-out block sits: ``"start"``, ``"middle"`` or ``"end"``.

    Raises:
        ValueError: ``fraction`` outside (0, 1), fewer than 2 items, or an unknown ``position``.
    """
    n = len(items)
    if not 0.0 < fraction < 1.0 or math.isnan(fraction):
        raise ValueError(f"fraction must be in (0, 1), got {fraction}.")
    if n < 2:
        raise ValueError(f"holdout_split needs at least 2 items, got {n}.")
    k = min(max(round(fraction * n), 1), n - 1)
    starts = {"start": 0, "middle": (n - k) // 2, "end": n - k}
    if position not in starts:
        raise ValueError(f"position must be one of {sorted(starts)}, got {position!r}.")
    s = starts[position]
    return list(items[:s]) + list(items[s + k :]), list(items[s : s + k])
