"""Benchmark: which quality-head candidate ranks the cases of unseen subjects and shifts best (issue #25; rule:
docs/head_choice_rule.md).

Trains each candidate on the out-of-fold stage-2 data of a demo run (``RUN/stage2_data/fold*/stage2_datalist.json``)
with the bundle's own loop (``train_quality.json`` with the candidate's overrides, through ``monai.bundle.run``: the
loop the demo and the fit use), once per head seed, then scores it in this process on the saved maps of every split
found (``test``: ``MAPS/report/``, ``shift``: ``MAPS/report/shift_split/``, ``cross_subject``:
``MAPS/report/cross_subject_split/``; a missing split is skipped with a message), with the bundle's
``PredictQuality`` (eval mode; an ensemble: the mean over its members): MAE, Pearson, Spearman and AURC (risk =
1 - Dice) per seed, then mean ± sd over seeds. The rule's scores: the mean over seeds of (cross-subject + shift) / 2 of
Spearman, and of AURC. ``MAPS`` is ``--maps`` (another run's saved maps, e.g. sampled with T = 1 or T = 5), else
``RUN``. Results go to ``--out`` (JSON, one record per candidate, seed and ``--label``, with the head's training time
in seconds; a rerun skips the records it finds).

Candidates (overrides of ``train_quality.json``, written out in full so that they do not follow its defaults): round 1
of the rule: ``mse`` (the MSE alone); ``seg_entropy`` (the head without the image channel: the paper's variant);
``rank`` (``rank_weight`` :data:`RANK_WEIGHT`: MSE + a pairwise logistic ranking term on Dice within the batch);
``ensemble5`` (``quality_members`` 5: five heads, their sd is ``pred_dice_sd``); ``scalars`` (``quality_scalars``:
pairwise Dice, foreground entropy, mutual information, foreground volume, joined to the pooled features). Round 2:
``rank_gap`` (MSE + the gap hinge, in Dice units) and ``rank_light`` (the logistic term at weight 0.25).

    python -m benchmarks.head_choice --run RUN --seeds 0 1 2 --out head_choice.json
    python -m benchmarks.head_choice --run RUN_T1 --candidates rank --label T1 --out head_choice.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.transforms import ScaleIntensity

from segq_monai.apps.workflows import run_workflow
from segq_monai.data import load_datalist
from segq_monai.data.datalist import write_datalist
from segq_monai.metrics import regression
from segq_monai.transforms import QUALITY_SCALARS, QUALITY_VARIANTS, PredictQuality, QualityInput, QualityScalars
from segq_monai.utils.resources import bundle_root

#: the ranking term's weight in the ``rank`` candidate, chosen once before the runs (the squared error's scale:
#: both terms are of order 0.01 to 0.1 on the demo)
RANK_WEIGHT = 1.0
_MSE = {"rank_weight": 0.0}
#: candidate name -> overrides of train_quality.json
CANDIDATES: dict[str, dict[str, Any]] = {
    "mse": _MSE,
    "seg_entropy": {**_MSE, "quality_variant": "seg_entropy"},
    "rank": {"rank_weight": RANK_WEIGHT, "rank_loss": "logistic"},
    "ensemble5": {**_MSE, "quality_members": 5},
    "scalars": {**_MSE, "quality_scalars": list(QUALITY_SCALARS)},
    "rank_gap": {"rank_weight": 1.0, "rank_loss": "gap"},
    "rank_light": {"rank_weight": 0.25, "rank_loss": "logistic"},
}
#: round 2's gates (docs/head_choice_rule.md): the most cross-subject MAE, and head time as a multiple of ``mse``'s
MAX_CROSS_SUBJECT_MAE = 0.08
MAX_TIME_RATIO = 1.5
#: split name -> its folder under MAPS/report
SPLITS = {"test": ".", "shift": "shift_split", "cross_subject": "cross_subject_split"}
#: the splits the rule chooses on
CHOOSING = ("cross_subject", "shift")
METRICS = ("mae", "pearson", "spearman", "aurc")
_SCALE = ScaleIntensity()  # min-max to [0, 1], as the bundle's ScaleIntensityd
_MAP_KEYS = ("image", "seg", "entropy", "mutual_information")


def _load(path: str) -> torch.Tensor:
    return torch.as_tensor(np.asarray(nib.load(path).dataobj, dtype=np.float32)[None])


def saved_cases(folder: Path) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Every case ``folder/*/*_quality.json`` names: its maps (``image`` min-max scaled, ``seg``, ``entropy``,
    ``mutual_information``, each ``[1, H, W]``; those saved), ``pairwise_dice`` ``[K]`` (from the entry, else the
    row's ``baseline_pairwise_dice``, the same mean over classes) and ``name`` (the image's file name), and the true
    Dice ``[N]`` (binary: one class)."""
    data, dice = [], []
    for path in sorted(folder.glob("*/*_quality.json")):
        saved = json.loads(path.read_text())
        entry, row = saved["entry"], saved["row"]
        case = {k: _load(entry[k]) for k in _MAP_KEYS if k in entry}
        case["image"] = _SCALE(case["image"])
        pairwise = entry.get("pairwise_dice", [row.get("baseline_pairwise_dice", float("nan"))])
        case["pairwise_dice"] = torch.as_tensor(pairwise, dtype=torch.float32)
        case["name"] = Path(entry["image"]).name  # the image's file name: where its row of the datalist is
        data.append(case)
        dice.append(float(row["true_dice"]))
    return data, np.array(dice)


