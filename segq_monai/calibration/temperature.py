"""Temperature scaling of the stage-1 class probabilities (Guo et al. 2017), and their calibration error.

:func:`fit_temperature` fits one temperature ``T > 0`` on held-out labelled voxels by minimising the mean negative
log-likelihood of ``softmax(logits / T)``; every sampler of :mod:`segq_monai.inferers.samplers` applies it
(``temperature`` argument: ``logits / T`` before the activation). ``T > 1`` softens over-confident probabilities,
``T < 1`` sharpens them;
the argmax (the segmentation) never changes. :func:`expected_calibration_error` reports the calibration error with
MONAI's ``monai.metrics.CalibrationErrorMetric``; :func:`cross_fitted_calibration` fits the temperature on held-out
cases and measures its effect by 2-fold cross-fitting over cases. In the bundle, ``configs/fit_temperature.json`` writes
the temperature next to the stage-1 checkpoint (``temperature.json``), :func:`load_temperature` reads it back,
and every sampler of :mod:`segq_monai.inferers.samplers` applies it (``temperature`` argument).

Shapes. Logits and probabilities are ``[N, C, H, W[, D]]`` (channel-first batch) or flattened ``[M, C]`` (M voxels);
labels are class indices in ``[0, C)``: ``[N, H, W[, D]]`` or ``[N, 1, H, W[, D]]``, respectively ``[M]`` or
``[M, 1]``. All voxels of all cases are pooled.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.metrics import CalibrationErrorMetric
from scipy import optimize

from segq_monai.inferers.samplers import check_temperature
from segq_monai.utils.booleans import as_bool

__all__ = [
    "bundle_temperature",
    "cross_fitted_calibration",
    "expected_calibration_error",
    "fit_temperature",
    "load_temperature",
]

#: how to get a temperature file, for error messages
_FIX = (
    "run bundle/configs/fit_temperature.json first (python -m monai.bundle run --bundle_root bundle --config_file "
    "bundle/configs/fit_temperature.json --fold N), or set temperature_scaling to false"
)


def _flatten(scores: torch.Tensor, labels: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, C, *S]`` / ``[M, C]`` scores and their class-index labels as ``[M, C]`` and long ``[M]``."""
    scores, labels = torch.as_tensor(scores), torch.as_tensor(labels, device=torch.as_tensor(scores).device)
    if scores.ndim < 2:
        raise ValueError(f"`{name}` must be [N, C, H, W[, D]] or [M, C], got shape {tuple(scores.shape)}.")
    num_classes = scores.shape[1]
    if num_classes < 2:
        raise ValueError(
            f"`{name}` has one channel; pass two-class scores (for a sigmoid logit z, stack [0, z] on dim 1)."
        )
    want = (scores.shape[0], *scores.shape[2:])
    if labels.shape != want and not (
        labels.ndim == scores.ndim and labels.shape[1] == 1 and (labels.shape[0], *labels.shape[2:]) == want
    ):
        raise ValueError(
            f"`labels` must hold one class index per voxel, shape {want} or with a channel of 1, got "
            f"{tuple(labels.shape)} for `{name}` of shape {tuple(scores.shape)}."
        )
    flat = scores.movedim(1, -1).reshape(-1, num_classes)
    index = labels.reshape(-1)
    if flat.shape[0] == 0:
        raise ValueError(f"`{name}` holds no voxels; pass at least one labelled voxel.")
    if index.is_floating_point() and not torch.all(index == index.round()):
        raise ValueError("`labels` must be class indices (integers), got non-integer values.")
    if int(index.min()) < 0 or int(index.max()) >= num_classes:
        raise ValueError(
            f"`labels` must be class indices in [0, {num_classes}), got values in [{int(index.min())}, "
            f"{int(index.max())}]."
        )
    if not torch.all(torch.isfinite(flat)):
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return flat, index.long()


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, bounds: tuple[float, float] = (0.01, 100.0)) -> float:
    """The temperature ``T`` minimising the mean NLL ``-log softmax(logits / T)[label]`` over held-out voxels.

    The NLL is convex in ``1 / T``, hence unimodal in ``log T``; it is minimised by a bounded Brent search over
    ``log T`` (``scipy.optimize.minimize_scalar``, tolerance 1e-7 in ``log T``), in float64 on the logits' device.
    At the optimum the mean logit of the true class equals the mean expected logit under ``softmax(logits / T)``.

    Args:
        logits: stage-1 pre-softmax outputs, ``[N, C, H, W[, D]]`` or ``[M, C]``, C >= 2, finite; on cases not
            used to train the network.
        labels: class indices, ``[N, (1,) H, W[, D]]`` or ``[M(, 1)]``.
        bounds: search interval for ``T``, ``0 < low < high``. A result whose NLL is not below that at a bound
            (e.g. every voxel already classified correctly: the NLL keeps falling as ``T -> 0``) comes with a
            ``UserWarning``.

    Returns:
        ``T`` as a python float, > 0 (dimensionless).
    """
    low, high = bounds
    if not 0 < low < high or not math.isfinite(high):
        raise ValueError(f"bounds must satisfy 0 < low < high < inf, got {bounds}.")
    flat, index = _flatten(logits, labels, "logits")
    flat = flat.detach().to(torch.float64)

    def nll(log_t: float) -> float:
        return float(F.cross_entropy(flat * math.exp(-log_t), index))

    res = optimize.minimize_scalar(
        nll, bounds=(math.log(low), math.log(high)), method="bounded", options={"xatol": 1e-7}
    )
    temperature = math.exp(res.x)
    at_bound = min(res.x - math.log(low), math.log(high) - res.x) < 1e-4
    if at_bound or min(nll(math.log(low)), nll(math.log(high))) <= res.fun + 1e-12:  # or flat up to a bound
        warnings.warn(
            f"the fitted temperature {temperature:.4g} is not an interior minimum: the held-out NLL is as low at a "
            f"search bound {bounds} (e.g. every voxel is classified correctly, so the NLL keeps falling as T -> 0). "
            "Check the held-out data or widen `bounds`.",
            UserWarning,
            stacklevel=2,
        )
    return temperature


