"""Training that survives a crash: per-epoch checkpoints of the whole run, and random streams set per epoch.

A training run killed at any point and started again with the same command ends with the same weights as a run
never interrupted, bit for bit (same machine, ``num_workers=0``), given two handlers:

- :class:`ResumeCheckpoint` saves model, optimizer and the trainer's counters (epoch, iteration) every epoch,
  whole or not at all, and at start loads the newest such checkpoint of the run.
- :class:`EpochSeed` seeds every random stream the epoch draws from (global torch / numpy / python generators:
  dropout, the DataLoader's shuffle; the random transforms' own generators) from the seed and the epoch alone,
  so epoch ``k`` draws the same numbers whether the run started at epoch 1 or resumed at ``k``.

Example (``train#handlers`` of a bundle)::

    {"_target_": "segq_monai.handlers.resume.ResumeCheckpoint", "save_dir": "@resume_dir",
     "save_dict": {"model": "@network", "optimizer": "@optimizer"}, "resume": "@resume"},
    {"_target_": "segq_monai.handlers.resume.EpochSeed", "seed": "@seed"}
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ignite.distributed as idist
import numpy as np
import torch
from monai.data.utils import set_rnd
from monai.utils import min_version, optional_import

from segq_monai.utils.atomic import atomic_path

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
Checkpoint, _ = optional_import("ignite.handlers", "0.4.11", min_version, "Checkpoint")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["EpochSeed", "ResumeCheckpoint", "epoch_seed", "latest_checkpoint"]

_CHECKPOINT = re.compile(r"^checkpoint_epoch=(\d+)\.pt$")
_MAX_SEED = 2**32


def _checkpoints(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of every ``checkpoint_epoch=N.pt`` in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), folder / m.group(0)) for m in map(_CHECKPOINT.match, os.listdir(folder)) if m]
    return sorted(found)


def latest_checkpoint(folder: str | os.PathLike) -> str | None:
    """The path of the newest ``checkpoint_epoch=N.pt`` (largest ``N``) in ``folder``; ``None`` when there is none."""
    found = _checkpoints(folder)
    return str(found[-1][1]) if found else None


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of ``epoch`` (1-based) on ``rank``: ``(seed + epoch + 100003 * rank) mod 2**32``."""
    return (seed + epoch + 100003 * rank) % _MAX_SEED


