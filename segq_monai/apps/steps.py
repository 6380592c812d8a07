"""The steps of a long command (``demo``, ``example3d``) that a rerun after a kill skips when they are done.

A step is done when its last output exists: a training when its final weights exist and its per-epoch checkpoints
are gone (:func:`trained`; ``ResumeCheckpoint`` deletes them after the final weights are saved), a run of the
bundle's workflows when the files it writes at its end exist. A step that is not done runs again and continues
where it stopped (training from its newest checkpoint, sampling and evaluation from the cases already written).
:class:`StepTimes` keeps each step's wall time across reruns, so that the time table of a resumed run still lists
the time of the run that did a skipped step.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from segq_monai.utils.atomic import atomic_write_text

__all__ = ["StepTimes", "trained"]


def trained(checkpoint: Path) -> bool:
    """Whether the training that writes ``checkpoint`` (final weights, e.g. ``fold0/model.pt``) completed: the
    file exists and its run's checkpoints (``resume/`` beside it, deleted when the run completes) are gone."""
    return checkpoint.is_file() and not (checkpoint.parent / "resume").exists()


class StepTimes:
    """The wall time (seconds) of each step of a command, in the order of this run, kept in ``folder/times.json``.

    Args:
        folder: the command's output folder (it must exist).
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / "times.json"
        self.saved: dict[str, float] = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.steps: list[tuple[str, float]] = []

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Run the block as ``step`` and record its wall time."""
        print(f"== {step}", flush=True)
        start = time.perf_counter()
        yield
        self.record(step, time.perf_counter() - start)

    def run(self, step: str, finished: bool, work: Callable[[], Any]) -> None:
        """Run ``work`` as ``step``, unless ``finished``: then ``step`` is skipped and listed with the time of the
        run that did it."""
        if finished:
            print(f"== {step}: done by an earlier run, skipped", flush=True)
            self.steps.append((step, self.saved.get(step, 0.0)))
            return
        with self.timed(step):
            work()

    def record(self, step: str, seconds: float) -> None:
        """Record that ``step`` took ``seconds`` (in ``times.json`` too, whole or not at all)."""
        self.steps.append((step, seconds))
        self.saved[step] = seconds
        atomic_write_text(self.path, json.dumps(self.saved, indent=2) + "\n")
