"""Markdown of the demo's ``comparison.md``: metrics with their spread, and the time of each step beside the
machine's reference time (:func:`reference_pass_ms`).

A method's result on one split is a :class:`Result` per seed. With one seed, each cell is the report's value with
its grouped-bootstrap interval (``0.072 [0.051, 0.095]``, :mod:`segq_monai.evaluation.bootstrap`); with several,
the mean and the sample standard deviation over seeds (``0.072 ± 0.010``).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from monai.bundle import ConfigParser

from segq_monai.evaluation.bootstrap import INTERVAL_KEYS
from segq_monai.data.columns import as_float
from segq_monai.evaluation.tables import format_number, guaranteed_cells

__all__ = ["Result", "reference_pass_ms", "results_of", "spread_table", "temperature_table", "time_table"]


class Result(NamedTuple):
    """One method on one split for one seed: the report's metric block (``"mean"``), its bootstrap intervals
    (``{metric: [lo, hi]}``, or None), its guaranteed-flag entry (or None) and, for a baseline, the paired intervals
    of its metrics minus the quality head's (``bootstrap.json``'s ``against_head`` entry, or None)."""

    point: Mapping[str, Any]
    interval: Mapping[str, Sequence[float]] | None
    flag: Mapping[str, Any] | None
    against_head: Mapping[str, Sequence[float]] | None = None


def results_of(
    report: Mapping[str, Any], intervals: Mapping[str, Any] | None, head_label: str, baselines: bool = True
) -> dict[str, Result]:
    """``{label: Result}`` of the quality head (as ``head_label``) and, with ``baselines``, every baseline of one
    ``report.json`` and its ``bootstrap.json`` (``intervals``, or None)."""
    methods, against = (intervals or {}).get("methods", {}), (intervals or {}).get("against_head", {})
    head = report["quality_head"]["mean"]
    out = {head_label: Result(head, methods.get("quality_head"), report.get("guaranteed_flag"))}
    if baselines:
        for name, entry in report["baselines"].items():
            out[name] = Result(entry["mean"], methods.get(name), entry.get("guaranteed_flag"), against.get(name))
    return out


def _spread_cell(values: Sequence[float], interval: Sequence[float] | None) -> str:
    if len(values) > 1:
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        if len(v) < 2:
            return format_number(float(v[0])) if len(v) else "–"
        return f"{format_number(float(v.mean()))} ± {format_number(float(v.std(ddof=1)))}"
    cell = format_number(values[0])
    if interval is not None:
        cell += f" [{format_number(as_float(interval[0]))}, {format_number(as_float(interval[1]))}]"
    return cell


def _flag_cells(flags: Sequence[Mapping[str, Any] | None]) -> list[str]:
    if not all(flags):
        return ["–", "–"]
    if len(flags) == 1:
        return guaranteed_cells(flags[0])
    return [_spread_cell([as_float(f["fraction_accepted"]) for f in flags], None),
            _spread_cell([as_float(f["failure_rate_accepted"]) for f in flags], None)]  # fmt: skip


def spread_table(results: Mapping[str, Sequence[Result]], head_label: str | None = None) -> str:
    """A Markdown table, one row per method (``{label: [Result per seed]}``): n, MAE, Pearson, Spearman, AUROC,
    AURC, e-AURC with their spread, then the guaranteed flag's accepted fraction and failures among accepted.

    With ``head_label`` (a label of ``results``), a column after e-AURC: each other method's AURC minus that head's,
    seed by seed, with its paired bootstrap interval where the method has one (positive: the head ranks better;
    an interval above 0: better beyond the spread)."""
    paired = ["AURC − head's (paired)"] if head_label else []
    lines = [
        "| " + " | ".join(["method", "n", "MAE", "Pearson", "Spearman", "AUROC", "AURC", "e-AURC", *paired,
                           "accepted", "failures among accepted"]) + " |",
        "| --- |" + " ---: |" * (9 + len(paired)),
    ]  # fmt: skip
    for label, seeds in results.items():
        cells = [str(seeds[0].point["n"])]
        for key in INTERVAL_KEYS:
            interval = seeds[0].interval[key] if seeds[0].interval else None
            cells.append(_spread_cell([as_float(r.point.get(key)) for r in seeds], interval))
        if head_label == label:
            cells.append("–")
        elif head_label:
            differences = [as_float(r.point.get("aurc")) - as_float(h.point.get("aurc"))
                           for r, h in zip(seeds, results[head_label])]  # fmt: skip
            cells.append(_spread_cell(differences, seeds[0].against_head["aurc"] if seeds[0].against_head else None))
        cells += _flag_cells([r.flag for r in seeds])
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def reference_pass_ms(bundle_root: Path, device: str, repeats: int = 10) -> float:
    """Median wall time (ms) of one forward pass of the bundle's stage-1 network (``inference.json``
    ``network_def``, eval mode, random weights) on one ``[1, 1, 256, 256]`` input, after 2 warm-up passes."""
    parser = ConfigParser()
    parser.read_config(str(bundle_root / "configs" / "inference.json"))
    network = parser.get_parsed_content("network_def").to(device).eval()
    x = torch.rand(1, 1, 256, 256, device=device)
    times = []
    with torch.no_grad():
        for i in range(2 + repeats):
            start = time.perf_counter()
            network(x)
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            if i >= 2:
                times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def time_table(steps: Sequence[tuple[str, float]], reference_ms: Sequence[float]) -> str:
    """Markdown: each step's wall time (s), the total, and the machine's reference time: one forward pass of the
    stage-1 network at 256² (ms, measured at the start and at the end of the run) with the ratio total/reference,
    so that a reader can scale the total to another machine."""
    total = sum(s for _, s in steps)
    ref = float(np.mean(reference_ms))
    lines = ["| step | s |", "| --- | ---: |"] + [f"| {name} | {s:.1f} |" for name, s in steps]
    lines.append(f"| **total** | **{total:.1f}** ({total / 60:.1f} min) |")
    return (
        "\n".join(lines) + "\n\nReference: one forward pass of the stage-1 network (eval mode, batch 1, 256×256) took "
        + " and ".join(f"{r:.1f}" for r in reference_ms) + f" ms (start, end of the run); total / reference = "
        f"{total / (ref / 1000):.0f} passes. On another machine, expect about that many of its own passes.\n"
    )


def temperature_table(models: Path, num_folds: int) -> str:
    """Markdown: each fold's fitted temperature and its calibration errors (``fit_temperature.json`` outputs, seed 0)."""
    lines = [
        "## Temperature scaling of stage 1 (fitted per fold on its held-out clean slices; seed 0)\n",
        "| fold | cases | T | ECE before | ECE after (cross-fitted) | NLL before | NLL after (cross-fitted) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for fold in range(num_folds):
        t = json.loads((models / f"fold{fold}" / "temperature.json").read_text())
        lines.append(
            f"| {fold} | {t['n_cases']} | {t['temperature']:.3f} | {t['ece_before']:.4f} | {t['ece_after']:.4f} | "
            f"{t['nll_before']:.4f} | {t['nll_after']:.4f} |"
        )
    return "\n".join(lines) + "\n\n"
