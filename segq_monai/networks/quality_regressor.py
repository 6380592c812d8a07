"""Stage-2 network: a quality-regression head that predicts Dice per foreground class.

After DeVries & Taylor (arXiv 1807.00502): a small CNN reads a channel stack (image, one-hot segmentation,
uncertainty maps; see :class:`segq_monai.transforms.quality.QualityInputd`) and regresses the segmentation's
Dice for each foreground class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

__all__ = ["QualityRegressor"]


class QualityRegressor(nn.Module):
    """Convolutional encoder + global average pooling + a small linear head + sigmoid.

    The encoder is one MONAI block per entry of ``channels``: a :class:`~monai.networks.blocks.ResidualUnit`
    with ``num_res_units`` subunits (or a plain :class:`~monai.networks.blocks.Convolution` when
    ``num_res_units == 0``) that downsamples by the matching ``strides`` entry. Global average pooling makes the
    network independent of the input's spatial size; the head is ``Linear -> PReLU -> Dropout -> Linear ->
    Sigmoid``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the input stack (see
            :func:`segq_monai.transforms.quality.quality_input_channels`).
        out_channels: outputs, normally the number of foreground classes ``num_classes - 1``.
        channels: feature channels of the encoder blocks.
        strides: downsampling factor of each block (same length as ``channels``).
        num_res_units: subunits per residual block; 0 uses plain convolutions.
        norm: normalisation of the encoder blocks (a MONAI ``Norm`` name such as ``"instance"``, ``"batch"``,
            or ``None``).
        dropout: dropout probability in the encoder blocks and the head, in [0, 1).

    Input ``[B, in_channels, H, W[, D]]`` with every spatial size >= ``prod(strides)`` (with instance norm,
    at least one of them larger, as instance norm of a single element is undefined); output
    ``[B, out_channels]`` in [0, 1] (predicted Dice per foreground class).

    Example::

        net = QualityRegressor(spatial_dims=2, in_channels=4, out_channels=1)
        dice = net(torch.rand(8, 4, 64, 64))  # [8, 1] in [0, 1]
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[int] = (2, 2, 2, 2),
        num_res_units: int = 1,
        norm: str | tuple | None = "instance",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(
                f"in_channels and out_channels must be >= 1, got in_channels={in_channels}, "
                f"out_channels={out_channels}."
            )
        if len(channels) == 0 or len(channels) != len(strides):
            raise ValueError(
                f"channels and strides must be non-empty and of the same length, got channels={tuple(channels)} "
                f"and strides={tuple(strides)}."
            )
        if num_res_units < 0:
            raise ValueError(f"num_res_units must be >= 0, got {num_res_units}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.strides = tuple(int(s) for s in strides)
        self.min_size = math.prod(self.strides)
        norm_name = norm[0] if isinstance(norm, tuple) else norm
        self.instance_norm = isinstance(norm_name, str) and norm_name.lower().startswith("instance")

        blocks: list[nn.Module] = []
        c_in = in_channels
        for c_out, stride in zip(channels, strides):
            if num_res_units > 0:
                block: nn.Module = ResidualUnit(
                    spatial_dims, c_in, c_out, strides=stride, subunits=num_res_units, norm=norm, dropout=dropout
                )
            else:
                block = Convolution(spatial_dims, c_in, c_out, strides=stride, norm=norm, dropout=dropout)
            blocks.append(block)
            c_in = c_out
        self.encoder = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool3d(1) if spatial_dims == 3 else nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in, c_in),
            nn.PReLU(),
            nn.Dropout(dropout),
            nn.Linear(c_in, out_channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[B, in_channels, *spatial]`` -> ``[B, out_channels]`` in [0, 1]."""
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(
                f"QualityRegressor(spatial_dims={self.spatial_dims}) expects input [B, C, "
                f"{'H, W, D' if self.spatial_dims == 3 else 'H, W'}] of rank {self.spatial_dims + 2}, got shape "
                f"{tuple(x.shape)}; add the batch/channel dimensions or set spatial_dims."
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"QualityRegressor expects {self.in_channels} input channels, got {x.shape[1]} (shape "
                f"{tuple(x.shape)}); set in_channels to match the QualityInputd stack "
                "(see quality_input_channels)."
            )
        if min(x.shape[2:]) < self.min_size:
            raise ValueError(
                f"QualityRegressor needs every spatial size >= prod(strides) = {self.min_size}, got "
                f"{tuple(x.shape[2:])}; pad/resize the input or use fewer/smaller strides."
            )
        deepest = list(x.shape[2:])
        for stride in self.strides:  # each block: kernel 3, "same" padding -> ceil(size / stride)
            deepest = [-(-size // stride) for size in deepest]
        if self.instance_norm and math.prod(deepest) == 1:
            raise ValueError(
                f"QualityRegressor with instance norm needs more than one element at the deepest level, but "
                f"spatial size {tuple(x.shape[2:])} shrinks to {tuple(deepest)}; use an input larger than "
                f"prod(strides) = {self.min_size} along one axis, fewer strides, or norm='batch'."
            )
        return self.head(self.pool(self.encoder(x)))
