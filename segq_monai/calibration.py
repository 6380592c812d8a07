"""Temperature scaling of the stage-1 class probabilities (Guo et al. 2017), and their calibration error.

:func:`fit_temperature` fits one temperature ``T > 0`` on held-out labelled voxels by minimising the mean negative
log-likelihood of ``softmax(logits / T)``; :class:`TemperatureScaling` applies it (``logits / T``) in front of the
softmax, e.g. inside a sampler's network. ``T > 1`` softens over-confident probabilities, ``T < 1`` sharpens them;
the argmax (the segmentation) never changes. :func:`expected_calibration_error` reports the calibration error with
MONAI's ``monai.metrics.CalibrationErrorMetric``.

Shapes. Logits and probabilities are ``[N, C, H, W[, D]]`` (channel-first batch) or flattened ``[M, C]`` (M voxels);
labels are class indices in ``[0, C)``: ``[N, H, W[, D]]`` or ``[N, 1, H, W[, D]]``, respectively ``[M]`` or
``[M, 1]``. All voxels of all cases are pooled.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from monai.metrics import CalibrationErrorMetric
from scipy import optimize
from torch import nn

__all__ = ["TemperatureScaling", "expected_calibration_error", "fit_temperature"]


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


class TemperatureScaling(nn.Module):
    """Divide logits by a fixed temperature: ``softmax(TemperatureScaling(T)(logits))`` are the calibrated
    probabilities.

    Args:
        temperature: ``T > 0``, e.g. from :func:`fit_temperature`; 1.0 is the identity. Stored as a buffer, so it
            is saved in the ``state_dict`` and follows ``.to(device)``.

    Example::

        scale = TemperatureScaling(fit_temperature(val_logits, val_labels))
        prob = torch.softmax(scale(network(image)), dim=1)  # [B, C, H, W[, D]]
    """

    temperature: torch.Tensor

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}.")
        self.register_buffer("temperature", torch.tensor(float(temperature), dtype=torch.float64))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits / T``, any shape (e.g. ``[B, C, H, W[, D]]``), same dtype and device."""
        return logits / self.temperature.to(device=logits.device, dtype=logits.dtype)

    def extra_repr(self) -> str:
        return f"temperature={float(self.temperature):.6g}"


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
