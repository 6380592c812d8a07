"""Benchmark: the site recalibration of a demo run over many halves of its cross-subject split (issue #25).

The demo recalibrates the head on one half of the cross-subject slices (:func:`site_half` at seed 0) and scores the
intervals on the other half: with 26 slices that is 13 scored slices, and the coverage of one such split has a
sampling spread of several points. This repeats the same recalibration (:func:`fit_site_calibration`, the demo's)
on the halves of seeds ``0 .. N-1`` and scores each on its other half (:func:`recalibration_scores`): per half the
coverage and mean width of the intervals written (the kind the calibration chose) and of each kind. Seed 0 is the
demo's own row. Reports mean, sd, the 5th and 95th percentiles over halves and the fraction of halves at or above
``--target``; JSON to ``--out``.

    python -m benchmarks.site_halves --run segq_output --halves 200 --out site_halves.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from segq_monai.apps.demo_recalibration import fit_site_calibration, recalibration_scores, site_half
from segq_monai.data.columns import read_quality_csv

KEYS = ("coverage", "mean_width", "coverage_absolute", "mean_width_absolute", "coverage_normalised",
        "mean_width_normalised", "mae_raw", "mae_recalibrated")  # fmt: skip


def halves(run: Path, n: int, variant: str = "image_seg_entropy") -> list[dict[str, Any]]:
    """Per half (seeds ``0 .. n-1``): ``{"seed", "n_site", "n_scored", "kind"}`` and :data:`KEYS` (those scored)."""
    rows = read_quality_csv(run / "report" / "cross_subject_split" / "quality.csv")
    dataset = json.loads((run / "data" / "dataset.json").read_text())
    groups = {item["image"]: item["group"] for item in dataset["cross_subject"]}
    checkpoint = run / "models" / f"quality_{variant}" / "model.pt"
    records = []
    for seed in range(n):
        site = site_half(groups, seed)
        calibration = fit_site_calibration([r for r in rows if r["image"] in site], checkpoint)
        scored = [r for r in rows if r["image"] not in site]
        scores = recalibration_scores(calibration, scored, None)
        records.append({"seed": seed, "n_site": len(rows) - len(scored), "n_scored": len(scored),
                        "kind": calibration.recalibrations[0].interval_kind,
                        **{k: scores[k] for k in KEYS if k in scores}})  # fmt: skip
    return records


def summary(records: list[dict[str, Any]], target: float) -> dict[str, dict[str, float]]:
    """Per key: mean, sd (ddof 1), 5th and 95th percentiles over the halves; coverages also the fraction of halves
    at or above ``target``."""
    out = {}
    for key in KEYS:
        values = np.array([r[key] for r in records if key in r], np.float64)
        if len(values) == 0:
            continue
        out[key] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                    "p5": float(np.percentile(values, 5)), "p95": float(np.percentile(values, 95))}  # fmt: skip
        if key.startswith("coverage"):
            out[key]["at_target"] = float((values >= target).mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a demo's --output_dir")
    parser.add_argument("--halves", type=int, default=200)
    parser.add_argument("--target", type=float, default=0.88, help="coverage target (issue #25: 0.88)")
    parser.add_argument("--out", type=Path, default=Path("site_halves.json"))
    args = parser.parse_args()
    records = halves(args.run, args.halves)
    result = {"run": str(args.run), "halves": args.halves, "target": args.target,
              "kinds": {k: sum(r["kind"] == k for r in records) for k in ("absolute", "normalised")},
              "summary": summary(records, args.target), "records": records}  # fmt: skip
    args.out.write_text(json.dumps(result, indent=1))
    for key, s in result["summary"].items():
        extra = f", {s['at_target']:.2f} of halves >= {args.target}" if "at_target" in s else ""
        print(f"{key}: {s['mean']:.3f} ± {s['sd']:.3f} [{s['p5']:.3f}, {s['p95']:.3f}]{extra}")
    print(f"kinds chosen: {result['kinds']}; seed 0 (the demo's half): coverage {records[0]['coverage']:.3f}")


if __name__ == "__main__":
    main()
