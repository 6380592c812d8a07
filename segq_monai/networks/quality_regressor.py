"""Stage-2 network: a quality-regression head that predicts Dice per foreground class.

After DeVries & Taylor (arXiv 1807.00502): a small CNN reads a channel stack (image, one-hot segmentation,
uncertainty maps; see :class:`segq_monai.transforms.quality.QualityInputd`) and regresses the segmentation's
Dice for each foreground class. :func:`quality_strides` chooses its per-axis strides from the data's shape and
spacing (as MONAI's DynUNet recipes do), so thin stacks, anisotropic volumes and 2D images all fit it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

__all__ = ["QualityRegressor", "quality_strides"]

#: the encoder's convolution kernel size (each block: kernel 3, "same" padding)
KERNEL_SIZE = 3


def _per_axis(strides: Sequence[int | Sequence[int]], spatial_dims: int) -> list[tuple[int, ...]]:
    """Each level's stride as a ``spatial_dims``-tuple (an int applies to every axis)."""
    out = []
    for s in strides:
        axes = (int(s),) * spatial_dims if isinstance(s, (int, float)) else tuple(int(v) for v in s)
        if len(axes) != spatial_dims or min(axes) < 1:
            raise ValueError(
                f"Each stride must be an int >= 1 or {spatial_dims} of them (one per axis), got {s!r} in "
                f"{list(strides)!r}; e.g. [2, 2] or [[2, 2, 1], [2, 2, 2]]."
            )
        out.append(axes)
    return out


