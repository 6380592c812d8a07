"""What a segmentation network takes and gives, read from its convolutions: the input convolution, and
``spatial_dims`` / ``in_channels`` / ``out_channels`` (the signature a fit folder records and a deployment checks)."""

from __future__ import annotations

from torch import nn

__all__ = ["input_convolution", "network_signature"]


def input_convolution(network: nn.Module) -> nn.Module | None:
    """The convolution that reads the network's input, or ``None`` if it has none: the first one (in registration
    order) whose input channels no other convolution produces (the last one's output aside), which is the first one
    of MONAI's ``UNet``, ``SegResNet``, ``SwinUNETR``, ``DynUNet``... and the stem of ``DiNTS``, which registers its
    searched cells before it; the first one when every convolution's input is another's output."""
    convs = [m for m in network.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    produced = {int(c.out_channels) for c in convs[:-1]}
    return next((c for c in convs if int(c.in_channels) not in produced), convs[0] if convs else None)


def network_signature(network: nn.Module) -> dict[str, int]:
    """``spatial_dims``, ``in_channels`` and ``out_channels`` of a segmentation network, from its convolutions.

    The input convolution (:func:`input_convolution`: the first one of MONAI's
    ``UNet``, ``SegResNet``, ``SwinUNETR``, ``DynUNet``, ``BasicUNet``..., the stem of ``DiNTS``) gives the input
    channels and the dimensionality, the last one (in registration order) the output channels; true also when the
    config does not name these arguments.

    Raises:
        ValueError: the network has no convolution; the message names the ids to set instead.
    """
    convs = [m for m in network.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    if not convs:
        raise ValueError(
            f"Cannot tell the spatial_dims / in_channels / out_channels of the host network "
            f"({type(network).__name__}: it has no convolution); set them with --segq#host "
            "\"{'spatial_dims': 3, 'in_channels': 1, 'out_channels': 2}\"."
        )
    first = input_convolution(network)
    return {
        "spatial_dims": len(first.kernel_size),
        "in_channels": int(first.in_channels),
        "out_channels": int(convs[-1].out_channels),
    }
