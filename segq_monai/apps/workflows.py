"""Running the bundle's workflows from Python, as ``python -m monai.bundle run`` runs them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai.bundle import run as bundle_run

__all__ = ["run_workflow"]


def run_workflow(bundle_root: Path, configs: Sequence[str], **overrides: Any) -> None:
    """Run one workflow (a config file, or several merged in order) of the bundle at ``bundle_root``, with
    ``configs`` relative to its ``configs/`` folder unless absolute and ``overrides`` as ``--id value`` pairs."""
    files = [str(p if os.path.isabs(p) else bundle_root / "configs" / p) for p in configs]
    bundle_run(
        config_file=files if len(files) > 1 else files[0],
        meta_file=str(bundle_root / "configs" / "metadata.json"),
        logging_file=str(bundle_root / "configs" / "logging.conf"),
        bundle_root=str(bundle_root),
        **overrides,
    )
