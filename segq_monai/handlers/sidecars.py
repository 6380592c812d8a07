"""The sidecar job of :class:`~segq_monai.handlers.QualityWriter`: ``output_dir/<case>/<case>_quality.json``, one
case's row and datalist entry, written after its maps."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from segq_monai.data.outputs import case_name, sidecar_path
from segq_monai.utils.atomic import atomic_write_text

__all__ = ["Sidecars"]


class Sidecars:
    """Writes and reads the sidecars under ``output_dir``."""

    def __init__(self, output_dir: str | os.PathLike) -> None:
        self.output_dir = output_dir

    def write(self, case: str, row: Mapping[str, Any], entry: Mapping[str, Any]) -> None:
        atomic_write_text(sidecar_path(self.output_dir, case), json.dumps({"row": row, "entry": entry}, indent=1))

    def read(self, path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
        """The row and entry of the case of input ``path``, written by an earlier run."""
        case = case_name(path)
        sidecar = sidecar_path(self.output_dir, case)
        if not sidecar.is_file():
            raise FileNotFoundError(
                f"Case {case!r} ({path}) has no result: this run did not compute it and {sidecar} does not exist. "
                "Leave it in the dataset (segq_monai.data.outputs.pending_items keeps unfinished cases) or drop it "
                "from the writer's items."
            )
        saved = json.loads(sidecar.read_text())
        return saved["row"], saved["entry"]
