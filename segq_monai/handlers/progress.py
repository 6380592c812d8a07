"""Progress of a workflow on a shared bar: cases (or epochs) done, added to a bar that spans several workflows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from monai.utils import min_version, optional_import

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["ProgressUpdate"]


class ProgressUpdate:
    """Advance ``progress`` (anything with ``update(n)``, e.g. a ``tqdm`` bar or :class:`segq_monai.apps.fit_progress.
    FitProgress`) by the cases of each iteration, or by one per epoch.

    Args:
        progress: the bar; ``None`` attaches nothing (e.g. ``"progress": "@segq#progress"`` in an overlay whose
            runs by hand have no bar).
        per: ``"case"``: at each iteration's end, the number of cases of its batch (the decollated output's length,
            else the batch's first dimension); ``"epoch"``: 1 at each epoch's end.

    Example (a handler of a bundle config)::

        {"_target_": "segq_monai.handlers.ProgressUpdate", "progress": "@segq#progress", "per": "case"}
    """

    def __init__(self, progress: Any, per: str = "case") -> None:
        if per not in ("case", "epoch"):
            raise ValueError(f"ProgressUpdate counts per 'case' or per 'epoch', got per={per!r}.")
        self.progress = progress
        self.per = per

    def attach(self, engine: Engine) -> None:
        if self.progress is not None:
            event = Events.ITERATION_COMPLETED if self.per == "case" else Events.EPOCH_COMPLETED
            engine.add_event_handler(event, self)

    def __call__(self, engine: Engine) -> None:
        self.progress.update(1 if self.per == "epoch" else _cases(engine.state.output, engine.state.batch))


def _cases(output: Any, batch: Any) -> int:
    """The number of cases of one iteration: the length of a decollated output (a list of cases), else the first
    dimension of the batch's first tensor, else 1."""
    if isinstance(output, list):
        return len(output)
    first = next(iter(batch.values()), None) if isinstance(batch, dict) else batch
    return int(first.shape[0]) if hasattr(first, "shape") and len(first.shape) else 1