def expected_calibration_error(
    prob: torch.Tensor, labels: torch.Tensor, num_bins: int = 15, include_background: bool = True
) -> float:
    """Class-wise expected calibration error (ECE) of class probabilities, by ``monai.metrics.CalibrationErrorMetric``.

    For each class ``c``, the voxels (all cases pooled) are binned by ``p_c`` into ``num_bins`` equal-width bins on
    [0, 1]; the ECE of the class is ``sum_b (n_b / M) * |mean p_c in b - fraction of label == c in b|``; the result
    is the mean over classes. This is MONAI's definition (``calibration_reduction="expected"`` on one-hot labels),
    which scores every class's probability, not only the top-label confidence of Guo et al. (2017). MONAI bins in
    float32, with edges at ``k * (1 + eps32) / num_bins`` and right-closed bins (a value on an edge falls in the
    lower bin).

    Args:
        prob: class probabilities, ``[N, C, H, W[, D]]`` or ``[M, C]``, in [0, 1] (e.g. ``softmax(logits / T)``).
        labels: class indices, ``[N, (1,) H, W[, D]]`` or ``[M(, 1)]``.
        num_bins: number of confidence bins, >= 1.
        include_background: False leaves out class 0.

    Returns:
        ECE as a python float in [0, 1] (probability units); lower is better calibrated.
    """
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}.")
    flat, index = _flatten(prob, labels, "prob")
    y_pred = flat.detach().float().T.contiguous().unsqueeze(0)  # [1, C, M]: every voxel of every case in one batch item
    y = F.one_hot(index, flat.shape[1]).float().T.contiguous().unsqueeze(0)
    metric = CalibrationErrorMetric(
        num_bins=num_bins,
        include_background=include_background,
        calibration_reduction="expected",
        metric_reduction="mean",
    )
    metric(y_pred=y_pred, y=y)
    return float(metric.aggregate())


