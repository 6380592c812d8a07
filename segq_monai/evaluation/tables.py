"""Markdown comparison tables of evaluation reports (quality-head variants, estimators and baselines)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from segq_monai.utils.jsonable import jsonable

__all__ = ["comparison_table", "format_number", "guaranteed_cells"]


def format_number(value: Any) -> str:
    """A table cell: 3 decimals, ``–`` for a missing (None) or non-finite value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.3f}"


def guaranteed_cells(flag: Mapping[str, Any] | None) -> list[str]:
    """``[accepted fraction, "k/n = rate"]`` of a guaranteed flag entry, ``–`` where there is none."""
    if not flag:
        return ["–", "–"]
    rate = flag["failure_rate_accepted"]
    counts = f"{flag['failures_accepted']}/{flag['n_accepted']} = {format_number(rate)}"
    return [format_number(flag["fraction_accepted"]), counts]


def comparison_table(
    report: Mapping[str, Any] | Mapping[str, Mapping[str, Any]], summary: str = "mean", baselines: bool = True
) -> str:
    """A Markdown table, one row per method: quality head variant(s), then the baselines.

    Args:
        report: one report of :func:`evaluate_quality` / :func:`write_report`, or several keyed by variant name,
            e.g. ``{"image+seg+uncertainty": report_a, "image": report_b}`` (the paper's ablation). Baselines that
            are the same in every report are listed once; otherwise once per variant, with its name.
        summary: ``"mean"`` (per-case mean Dice over classes; the class of a binary task) or a class name.
        baselines: False lists the quality heads only (e.g. heads on the maps of different stage-1 estimators).

    Returns:
        Markdown: columns method, n, MAE, Pearson, Spearman, AUROC, AURC, e-AURC (3 decimals, ``–`` where
        undefined); when a report has a guaranteed flag (``alpha``), also the fraction of cases accepted and the
        realised failures among them; and a note on the baselines' Dice-scale fit.
    """
    reports: Mapping[str, Mapping[str, Any]]
    single = "baselines" in report or "quality_head" in report
    reports = {"": report} if single else report  # type: ignore[assignment]
    if not reports:
        raise ValueError("no report given; pass a report dict or {variant name: report}.")

    def pick(entry: Mapping[str, Any]) -> Mapping[str, Any]:
        if summary == "mean":
            return entry["mean"]
        if summary not in entry["per_class"]:
            choices = list(entry["per_class"])
            raise ValueError(f"class {summary!r} is not in the report; choose 'mean' or one of {choices}.")
        return entry["per_class"][summary]

    alphas = sorted({float(r["guaranteed_flag"]["alpha"]) for r in reports.values() if r.get("guaranteed_flag")})
    guaranteed = " accepted | failures among accepted |" if alphas else ""
    lines = [
        "| method | n | MAE | Pearson | Spearman | AUROC | AURC | e-AURC |" + guaranteed,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" + " ---: | ---: |" * bool(alphas),
    ]

    def add(label: str, m: Mapping[str, Any], flag: Mapping[str, Any] | None) -> None:
        cells = [format_number(m.get(k)) for k in ("mae", "pearson", "spearman", "auroc", "aurc", "eaurc")]
        if alphas:
            cells += guaranteed_cells(flag)
        lines.append(f"| {label} | {m.get('n', '–')} | " + " | ".join(cells) + " |")

    for variant, rep in reports.items():
        if rep.get("quality_head") is not None:
            label = f"quality head ({variant})" if variant else "quality head"
            add(label, pick(rep["quality_head"]), rep.get("guaranteed_flag"))
    names = list(dict.fromkeys(n for rep in reports.values() for n in rep.get("baselines", {}))) if baselines else []
    fits = sorted({str(rep.get("baseline_fit_split")) for rep in reports.values()})
    for name in names:
        blocks = [
            (v, jsonable(pick(r["baselines"][name])), jsonable(r["baselines"][name].get("guaranteed_flag")))
            for v, r in reports.items() if name in r["baselines"]
        ]  # fmt: skip
        if all(b[1:] == blocks[0][1:] for b in blocks):
            add(name, *blocks[0][1:])
        else:
            for variant, b, flag in blocks:
                add(f"{name} ({variant})", b, flag)
    taus = sorted({float(rep["tau"]) for rep in reports.values()})
    lines.append("")
    lines.append(
        f"Scores on {'the per-case mean Dice over classes' if summary == 'mean' else 'class ' + summary}; "
        f"failure: true Dice < τ = {', '.join(map(str, taus))}; AURC/e-AURC with risk = 1 - Dice (lower is better)."
        + (f" Baseline MAE after the baseline fit, a least-squares map onto the Dice scale ({', '.join(fits)})."
           if names else "")
    )
    if alphas:
        lines[-1] += (
            f" Guaranteed flag: acceptance threshold λ calibrated on the calibration split so that the failure rate "
            f"among accepted cases is at most α = {', '.join(map(str, alphas))} with probability 1 − δ; accepted = "
            "fraction of the evaluated cases auto-accepted, then the realised failures among them."
        )
    return "\n".join(lines) + "\n"
