"""Benchmark: does the quality head judge a kind of corruption it never trained on? Leave one artifact family out.

The demo's cases carry one of five MR artifact families (bias field, noise, Gibbs ringing, k-space spikes, contrast:
``artifact`` in ``data/dataset.json``, at ``severity`` 0 to 1). For each family F and head seed, the shipped head
(``mse`` of :mod:`benchmarks.head_choice`) is trained with the bundle's own loop on a demo run's out-of-fold cases of
the other families (``unseen``; kinds that no evaluated case has stay in training), and predicts the corrupted cases
(severity > 0) of F on the saved maps of the test, shift and cross-subject splits. Pooled over the five families,
every corrupted case is predicted by a head that never saw its kind of corruption (the outside check's corruptions
are not MONAI's). Beside it, on the same cases:

- ``all``: the head trained on every family (the demo's recipe, at that seed);
- ``fewer``: per family F, a head trained with as many cases left out as F has, drawn at random whatever their
  family, predicts F's cases, pooled as ``unseen`` is: what losing that much data and pooling five heads cost, apart
  from losing a kind of corruption;
- ``pairwise_dice``: the scalar baseline (no training: Spearman and AURC only).

Per split: Spearman, MAE and AURC (risk = 1 − Dice), mean ± sd over seeds; per split and kind, the ranking and the
level within the kind (all against unseen); round 3's scores (3) and (4) (docs/head_choice_rule.md). JSON records
(each head's predictions by case) go to ``--out``; a rerun skips the records it finds and only prints the tables.

    python -m benchmarks.unseen_artifacts --run RUN --seeds 0 1 2 --out unseen_artifacts.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.head_choice import SPLITS, cell, metric_scores, predict, saved_cases, stage2_datalists, train_head
from segq_monai.data import load_datalist
from segq_monai.data.datalist import write_datalist

CANDIDATE = "mse"  # the shipped recipe (docs/results.md, round 2 of issue #25's rule)
CONDITIONS = ("all", "fewer", "unseen")
Keep = Callable[[str], bool]


def artifacts(run: Path) -> dict[str, tuple[str, float]]:
    """Image file name -> (artifact family, severity), from every section of ``run/data/dataset.json``."""
    data = json.loads((run / "data" / "dataset.json").read_text())
    return {
        Path(e["image"]).name: (e["artifact"], float(e["severity"]))
        for section in data.values() if isinstance(section, list) for e in section if "artifact" in e
    }  # fmt: skip


def training_names(run: Path) -> list[str]:
    """The image file names of ``run``'s out-of-fold cases."""
    return sorted(Path(x["image"]).name for p in stage2_datalists(run, scalars=False)
                  for x in load_datalist(p, "training", ["image"]))  # fmt: skip


def training_subset(run: Path, keep: Keep, folder: Path) -> list[str]:
    """Copies, under ``folder``, of ``run``'s out-of-fold stage-2 datalists with the entries whose image file name
    passes ``keep``; returns their paths."""
    out = []
    for path in stage2_datalists(run, scalars=False):
        items = load_datalist(path, "training", ["image", "seg", "entropy"])
        copy = folder / Path(path).parent.name / "stage2_datalist.json"
        write_datalist(copy, {"training": [x for x in items if keep(Path(x["image"]).name)]})
        out.append(str(copy))
    return out


def head_plans(
    names: list[str], seed: int, table: dict[str, tuple[str, float]], families: list[str]
) -> dict[tuple[str, str], Keep]:
    """``{(condition, family or ""): keep}``: which of the out-of-fold cases ``names`` (image file names) each head of
    ``seed`` trains on; ``families``: those left out in turn (the kinds of the evaluated cases)."""
    plans: dict[tuple[str, str], Keep] = {("all", ""): lambda n: True}
    for i, family in enumerate(families):
        size = sum(table[n][0] == family for n in names)
        drop = set(np.random.default_rng([seed, i]).choice(names, size, replace=False).tolist())
        plans[("fewer", family)] = lambda n, d=drop: n not in d
        plans[("unseen", family)] = lambda n, f=family: table[n][0] != f
    return plans


def pooled(records: list[dict[str, Any]], split: str, seed: int, table: dict[str, tuple[str, float]],
           names: list[str]) -> dict[str, np.ndarray]:  # fmt: skip
    """``{condition: [N] predicted Dice of the cases ``names`` of ``split``}`` for head seed ``seed``; under ``fewer``
    and ``unseen`` each case is predicted by the head of its own family."""
    by_key = {(r["condition"], r["family"]): r["pred"][split] for r in records if r["seed"] == seed}
    return {
        "all": np.array([by_key[("all", "")][n] for n in names]),
        **{c: np.array([by_key[(c, table[n][0])][n] for n in names]) for c in ("fewer", "unseen")},
    }


Splits = dict[str, tuple[list[dict[str, Any]], np.ndarray]]
#: the splits round 3 of the rule scores on (docs/head_choice_rule.md)
CHOOSING = ("cross_subject", "shift")


def corrupted(cases: list[dict[str, Any]], table: dict[str, tuple[str, float]]) -> list[int]:
    """Indices of the ``cases`` (:func:`benchmarks.head_choice.saved_cases`) with an artifact (severity > 0)."""
    return [i for i, c in enumerate(cases) if table[c["name"]][1] > 0]


def evaluated_families(splits: Splits, table: dict[str, tuple[str, float]]) -> list[str]:
    """The artifact kinds of the corrupted cases of ``splits``: those left out in turn."""
    return sorted({table[cases[i]["name"]][0] for cases, _ in splits.values() for i in corrupted(cases, table)})