def quality_strides(
    shape: Sequence[int],
    spacing: Sequence[float] | None = None,
    levels: int = 4,
    min_size: int = 4,
    max_spacing_ratio: float = 2.0,
) -> list[list[int]]:
    """Per-axis strides of the :class:`QualityRegressor` encoder for data of spatial ``shape`` and ``spacing``.

    As MONAI's DynUNet recipes choose theirs (``monai.apps.nnunet``'s "get kernels and strides"): at each of
    ``levels`` levels an axis is halved (stride 2) only while it keeps at least ``min_size`` voxels
    (``ceil(size / 2) >= min_size``) and its spacing is at most ``max_spacing_ratio`` times the finest spacing at that
    level; else its stride is 1. Spacings double with each stride 2, so a coarse axis joins once the others catch up.

    Args:
        shape: the spatial size the head reads, ``(H, W[, D])`` voxels.
        spacing: voxel spacing per axis (any unit, e.g. mm); ``None``: isotropic.
        levels: encoder blocks (``len(channels)``).
        min_size: smallest size, in voxels, an axis is halved to.
        max_spacing_ratio: an axis coarser than this many times the finest one is not halved.

    Returns:
        ``levels`` lists of ``len(shape)`` strides, each 1 or 2, e.g. ``[[2, 2, 1], [2, 2, 1], [2, 2, 2], [2, 2, 1]]``
        for ``shape=(128, 128, 10)``, ``spacing=(1.25, 1.25, 8)``.

    Raises:
        ValueError: an axis smaller than the kernel (3 voxels): the head cannot read the shape even with stride 1.

    Example::

        quality_strides((512, 512, 120))  # [[2, 2, 2]] * 4
    """
    sizes = [int(s) for s in shape]
    if not sizes or min(sizes) < KERNEL_SIZE:
        raise ValueError(
            f"The quality head cannot read spatial shape {tuple(sizes)}: every axis needs at least {KERNEL_SIZE} "
            "voxels (its convolution kernel), even with stride 1. Give 2D data as 2D files (e.g. PNG or a 2D NIfTI, "
            "not a 1-slice volume), or resample/pad the axis."
        )
    spacings = [1.0] * len(sizes) if spacing is None else [float(s) for s in spacing]
    if len(spacings) != len(sizes) or min(spacings) <= 0:
        raise ValueError(f"spacing must be {len(sizes)} positive values (one per axis of {tuple(sizes)}), got {spacing}.")
    strides = []
    for _ in range(levels):
        finest = min(spacings)
        level = [
            2 if -(-size // 2) >= min_size and sp <= max_spacing_ratio * finest else 1
            for size, sp in zip(sizes, spacings)
        ]
        sizes = [-(-size // s) for size, s in zip(sizes, level)]
        spacings = [sp * s for sp, s in zip(spacings, level)]
        strides.append(level)
    return strides


class QualityRegressor(nn.Module):
    """Convolutional encoder + global average pooling + a small linear head + sigmoid.

    The encoder is one MONAI block per entry of ``channels``: a :class:`~monai.networks.blocks.ResidualUnit`
    with ``num_res_units`` subunits (or a plain :class:`~monai.networks.blocks.Convolution` when
    ``num_res_units == 0``) that downsamples by the matching ``strides`` entry. Global average pooling makes the
    network independent of the input's spatial size; the head is ``Linear -> PReLU -> Dropout -> Linear ->
    Sigmoid``. With ``num_scalars > 0`` the head also reads a vector of per-case scalars (e.g. the stage-1 aggregates
    of :class:`segq_monai.transforms.QualityScalarsd`), concatenated to the pooled features before its first layer.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the input stack (see
            :func:`segq_monai.transforms.quality.quality_input_channels`).
        out_channels: outputs, normally the number of foreground classes ``num_classes - 1``.
        channels: feature channels of the encoder blocks.
        strides: downsampling factor of each block (same length as ``channels``): an int, or one per spatial axis
            (e.g. ``[[2, 2, 1], [2, 2, 2]]`` for thin stacks; :func:`quality_strides` chooses them from the data).
        num_res_units: subunits per residual block; 0 uses plain convolutions.
        norm: normalisation of the encoder blocks (a MONAI ``Norm`` name such as ``"instance"``, ``"batch"``,
            or ``None``).
        dropout: dropout probability in the encoder blocks and the head, in [0, 1).
        num_scalars: length ``S`` of the per-case scalar vector ``forward(x, scalars)`` reads (0: none, the default;
            the weights' names and shapes are then those of a head without this option).

    Input ``[B, in_channels, H, W[, D]]`` with each spatial size >= the product of that axis' strides (with instance norm,
    at least one of them larger, as instance norm of a single element is undefined); output
    ``[B, out_channels]`` in [0, 1] (predicted Dice per foreground class); with ``num_scalars``, ``scalars`` ``[B, S]``.

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
        strides: Sequence[int | Sequence[int]] = (2, 2, 2, 2),
        num_res_units: int = 1,
        norm: str | tuple | None = "instance",
        dropout: float = 0.0,
        num_scalars: int = 0,
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
        if num_scalars < 0:
            raise ValueError(f"num_scalars must be >= 0 (0: no per-case scalars), got {num_scalars}.")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_scalars = num_scalars
        self.strides = tuple(s if len(set(s)) > 1 else s[0] for s in _per_axis(strides, spatial_dims))
        #: the smallest input size per axis: the product of that axis' strides
        self.min_size = tuple(math.prod(axes) for axes in zip(*_per_axis(strides, spatial_dims)))
        norm_name = norm[0] if isinstance(norm, tuple) else norm
        self.instance_norm = isinstance(norm_name, str) and norm_name.lower().startswith("instance")

        blocks: list[nn.Module] = []
        c_in = in_channels
        for c_out, stride in zip(channels, self.strides):
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
            nn.Linear(c_in + num_scalars, c_in),
            nn.PReLU(),
            nn.Dropout(dropout),
            nn.Linear(c_in, out_channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor, scalars: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``[B, in_channels, *spatial]`` (and ``scalars`` ``[B, num_scalars]`` when ``num_scalars > 0``) ->
        ``[B, out_channels]`` in [0, 1]."""
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
        if any(size < m for size, m in zip(x.shape[2:], self.min_size)):
            raise ValueError(
                f"QualityRegressor needs each spatial size >= the product of its axis' strides = {self.min_size}, got "
                f"{tuple(x.shape[2:])}; pad/resize the input or choose strides from the data's shape "
                "(segq_monai.quality_strides)."
            )
        deepest = list(x.shape[2:])
        for stride in _per_axis(self.strides, self.spatial_dims):  # kernel 3, "same" padding -> ceil(size / stride)
            deepest = [-(-size // s) for size, s in zip(deepest, stride)]
        if self.instance_norm and math.prod(deepest) == 1:
            raise ValueError(
                f"QualityRegressor with instance norm needs more than one element at the deepest level, but "
                f"spatial size {tuple(x.shape[2:])} shrinks to {tuple(deepest)}; use an input larger than "
                f"the strides' product {self.min_size} along one axis, fewer strides, or norm='batch'."
            )
        features = self.head[0](self.pool(self.encoder(x)))  # Flatten: [B, channels[-1]]
        if self.num_scalars:
            if scalars is None or tuple(scalars.shape) != (x.shape[0], self.num_scalars):
                raise ValueError(
                    f"QualityRegressor(num_scalars={self.num_scalars}) needs scalars [B, {self.num_scalars}] = "
                    f"[{x.shape[0]}, {self.num_scalars}], got "
                    f"{None if scalars is None else tuple(scalars.shape)}; add QualityScalarsd and pass its key."
                )
            features = torch.cat([features, scalars.to(features)], dim=1)
        elif scalars is not None:
            raise ValueError("QualityRegressor got scalars but was built with num_scalars=0; set num_scalars.")
        return self.head[1:](features)
