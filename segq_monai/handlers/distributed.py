"""Which of a workflow's handlers run on this process under ``torchrun``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.distributed as dist

__all__ = ["rank_handlers"]


def rank_handlers(handlers: Sequence[Any], every_rank: Sequence[type]) -> list[Any]:
    """The handlers of this process: all of ``handlers`` on rank 0 (and without ``torch.distributed``), only the
    instances of ``every_rank`` (e.g. ``CheckpointLoader``, whose weights every rank needs, and the writers that
    gather every rank's cases) on the other ranks. The order of ``handlers`` is kept.

    The multi-GPU configs filter the single-GPU config's whole handler list with it, so a handler added to that
    list runs under ``torchrun`` too.
    """
    if not dist.is_available() or not dist.is_initialized() or dist.get_rank() == 0:
        return list(handlers)
    return [h for h in handlers if isinstance(h, tuple(every_rank))]