def complete_seeds(records: list[dict[str, Any]], splits: Splits, table: dict[str, tuple[str, float]]) -> list[int]:
    """The head seeds whose records hold every head (``all``, and ``fewer`` and ``unseen`` per evaluated kind)."""
    needed = {("all", "")} | {(c, f) for f in evaluated_families(splits, table) for c in ("fewer", "unseen")}
    return sorted({r["seed"] for r in records
                   if {(q["condition"], q["family"]) for q in records if q["seed"] == r["seed"]} >= needed})


def rule_scores(records: list[dict[str, Any]], splits: Splits, table: dict[str, tuple[str, float]]) -> dict[str, float]:
    """Round 3's scores (3) and (4): per seed, the mean over :data:`CHOOSING` of the pooled ``unseen`` Spearman and
    AURC on the corrupted cases; then their mean and sd (ddof 1) over the complete seeds."""
    per_seed = []
    for seed in complete_seeds(records, splits, table):
        scores = []
        for split in CHOOSING:
            cases, true = splits[split]
            keep = corrupted(cases, table)
            names = [cases[i]["name"] for i in keep]
            scores.append(metric_scores(pooled(records, split, seed, table, names)["unseen"], true[keep]))
        per_seed.append({k: float(np.mean([x[k] for x in scores])) for k in ("spearman", "aurc")})
    return {f"{k}_{stat}": float(f([x[k] for x in per_seed])) for k in ("spearman", "aurc")
            for stat, f in (("mean", np.mean), ("sd", lambda v: np.std(v, ddof=1) if len(v) > 1 else 0.0))}


def per_kind(records: list[dict[str, Any]], splits: Splits, table: dict[str, tuple[str, float]]) -> str:
    """Markdown: per split and evaluated kind, Spearman and MAE of the ``all`` head and of the head that left the kind
    out, on that kind's corrupted cases alone (mean over the complete seeds): the ranking within a kind against its
    level."""
    seeds = complete_seeds(records, splits, table)
    lines = ["| split | kind | cases | Spearman, all | Spearman, unseen | MAE, all | MAE, unseen |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for split, (cases, true) in splits.items():
        for family in evaluated_families(splits, table):
            keep = [i for i in corrupted(cases, table) if table[cases[i]["name"]][0] == family]
            names = [cases[i]["name"] for i in keep]
            per_seed = [{k: metric_scores(p, true[keep]) for k, p in pooled(records, split, s, table, names).items()}
                        for s in seeds]  # fmt: skip
            cells = [cell([m[c][k] for m in per_seed]) for k in ("spearman", "mae") for c in ("all", "unseen")]
            lines.append(f"| {split} | {family} | {len(keep)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary(records: list[dict[str, Any]], splits: Splits, table: dict[str, tuple[str, float]]) -> str:
    """Markdown: per split (its corrupted cases), Spearman, MAE and AURC of each condition and of pairwise Dice, mean ±
    sd over the seeds that have every head."""
    seeds = complete_seeds(records, splits, table)
    lines = ["| split | corrupted cases | head | Spearman | MAE | AURC |", "| --- | ---: | --- | ---: | ---: | ---: |"]
    for split, (cases, true) in splits.items():
        keep = corrupted(cases, table)
        names, t = [cases[i]["name"] for i in keep], true[keep]
        per_seed = [{k: metric_scores(p, t) for k, p in pooled(records, split, s, table, names).items()} for s in seeds]
        for condition in CONDITIONS:
            cells = [cell([m[condition][k] for m in per_seed]) for k in ("spearman", "mae", "aurc")]
            lines.append(f"| {split} | {len(keep)} | {condition} ({len(seeds)} seeds) | " + " | ".join(cells) + " |")
        pairwise = metric_scores(np.array([float(cases[i]["pairwise_dice"].mean()) for i in keep]), t)
        lines.append(f"| {split} | {len(keep)} | pairwise_dice | {pairwise['spearman']:.3f} | – | "
                     f"{pairwise['aurc']:.3f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="output_dir of a demo run (its stage2_data/, data/ and report/)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="unseen_artifacts.json", help="JSON file of the records (read, then extended)")
    args = p.parse_args()
    run, out = Path(args.run), Path(args.out)
    table = artifacts(run)
    splits = {name: saved_cases(run / "report" / folder) for name, folder in SPLITS.items()}
    families = evaluated_families(splits, table)
    records = json.loads(out.read_text()) if out.is_file() else []
    for seed in args.seeds:
        for (condition, family), keep in head_plans(training_names(run), seed, table, families).items():
            if any((r["condition"], r["family"], r["seed"]) == (condition, family, seed) for r in records):
                continue
            with tempfile.TemporaryDirectory() as tmp:
                datalists = training_subset(run, keep, Path(tmp) / "data")
                net, seconds = train_head(run, CANDIDATE, seed, Path(tmp) / "head", datalists=datalists)
            records.append({"condition": condition, "family": family, "seed": seed, "seconds": seconds,
                            "run": str(run.absolute()),
                            "pred": {s: dict(zip((c["name"] for c in cases), predict(net, CANDIDATE, cases).tolist()))
                                     for s, (cases, _) in splits.items()}})  # fmt: skip
            out.write_text(json.dumps(records, indent=1))
            print(f"{condition} {family} seed {seed}: {seconds:.0f} s", flush=True)
    print(summary(records, splits, table))
    print(per_kind(records, splits, table))
    scores = rule_scores(records, splits, table)
    print(f"round 3 scores, mean of {' and '.join(CHOOSING)} over seeds: (3) unseen Spearman "
          f"{scores['spearman_mean']:.4f} ± {scores['spearman_sd']:.4f}, (4) unseen AURC {scores['aurc_mean']:.4f} ± "
          f"{scores['aurc_sd']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
