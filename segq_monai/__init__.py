"""segq-monai: uncertainty maps and predicted segmentation quality for MONAI pipelines."""

from __future__ import annotations

__version__ = "0.1.0"
