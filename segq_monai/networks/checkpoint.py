"""The quality head's checkpoint: loading its weights onto a built head, with errors that name the file and the fix."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["load_quality_head"]


def load_quality_head(network: nn.Module, checkpoint: str | os.PathLike) -> nn.Module:
    """Load the quality head's weights (``{"model": state_dict}`` or a plain state dict) with
    ``torch.load(..., weights_only=True)`` onto the device of ``network``; returns ``network`` in eval mode.

    Raises:
        FileNotFoundError: no such file. ValueError: a truncated file, or the weights of another head; the file named.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"Quality head checkpoint {path} does not exist; point segq#fit_dir at a fit folder (python -m segq_monai "
            "fit) or segq#quality_checkpoint at trained weights (train_quality.json writes them)."
        )
    device = next(network.parameters()).device
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise ValueError(
            f"Quality head checkpoint {path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0]}): it is "
            "truncated or not a torch checkpoint; rerun the fit step that writes it (python -m segq_monai fit, "
            "the same command: it continues) or restore the file."
        ) from e
    try:
        network.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
    except RuntimeError as e:
        raise ValueError(
            f"Quality head checkpoint {path} holds the weights of another head (another architecture, classes or "
            f"inputs: {str(e).splitlines()[0]}); point segq#fit_dir at the fit folder it belongs to, or refit."
        ) from e
    return network.eval()
