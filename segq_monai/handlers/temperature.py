"""``TemperatureFit``: an Ignite handler that fits the stage-1 temperature on held-out cases.

Attach it to a ``SupervisedEvaluator`` that runs the stage-1 network deterministically (eval mode, dropout off:
``SimpleInferer``) over labelled cases the network did not train on, with decollated outputs: each case's
``pred`` holds the logits ``[C, *spatial]`` and ``label`` the class indices ``[1, *spatial]``. When the run
completes it fits one temperature on all collected voxels, measures the calibration before and after by 2-fold
cross-fitting over cases (:func:`~segq_monai.calibration.temperature.cross_fitted_calibration`) and writes a JSON file
(whole or
not at all)::

    {"temperature": 1.31, "ece_before": 0.021, "ece_after": 0.009, "nll_before": 0.084, "nll_after": 0.071,
     "cross_fit_temperatures": [1.28, 1.35], "n_cases": 12, "n_voxels": 2400000, "num_bins": 15,
     "checkpoint": "models/fold0/model.pt"}

``bundle/configs/fit_temperature.json`` uses it; samplers read the file back through
:func:`segq_monai.calibration.temperature.load_temperature`. Single process: under ``torchrun`` run it on one rank.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from monai.data import MetaTensor
from monai.handlers import from_engine
from monai.utils import convert_to_tensor, min_version, optional_import

from segq_monai.calibration.temperature import cross_fitted_calibration
from segq_monai.utils.atomic import atomic_write_text

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["TemperatureFit"]

#: the default ``output_transform``: the ``pred`` and ``label`` lists of decollated outputs
_PRED_AND_LABEL = from_engine(["pred", "label"])


def _case_name(value: Any, index: int) -> str:
    """``case <index>``, with its source file where the tensor's metadata names one."""
    path = value.meta.get("filename_or_obj") if isinstance(value, MetaTensor) else None
    return f"case {index} ({path})" if path else f"case {index}"


class TemperatureFit:
    """Collects held-out logits and labels per case; on completion fits the temperature and writes its JSON.

    Args:
        output_file: the JSON file to write, e.g. ``models/fold0/temperature.json`` (its folder is created).
        num_bins: bins of the expected calibration error (MONAI's ``CalibrationErrorMetric``).
        max_voxels_per_case: a case with more voxels contributes this many, drawn uniformly without replacement
            (seeded), so that large volumes neither dominate the fit nor exhaust memory; >= 1.
        seed: seed of that draw (one generator per run, used case after case in the engine's order).
        checkpoint: the stage-1 checkpoint the logits came from, recorded in the JSON as ``"checkpoint"``.
        output_transform: maps ``engine.state.output`` to ``(logits, labels)``, two lists with one tensor per case:
            logits ``[C, *spatial]`` (pre-softmax, C >= 2) and class indices ``[1, *spatial]``.

    The JSON holds ``temperature`` (fitted on every collected voxel; dimensionless), ``ece_before`` and
    ``ece_after`` (class-wise ECE of ``softmax(logits)`` and, cross-fitted, of ``softmax(logits / T)`` with ``T``
    fitted on the other half of the cases; probability units), ``nll_before`` and ``nll_after`` (mean negative
    log-likelihood, nats per voxel, the same way), ``cross_fit_temperatures``, ``n_cases``, ``n_voxels`` (after
    subsampling), ``num_bins`` and, if given, ``checkpoint``.
    """

    def __init__(
        self,
        output_file: str | os.PathLike,
        num_bins: int = 15,
        max_voxels_per_case: int = 200_000,
        seed: int = 0,
        checkpoint: str | os.PathLike | None = None,
        output_transform: Callable[[Any], tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]] = _PRED_AND_LABEL,
    ) -> None:
        if int(num_bins) < 1:
            raise ValueError(f"num_bins must be >= 1, got {num_bins}.")
        if int(max_voxels_per_case) < 1:
            raise ValueError(f"max_voxels_per_case must be >= 1, got {max_voxels_per_case}.")
        self.output_file = Path(output_file)
        self.num_bins = int(num_bins)
        self.max_voxels_per_case = int(max_voxels_per_case)
        self.seed = int(seed)
        self.checkpoint = os.fspath(checkpoint) if checkpoint is not None else None
        self.output_transform = output_transform
        self.logits: list[torch.Tensor] = []  # per case [M_i, C], float32, CPU
        self.labels: list[torch.Tensor] = []  # per case [M_i], long, CPU
        self._generator = torch.Generator().manual_seed(self.seed)

    def attach(self, engine: Engine) -> None:
        """Collect at every iteration; fit and write when the run completes."""
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        """Forget the collected voxels and reseed the subsampling."""
        self.logits, self.labels = [], []
        self._generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, engine: Engine) -> None:
        logits, labels = self.output_transform(engine.state.output)
        for pred, label in zip(logits, labels, strict=True):
            self.add(pred, label)

    def add(self, logits: torch.Tensor, label: torch.Tensor | None) -> None:
        """Collect one case: logits ``[C, *spatial]``, class indices ``[1, *spatial]`` (or ``[*spatial]``)."""
        name = _case_name(label if label is not None else logits, len(self.logits))
        if label is None:
            raise ValueError(
                f"{name} has no label; the temperature fit needs labelled held-out cases (a 'label' in every "
                "datalist item, loaded by the preprocessing)."
            )
        logits, label = convert_to_tensor(logits, track_meta=False), convert_to_tensor(label, track_meta=False)
        spatial = tuple(logits.shape[1:])
        if logits.ndim < 2 or label.shape not in ((1, *spatial), spatial):
            raise ValueError(
                f"{name}: logits {tuple(logits.shape)} and label {tuple(label.shape)} do not match; expected "
                "logits [C, *spatial] and class indices [1, *spatial] of one case (decollated outputs)."
            )
        if self.logits and logits.shape[0] != self.logits[0].shape[1]:
            raise ValueError(f"{name} has {logits.shape[0]} classes, the cases before {self.logits[0].shape[1]}.")
        flat = logits.detach().reshape(logits.shape[0], -1).T.float().cpu()  # [M, C]
        index = label.detach().reshape(-1).cpu()
        if flat.shape[0] > self.max_voxels_per_case:
            keep = torch.randperm(flat.shape[0], generator=self._generator)[: self.max_voxels_per_case]
            flat, index = flat[keep], index[keep]
        self.logits.append(flat)
        self.labels.append(index)

    def write(self, engine: Engine | None = None) -> dict[str, Any]:
        """Fit, cross-fit and write the JSON (see the class docstring); return its content."""
        if not self.logits:
            raise ValueError(
                "the temperature fit saw no cases; check that the held-out fold (datalist, fold, num_folds) "
                "is not empty."
            )
        result = cross_fitted_calibration(self.logits, self.labels, self.num_bins)
        if self.checkpoint is not None:
            result["checkpoint"] = self.checkpoint
        self.output_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.output_file, json.dumps(result, indent=2) + "\n")
        return result