class EpochSeed:
    """Seeds the random streams of each epoch from ``seed`` and the epoch number (``Events.EPOCH_STARTED``).

    Sets :func:`epoch_seed` ``(seed, engine.state.epoch, rank)`` as the seed of the global torch (CPU and CUDA),
    numpy and python generators, of the engine's DataLoader ``generator`` when it has one, and of every random
    transform of the DataLoader's dataset (``monai.data.utils.set_rnd``, as ``monai.data.DataLoader`` does once at
    construction). A ``DistributedSampler`` needs nothing more: MONAI's workflows call its ``set_epoch``.

    Args:
        seed: the run's seed (``int``, >= 0).
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        seed = epoch_seed(self.seed, engine.state.epoch, idist.get_rank())
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        loader = getattr(engine, "data_loader", None)
        if isinstance(getattr(loader, "generator", None), torch.Generator):
            loader.generator.manual_seed(seed)
        if getattr(loader, "dataset", None) is not None:
            set_rnd(loader.dataset, seed)


def _unwrap(obj: Any) -> Any:
    return obj.module if isinstance(obj, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)) else obj


class ResumeCheckpoint:
    """Saves the run every ``save_interval`` epochs; at start, resumes from the newest save of the run.

    Files: ``save_dir/checkpoint_epoch=N.pt``, a dictionary of the ``state_dict`` of each object of ``save_dict``
    (``DataParallel`` / ``DistributedDataParallel`` unwrapped, so keys carry no ``module.``), of the trainer
    (``"trainer"``: epoch and iteration) and of its AMP grad scaler when it uses one (``"scaler"``). Each file is
    written to a temporary name and renamed, by rank 0 only; the newest ``n_saved`` are kept.

    At ``Events.STARTED``, with ``resume``, every rank loads the newest file (``torch.load(weights_only=True)``:
    a checkpoint holding anything but tensors and plain containers is refused) and the trainer continues at the
    next epoch; without ``resume``, or when there is no file, rank 0 deletes any left by an earlier run and
    training starts from scratch. When the run completes the files are deleted (unless ``keep``): a finished run
    leaves only its final model, and running the same command again trains again.

    Args:
        save_dir: the folder of this run's checkpoints (one folder per run: e.g. ``models/fold0/resume``).
        save_dict: the objects to save and restore, e.g. ``{"model": network, "optimizer": optimizer}``; the
            trainer is added as ``"trainer"`` when the handler is attached.
        resume: load the newest checkpoint at start.
        save_interval: save every this many epochs (>= 1).
        n_saved: keep this many newest checkpoints (>= 1).
        map_location: ``torch.load``'s ``map_location`` (``load_state_dict`` then copies onto each object's device).
        keep: keep the checkpoints when the run completes.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: Mapping[str, Any],
        resume: bool = True,
        save_interval: int = 1,
        n_saved: int = 2,
        map_location: Any = "cpu",
        keep: bool = False,
    ) -> None:
        if save_interval < 1 or n_saved < 1:
            raise ValueError(f"save_interval ({save_interval}) and n_saved ({n_saved}) must be >= 1.")
        if not save_dict:
            raise ValueError("save_dict is empty; pass the objects to save, e.g. {'model': ..., 'optimizer': ...}.")
        self.save_dir = Path(save_dir)
        self.save_dict = dict(save_dict)
        self.resume = resume
        self.save_interval = save_interval
        self.n_saved = n_saved
        self.map_location = map_location
        self.keep = keep
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self.save)
        if not self.keep:
            engine.add_event_handler(Events.COMPLETED, self.remove)

    def __call__(self, engine: Engine) -> None:
        self.save(engine)

    def _objects(self, engine: Engine) -> dict[str, Any]:
        objects = dict(self.save_dict, trainer=engine)
        if getattr(engine, "amp", False) and getattr(engine, "scaler", None) is not None:
            objects.setdefault("scaler", engine.scaler)
        return objects

    def load(self, engine: Engine) -> None:
        """Restore the newest checkpoint (``resume``), or clear stale ones and start from scratch."""
        path = latest_checkpoint(self.save_dir) if self.resume else None
        if path is None:
            if idist.get_rank() == 0:
                self.remove(engine)
            return
        checkpoint = torch.load(path, map_location=self.map_location, weights_only=True)
        max_epochs = engine.state.max_epochs
        Checkpoint.load_objects(to_load=self._objects(engine), checkpoint=checkpoint)
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise ValueError(
                f"{path} holds epoch {engine.state.epoch}, beyond this run's {max_epochs} epochs; raise the number "
                f"of epochs, or start over with resume false (or delete {self.save_dir})."
            )
        engine.state.max_epochs = max_epochs
        self.logger.info(f"Resuming from {path}: epoch {engine.state.epoch} of {max_epochs} done.")

    def save(self, engine: Engine) -> None:
        """Write ``checkpoint_epoch=<epoch>.pt`` (rank 0) and delete all but the newest ``n_saved``."""
        if idist.get_rank() != 0:
            return
        self.save_dir.mkdir(parents=True, exist_ok=True)
        state = {k: _unwrap(v).state_dict() for k, v in self._objects(engine).items()}
        path = self.save_dir / f"checkpoint_epoch={engine.state.epoch}.pt"
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        for _, old in _checkpoints(self.save_dir)[: -self.n_saved]:
            old.unlink(missing_ok=True)

    def remove(self, engine: Engine | None = None) -> None:
        """Delete this run's checkpoints and any temporary file a kill left (rank 0); ``save_dir`` if left empty."""
        if idist.get_rank() != 0:
            return
        for _, path in _checkpoints(self.save_dir):
            path.unlink(missing_ok=True)
        for path in self.save_dir.glob(".checkpoint_epoch=*.tmp"):
            path.unlink(missing_ok=True)
        if self.save_dir.is_dir() and not any(self.save_dir.iterdir()):
            self.save_dir.rmdir()