def cross_fitted_calibration(
    logits: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], num_bins: int = 15
) -> dict[str, Any]:
    """Fit one temperature on the voxels of all cases, and estimate its held-out effect by 2-fold cross-fitting.

    The temperature is fitted on every voxel of every case (:func:`fit_temperature`). Its effect is measured
    without reusing the voxels it was fitted on: the cases are split into two halves alternately by index (cases
    0, 2, 4, ... and 1, 3, 5, ...), a temperature is fitted on each half, and each half's logits are scaled with
    the temperature of the *other* half; the ECE and NLL "after" are those of the pooled scaled probabilities.
    Voxels of one case are correlated, so cases, not voxels, are split.

    Args:
        logits: per case, stage-1 logits ``[M_i, C]`` (M_i voxels, C >= 2 classes), on cases the network did not
            train on; at least 2 cases.
        labels: per case, class indices ``[M_i]``.
        num_bins: bins of :func:`expected_calibration_error`.

    Returns:
        ``temperature`` (fitted on all cases, dimensionless); ``ece_before`` / ``ece_after`` (class-wise ECE of
        ``softmax(logits)`` and of the cross-fitted ``softmax(logits / T_other_half)``, probability units, MONAI's
        ``CalibrationErrorMetric``); ``nll_before`` / ``nll_after`` (mean negative log-likelihood of the label,
        nats per voxel); ``cross_fit_temperatures`` (``[T_even_cases, T_odd_cases]``); ``n_cases``; ``n_voxels``;
        ``num_bins``.
    """
    if len(logits) != len(labels):
        raise ValueError(f"got logits of {len(logits)} cases but labels of {len(labels)}.")
    if len(logits) < 2:
        raise ValueError(
            f"the temperature fit needs at least 2 held-out cases (for the 2-fold cross-fitted ECE), got "
            f"{len(logits)}; calibrate on a larger held-out fold."
        )
    flat = [_flatten(z, y, f"logits of case {i}") for i, (z, y) in enumerate(zip(logits, labels))]
    all_logits = torch.cat([z for z, _ in flat]).double()
    all_labels = torch.cat([y for _, y in flat])
    halves = [flat[0::2], flat[1::2]]
    half_t = [fit_temperature(torch.cat([z for z, _ in h]), torch.cat([y for _, y in h])) for h in halves]
    # each half scaled with the temperature fitted on the other half, in the order of all_logits' halves
    scaled = torch.cat([torch.cat([z for z, _ in h]).double() / half_t[1 - k] for k, h in enumerate(halves)])
    scaled_labels = torch.cat([torch.cat([y for _, y in h]) for h in halves])
    return {
        "temperature": fit_temperature(all_logits, all_labels),
        "ece_before": expected_calibration_error(torch.softmax(all_logits, 1), all_labels, num_bins),
        "ece_after": expected_calibration_error(torch.softmax(scaled, 1), scaled_labels, num_bins),
        "nll_before": float(F.cross_entropy(all_logits, all_labels)),
        "nll_after": float(F.cross_entropy(scaled, scaled_labels)),
        "cross_fit_temperatures": half_t,
        "n_cases": len(flat),
        "n_voxels": int(all_labels.numel()),
        "num_bins": int(num_bins),
    }


def load_temperature(path: str | os.PathLike) -> float:
    """The fitted temperature in a JSON file written by ``bundle/configs/fit_temperature.json``
    (:class:`segq_monai.handlers.TemperatureFit`): its ``"temperature"`` value, a float > 0.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not JSON, has no ``"temperature"``, or holds no finite number > 0 there.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"temperature file {path} does not exist; {_FIX}.")
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)["temperature"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(
            f"temperature file {path} is not a JSON object with a 'temperature' ({type(e).__name__}: {e}); {_FIX}."
        ) from e
    try:
        return check_temperature(value)
    except ValueError as e:
        raise ValueError(f"temperature file {path} holds an invalid temperature: {e} Rewrite it: {_FIX}.") from e


def bundle_temperature(temperature_scaling: bool | str, temperature_file: str | os.PathLike) -> float:
    """The bundle's ``temperature`` id: :func:`load_temperature` of ``temperature_file`` when
    ``temperature_scaling`` is on, else 1.0 (no scaling).

    ``temperature_scaling`` is a bool, or the strings ``"true"`` / ``"false"`` (any case) that the
    ``python -m monai.bundle run --temperature_scaling false`` command line passes (Python Fire keeps lower-case
    ``false`` a string, which is truthy; see :func:`segq_monai.utils.booleans.as_bool`).
    """
    return load_temperature(temperature_file) if as_bool(temperature_scaling, "temperature_scaling") else 1.0
