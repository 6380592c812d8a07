"""The fit's labelled cases: read from ``--datalist``, split into the head's ``training`` cases and the
``calibration`` cases, and checked (labels present, enough cases for the guaranteed flag and the intervals).

:func:`split_cases` takes a ``calibration`` section of the datalist when it has one, else a seeded random
``--calibration_fraction`` of its cases; with ``--recalibrate`` all of them are calibration cases.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from segq_monai.calibration.flag import min_flag_cases
from segq_monai.calibration.recalibration import min_interval_cases
from segq_monai.data.datalist import load_datalist, read_datalist
from segq_monai.data.outputs import first_path

__all__ = ["check_calibration_size", "split_cases"]


def check_calibration_size(n: int, args: argparse.Namespace, source: str, fix: str) -> None:
    """Enough (``n``) labelled calibration cases for the guaranteed flag at ``args.alpha``, ``args.delta`` and for
    the intervals at ``args.coverage``; ``source`` says where they came from and ``fix`` how to get more."""
    if not 0.0 < args.coverage < 1.0:
        raise ValueError(f"--coverage is the intervals' promised coverage, in (0, 1), e.g. 0.9; got {args.coverage}.")
    for what, needed in (
        (f"The guaranteed flag needs at least {{}} labelled calibration cases at alpha={args.alpha}, "
         f"delta={args.delta}", min_flag_cases(args.alpha, args.delta)),
        (f"Intervals at coverage {args.coverage} need at least {{}} labelled calibration cases (half of them fit the "
         "recalibration, the rest give the conformal scores)", min_interval_cases(args.coverage)),
    ):  # fmt: skip
        if n < needed:
            raise ValueError(f"{what.format(needed)}; {source}. {fix}")


def split_cases(args: argparse.Namespace) -> tuple[dict[str, list[dict]], str]:
    """The labelled cases, ``training`` (stage 2) and ``calibration``, checked for labels and numbers; and the
    section of ``args.datalist`` they came from. With ``--recalibrate`` all of them are calibration cases."""
    path = Path(args.datalist)
    sections = read_datalist(path)
    key = args.datalist_key or ("validation" if sections.get("validation") else "training")
    if args.recalibrate and not args.datalist_key and sections.get("calibration"):
        key = "calibration"
    items = load_datalist(path, key)
    if args.recalibrate:
        stage2, calibration = [], items
    elif sections.get("calibration"):
        stage2, calibration = items, load_datalist(path, "calibration")
    else:
        order = np.random.default_rng(args.seed).permutation(len(items))
        n_cal = round(len(items) * args.calibration_fraction)
        calibration = [items[i] for i in sorted(order[:n_cal])]
        stage2 = [items[i] for i in sorted(order[n_cal:])]
    for name, cases in (("training", stage2), ("calibration", calibration)):
        unlabelled = [Path(str(first_path(c["image"]))).name for c in cases if "label" not in c]
        if unlabelled:
            raise ValueError(f"Cases {unlabelled} ({name} cases, from {path}) have no 'label'; fitting needs labels.")
    split_by_fit = not (args.recalibrate or sections.get("calibration"))
    check_calibration_size(
        len(calibration), args,
        f"{path} gives {len(calibration)} (of {len(items)} in {key!r}"
        f"{f', calibration_fraction {args.calibration_fraction}' if split_by_fit else ''})",
        "Add labelled cases the host network did not train on"
        f"{', raise --calibration_fraction' if split_by_fit else ''}, raise --alpha/--delta or lower --coverage.",
    )  # fmt: skip
    if len(stage2) < 2 and not args.recalibrate:
        raise ValueError(
            f"Training the quality head needs at least 2 labelled cases; {path} leaves {len(stage2)} after "
            f"{len(calibration)} calibration cases. Add labelled cases or lower --calibration_fraction."
        )
    return {"training": stage2, "calibration": calibration}, key
