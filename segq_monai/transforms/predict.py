"""Stage-2 inference: the quality head's predicted Dice and IoU of one case, and its spread.

One head gives its point prediction (eval mode) and, with ``num_samples``, the spread of MC-dropout passes; an
ensemble of heads (:class:`~segq_monai.networks.QualityEnsemble`, or several networks given as a list) gives the mean
over its members and their standard deviation. With per-case scalars (:class:`segq_monai.transforms.QualityScalarsd`)
the head reads them beside the input stack.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_tensor

from segq_monai.inferers.modes import dropout_modules, network_modes, seeded
from segq_monai.metrics.quality import dice_to_iou
from segq_monai.networks.quality_ensemble import QualityEnsemble

__all__ = ["PredictQuality", "PredictQualityd", "PredictQualityD", "PredictQualityDict"]

#: input voxels (channels included) of one batch of the head's MC-dropout passes
_BATCH_VOXELS = 2**22


def _as_network(network: torch.nn.Module | Sequence[torch.nn.Module]) -> torch.nn.Module:
    """A network as given, several as a :class:`QualityEnsemble` (one of them: that one)."""
    if isinstance(network, torch.nn.Module):
        return network
    members = list(network)
    return members[0] if len(members) == 1 else QualityEnsemble(members)


class PredictQuality(Transform):
    """Stage 2 inference: the quality regressor's predicted Dice and IoU for one case, and optionally its spread.

    Args:
        network: the regressor (e.g. :class:`segq_monai.networks.QualityRegressor`), mapping
            ``[B, C_in, *spatial]`` to predicted Dice ``[B, K]`` in [0, 1]; or an ensemble of ``M`` heads: a
            :class:`~segq_monai.networks.QualityEnsemble` (``[B, M, K]``) or a list of heads (made one). It is run
            without gradients, on the device of its parameters; every module's mode is restored afterwards.
        num_samples: ``0``: the point prediction only. ``K >= 2``: also ``K`` MC-dropout passes of the head (only its
            dropout modules in train mode, :func:`segq_monai.inferers.modes.network_modes`, as stage 1's MC dropout),
            whose standard deviation is the head's spread. A head without dropout (``p > 0``) cannot spread: refused.
            An ensemble's spread is its members' disagreement: it takes ``num_samples=0``.
        seed: seed of the passes' dropout masks (the same for every case; the caller's random state is left as it
            was); None: the global random state.

    ``__call__(x, scalars=None)``: the input stack ``[C_in, *spatial]`` (and the head's per-case scalars ``[S]`` when
    it reads them) -> ``(dice, iou, sd)``: ``dice`` the eval-mode pass (the passes never change it; an ensemble: the
    mean over its members' eval-mode passes), ``iou = dice / (2 - dice)`` (exact for one pair of masks), ``sd`` the
    population standard deviation (ddof 0, as the stage-1 ``variance`` map) of the ``K`` passes' Dice or of the ``M``
    members' Dice, Dice units, or None for one head with ``num_samples=0``; each float32 ``[K]``. Raises
    ``ValueError`` when a predicted Dice leaves [0, 1].
    """

    def __init__(
        self,
        network: torch.nn.Module | Sequence[torch.nn.Module],
        num_samples: int = 0,
        seed: int | None = 0,
    ) -> None:
        network = _as_network(network)
        self.ensemble = isinstance(network, QualityEnsemble)
        if num_samples < 0 or num_samples == 1:
            raise ValueError(
                f"num_samples is 0 (no spread) or the number of MC-dropout passes of the head (>= 2), got {num_samples}."
            )
        if num_samples and self.ensemble:
            raise ValueError(
                f"num_samples={num_samples} asks for MC-dropout passes, but the head is an ensemble of "
                f"{len(network.members)} whose members' disagreement is its spread; set num_samples=0 (config id "
                "quality_num_samples)."
            )
        if num_samples and not dropout_modules(network):
            raise ValueError(
                f"num_samples={num_samples} asks for the head's MC-dropout spread, but the head has no dropout module "
                "with p > 0; set num_samples=0 (config id quality_num_samples, segq#quality_num_samples in the "
                "overlay), or train a head with dropout > 0 (QualityRegressor(dropout=0.2))."
            )
        self.network = network
        self.num_samples = num_samples
        self.seed = seed

    def _dice(self, x: torch.Tensor, kwargs: dict[str, torch.Tensor], n: int = 1) -> torch.Tensor:
        """The head's Dice on ``n`` copies of ``x`` ``[C_in, *spatial]`` (scalars ``[1, S]`` in ``kwargs``), run in
        batches of up to :data:`_BATCH_VOXELS` input voxels (on a CPU one batch of 20 small copies runs about 3x as
        fast as 20 passes); ``[K]`` for ``n = 1`` (``[M, K]`` for an ensemble), else ``[n, K]``."""
        chunk = max(1, min(n, _BATCH_VOXELS // max(1, x.numel())))
        parts = []
        for start in range(0, n, chunk):
            k = min(chunk, n - start)
            parts.append(self.network(x[None].expand(k, *x.shape), **{a: v.expand(k, *v.shape[1:])
                                                                       for a, v in kwargs.items()}).float().cpu())
        dice = parts[0][0] if n == 1 else torch.cat(parts)
        if dice.numel() and (dice.min() < 0 or dice.max() > 1):
            raise ValueError(
                f"predicted Dice must lie in [0, 1], got range [{float(dice.min())}, {float(dice.max())}]; "
                "end the regressor with a sigmoid (QualityRegressor does)."
            )
        return dice

    def __call__(
        self, x: NdarrayOrTensor, scalars: NdarrayOrTensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        device = next(self.network.parameters()).device
        x = convert_to_tensor(x, track_meta=False, dtype=torch.float32).to(device)
        kwargs = {}
        if scalars is not None:
            kwargs["scalars"] = convert_to_tensor(scalars, track_meta=False, dtype=torch.float32).to(device)[None]
        with torch.no_grad():
            with network_modes(self.network):
                dice = self._dice(x, kwargs)
            sd = None
            if self.ensemble:  # [M, K]: the members' predictions
                dice, sd = dice.mean(dim=0), dice.double().std(dim=0, unbiased=False).float()
            elif self.num_samples:
                with network_modes(self.network, dropout_modules(self.network)), seeded(self.seed, device):
                    passes = self._dice(x, kwargs, self.num_samples).double()
                sd = passes.std(dim=0, unbiased=False).float()
        return dice, dice_to_iou(dice), sd


class PredictQualityd(MapTransform):
    """Dictionary twin of :class:`PredictQuality`: reads ``keys`` (one key: the stage-2 input stack) and, with
    ``scalars_key``, the head's per-case scalars ``[S]``; writes ``dice_key`` and ``iou_key``, and with a spread
    (``num_samples >= 2``, or an ensemble of heads) ``sd_key`` (``[K]``, Dice units; the ``pred_dice_sd`` column).
    With ``allow_missing_keys``, a case without the input passes through unchanged."""

    def __init__(
        self,
        network: torch.nn.Module | Sequence[torch.nn.Module],
        keys: KeysCollection = "quality_input",
        dice_key: str = "pred_dice",
        iou_key: str = "pred_iou",
        num_samples: int = 0,
        seed: int | None = 0,
        sd_key: str = "pred_dice_sd",
        scalars_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"PredictQualityd reads one key (the stage-2 input stack), got {self.keys}.")
        self.dice_key, self.iou_key, self.sd_key, self.scalars_key = dice_key, iou_key, sd_key, scalars_key
        self.predict = PredictQuality(network, num_samples, seed)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            scalars = None if self.scalars_key is None else d[self.scalars_key]
            d[self.dice_key], d[self.iou_key], sd = self.predict(d[key], scalars)
            if sd is not None:
                d[self.sd_key] = sd
        return d


PredictQualityD = PredictQualityDict = PredictQualityd