def stage2_datalists(run: Path, scalars: bool) -> list[str]:
    """The run's out-of-fold stage-2 datalists; for a head reading scalars, those whose entries lack
    ``pairwise_dice`` (written before it was kept) are copied once under ``RUN/head_choice/`` with it taken from each
    case's sidecar row (``baseline_pairwise_dice``)."""
    found = sorted((run / "stage2_data").glob("fold*/stage2_datalist.json"))
    if not found:
        raise FileNotFoundError(f"no {run}/stage2_data/fold*/stage2_datalist.json; run the demo first.")
    out = []
    for path in found:
        items = load_datalist(path, "training", ["image", "seg", "entropy"])
        if not scalars or all("pairwise_dice" in x for x in items):
            out.append(str(path))
            continue
        copy = run / "head_choice" / "pairwise" / path.parent.name / path.name
        if not copy.is_file():
            for x in items:
                row = json.loads(next(Path(x["seg"]).parent.glob("*_quality.json")).read_text())["row"]
                x["pairwise_dice"] = [float(row["baseline_pairwise_dice"])]
            write_datalist(copy, {"training": items})
        out.append(str(copy))
    return out


def head_config(overrides: dict[str, Any]) -> ConfigParser:
    """``train_quality.json`` with ``overrides``, on the CPU: the one source of the head's architecture."""
    parser = ConfigParser()
    parser.read_config(str(bundle_root() / "configs" / "train_quality.json"))
    parser.update({"device": "$torch.device('cpu')", **overrides})
    return parser


def train_head(
    run: Path, candidate: str, seed: int, workdir: Path, extra: dict[str, Any] | None = None,
    datalists: list[str] | None = None,
) -> tuple[torch.nn.Module, float]:
    """Train ``candidate``'s head with ``train_quality.json`` on ``run``'s stage-2 data (``datalists``: other stage-2
    datalists instead; ``extra``: further overrides, e.g. ``epochs``); returns it (eval mode, on the CPU) and the
    training time in s."""
    overrides = {**CANDIDATES[candidate], **(extra or {})}
    datalists = datalists or stage2_datalists(run, bool(overrides.get("quality_scalars")))
    start = time.perf_counter()
    run_workflow(bundle_root(), ["train_quality.json"], stage2_datalists=datalists, ckpt_dir=str(workdir),
                 output_dir=str(workdir), seed=seed, mlflow=False, **overrides)  # fmt: skip
    seconds = time.perf_counter() - start
    parser = head_config({**overrides, "ckpt_dir": str(workdir), "seed": seed})
    net = parser.get_parsed_content("quality_network")  # one head, or the ensemble of quality_members
    state = torch.load(parser.get_parsed_content("quality_checkpoint"), map_location="cpu", weights_only=True)
    net.load_state_dict(state["model"] if "model" in state else state)
    return net.eval(), seconds


def predict(net: torch.nn.Module, candidate: str, cases: list[dict[str, Any]]) -> np.ndarray:
    """``[N]`` the head's predicted Dice of each of ``cases`` (:func:`saved_cases`)."""
    overrides = CANDIDATES[candidate]
    keys = QUALITY_VARIANTS[overrides.get("quality_variant", "image_seg_entropy")]
    stack = QualityInput(num_classes=2)
    names = overrides.get("quality_scalars")
    gather = QualityScalars(names) if names else None
    head = PredictQuality(net)
    pred = []
    for case in cases:
        image, seg = (case[k] if k in keys else None for k in ("image", "seg"))
        x = stack(image, seg, *(case[k] for k in keys if k not in ("image", "seg")))
        scalars = None if gather is None else gather(**{k: case[k] for k in gather.inputs})
        pred.append(float(head(x, scalars)[0][0]))
    return np.array(pred)


def scores(net: torch.nn.Module, candidate: str, cases: list[dict[str, Any]], true: np.ndarray) -> dict[str, float]:
    """MAE, Pearson, Spearman and AURC of the head's predicted Dice over ``cases``."""
    return metric_scores(predict(net, candidate, cases), true)


def metric_scores(p: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MAE, Pearson, Spearman and AURC (risk = 1 − Dice) of predicted Dice ``p`` ``[N]`` against ``true`` ``[N]``."""
    return {"mae": float(np.mean(np.abs(p - true))), "pearson": float(regression.pearson_correlation(p, true)),
            "spearman": float(regression.spearman_correlation(p, true)), "aurc": float(regression.aurc(p, 1 - true))}  # fmt: skip


def rule_scores(rows: list[dict[str, Any]]) -> dict[str, list[float]] | None:
    """Per seed, (cross-subject + shift) / 2 of Spearman and of AURC; None when a choosing split is missing."""
    if not all(s in r for r in rows for s in CHOOSING):
        return None
    return {m: [sum(r[s][m] for s in CHOOSING) / len(CHOOSING) for r in rows] for m in ("spearman", "aurc")}


def gates(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Round 2's gates (docs/head_choice_rule.md) per candidate: the reasons it fails them (``[]``: it passes). (a) mean
    cross-subject MAE over seeds above :data:`MAX_CROSS_SUBJECT_MAE` (dropped when no candidate passes it); (b) mean
    head time above :data:`MAX_TIME_RATIO` × ``mse``'s (not applied without ``mse`` records)."""
    rows = {c: [r for r in records if r["candidate"] == c and not r.get("label")] for c in CANDIDATES}
    rows = {c: v for c, v in rows.items() if v}
    mae = {c: float(np.mean([r["cross_subject"]["mae"] for r in v])) for c, v in rows.items() if "cross_subject" in v[0]}
    seconds = {c: float(np.mean([r["seconds"] for r in v])) for c, v in rows.items()}
    passes_mae = any(m <= MAX_CROSS_SUBJECT_MAE for m in mae.values())
    failed: dict[str, list[str]] = {c: [] for c in rows}
    for c in rows:
        if passes_mae and mae.get(c, float("inf")) > MAX_CROSS_SUBJECT_MAE:
            failed[c].append(f"cross-subject MAE {mae.get(c, float('nan')):.3f} > {MAX_CROSS_SUBJECT_MAE}")
        if "mse" in seconds and seconds[c] > MAX_TIME_RATIO * seconds["mse"]:
            failed[c].append(f"head time {seconds[c] / seconds['mse']:.1f} x mse's > {MAX_TIME_RATIO}")
    return failed


def decision(records: list[dict[str, Any]], seeds: int = 3) -> tuple[str, list[str]]:
    """The rule's choice among the unlabelled records (docs/head_choice_rule.md, round 2): candidates that fail a gate
    (:func:`gates`) are out; the others are ranked on the mean over seeds of their Spearman (higher first) and of their
    AURC (lower first); the lowest rank sum wins. A tie in rank sum goes to the lower cross-subject AURC, or, when the
    two are within the larger of their seed sds on it, to the less head training time. A candidate with fewer than
    ``seeds`` seeds wins only if every seed it has beats every seed of every other candidate on both scores. Returns
    the winner and the reasons, one a line."""
    failed = gates(records)
    rows = {c: [r for r in records if r["candidate"] == c and not r.get("label")] for c in CANDIDATES}
    scores = {c: s for c, v in rows.items() if v and (s := rule_scores(v))}
    out = [f"{c}: out ({'; '.join(failed[c])})" for c in scores if failed.get(c)]
    scores = {c: s for c, s in scores.items() if not failed.get(c)}
    mean = {c: {m: float(np.mean(v[m])) for m in v} for c, v in scores.items()}
    rank = {c: 1 + sorted(mean, key=lambda k: -mean[k]["spearman"]).index(c)
               + 1 + sorted(mean, key=lambda k: mean[k]["aurc"]).index(c) for c in mean}  # fmt: skip
    cross = {c: [r["cross_subject"]["aurc"] for r in rows[c]] for c in mean}

    def beats_all(c: str) -> bool:
        others = [s for k in scores if k != c for s in zip(scores[k]["spearman"], scores[k]["aurc"])]
        return all(sp > osp and au < oau for sp, au in zip(scores[c]["spearman"], scores[c]["aurc"])
                   for osp, oau in others)  # fmt: skip

    eligible = [c for c in mean if len(rows[c]) >= seeds or beats_all(c)]
    reasons = out + [f"{c}: Spearman {mean[c]['spearman']:.4f}, AURC {mean[c]['aurc']:.4f}, rank sum {rank[c]}, "
                     f"{len(rows[c])} seed(s){'' if c in eligible else ' (too few seeds to win)'}" for c in mean]  # fmt: skip
    best = min(rank[c] for c in eligible)
    tied = sorted((c for c in eligible if rank[c] == best), key=lambda c: np.mean(cross[c]))
    winner = tied[0]
    for other in tied[1:]:
        spread = max(float(np.std(cross[c], ddof=1)) if len(cross[c]) > 1 else 0.0 for c in (winner, other))
        if abs(np.mean(cross[other]) - np.mean(cross[winner])) <= spread:
            seconds = {c: np.mean([r["seconds"] for r in rows[c]]) for c in (winner, other)}
            reasons.append(f"tie {winner} / {other}: cross-subject AURC within {spread:.4f}; head time "
                           f"{seconds[winner]:.0f} / {seconds[other]:.0f} s")  # fmt: skip
            winner = min((winner, other), key=seconds.__getitem__)
        else:
            reasons.append(f"tie {winner} / {other}: {winner} has the lower cross-subject AURC")
    return winner, reasons


def cell(values: list[float]) -> str:
    """Mean ± sd (over seeds) of the finite ``values``; ``–`` when there is none (a constant prediction has no
    correlation)."""
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return "–"
    return f"{np.mean(values):.3f}" + (f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else "")


def summary(records: list[dict[str, Any]]) -> str:
    """Markdown: one row per candidate (and label), mean ± sd over seeds of every metric on every split scored, and
    the rule's scores (mean over seeds of the choosing splits' mean Spearman, and AURC)."""
    splits = [s for s in SPLITS if any(s in r for r in records)]
    lines = ["| candidate | seeds | head s | " + " | ".join(f"{s} {m}" for s in splits for m in METRICS)
             + " | score Spearman | score AURC |",
             "| --- | ---: | ---: | " + " | ".join("---:" for _ in splits for _ in METRICS) + " | ---: | ---: |"]  # fmt: skip
    for name in dict.fromkeys(_name(r) for r in records):
        rows = [r for r in records if _name(r) == name]
        cells = [cell([r[s][m] for r in rows]) if all(s in r for r in rows) else "-" for s in splits for m in METRICS]
        rule = rule_scores(rows)
        score = [cell(rule[m]) for m in ("spearman", "aurc")] if rule else ["n/a", "n/a"]
        lines.append(f"| {name} | {len(rows)} | {np.mean([r['seconds'] for r in rows]):.0f} | " + " | ".join(cells)
                     + f" | {' | '.join(score)} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _name(record: dict[str, Any]) -> str:
    return record["candidate"] + (f" ({record['label']})" if record.get("label") else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="output_dir of a demo run: its stage2_data/ trains the heads")
    p.add_argument("--maps", help="output_dir of the run whose saved maps (report/...) score them (default: --run)")
    p.add_argument("--label", default="", help="tag of these records, e.g. T1 for a run sampled with T = 1")
    p.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="head_choice.json", help="JSON file of the records (read, then extended)")
    p.add_argument("--epochs", type=int, help="head epochs (default: train_quality.json's; a quick check only)")
    args = p.parse_args()
    run, out = Path(args.run), Path(args.out)
    maps = Path(args.maps) if args.maps else run
    records = json.loads(out.read_text()) if out.is_file() else []
    splits = {}
    for name, folder in SPLITS.items():
        cases, true = saved_cases(maps / "report" / folder)
        if not cases:
            print(f"split {name}: no saved cases under {maps / 'report' / folder}; skipped")
            continue
        splits[name] = (cases, true)
        print(f"split {name}: {len(cases)} cases")
    for seed in args.seeds:  # seed-major: every candidate's first seed before any candidate's second
        for candidate in args.candidates:
            key = {"candidate": candidate, "seed": seed, "label": args.label}
            extra = {} if args.epochs is None else {"epochs": args.epochs}
            if any(all(r.get(k, "") == v for k, v in key.items()) for r in records):
                continue
            with tempfile.TemporaryDirectory() as tmp:
                net, seconds = train_head(run, candidate, seed, Path(tmp), extra)
            records.append({**key, "run": str(run.absolute()), "maps": str(maps.absolute()), **extra, "seconds": seconds,
                            **{k: scores(net, candidate, *v) for k, v in splits.items()}})  # fmt: skip
            out.write_text(json.dumps(records, indent=1))
            print(f"{candidate}, seed {seed} ({seconds:.0f} s): {json.dumps(records[-1])}")
    print(summary(records))
    winner, reasons = decision([r for r in records if r["run"] == str(run.absolute())])
    print("\n".join(reasons) + f"\nThe rule chooses: {winner}")


if __name__ == "__main__":
    main()
