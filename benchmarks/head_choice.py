"""Benchmark: which quality-head recipe ranks failures it has never seen (issue #18; rule: docs/head_choice_rule.md).

Reads the saved outputs of a demo run (``python -m segq_monai demo --output_dir RUN``): its out-of-fold stage-2 data
(``RUN/stage2_data/fold*/``) to train on, and the saved maps of its test, shift and cross-plane splits
(``RUN/report/``, ``RUN/report/shift_split/``, ``RUN/report/cross_plane_split/``) to score on. Each recipe is a set of
synthetic failures (:func:`segq_monai.data.write_synthetic_failures`, written once per setting under
``RUN/head_choice/``) and overrides of ``train_quality.json``: the head is trained by the bundle's own workflow (``monai.bundle.run``, the
loop the demo and the fit use), once per head seed, then scored in this process on every split: MAE, Pearson,
Spearman and AURC (risk = 1 - Dice) of its predicted Dice (eval mode), per seed, then mean ± sd over seeds.
Results go to ``--out`` (JSON, one record per recipe and seed; a rerun skips the records it finds).

    python -m benchmarks.head_choice --run segq_output --recipes shipped failures_prob --seeds 0 1 2
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
from segq_monai.data.synthetic import SYNTHETIC_DATALIST, write_synthetic_failures
from segq_monai.metrics import regression
from segq_monai.transforms.quality import QualityInput
from segq_monai.utils.resources import bundle_root

#: recipe name -> synthetic failures (arguments of write_synthetic_failures, or None) and overrides of
#: train_quality.json; every recipe sees about the same number of training samples (cases x epochs ~ 11,500)
RECIPES: dict[str, tuple[dict[str, Any] | None, dict[str, Any]]] = {
    "shipped": (None, {}),
    "failures_prob": ({"copies": 5, "source": "prob"}, {"epochs": 12}),
    "failures_label": ({"copies": 5, "source": "label"}, {"epochs": 12}),
    "failures_prob_old_entropy": ({"copies": 5, "source": "prob", "recompute_entropy": False}, {"epochs": 12}),
    "failures_prob_1copy": ({"copies": 1, "source": "prob"}, {"epochs": 30}),
}
SPLITS = {"test": ".", "shift": "shift_split", "cross_plane": "cross_plane_split"}
METRICS = ("mae", "pearson", "spearman", "aurc")
_SCALE = ScaleIntensity()  # min-max to [0, 1], as the bundle's ScaleIntensityd
_QUALITY_INPUT = QualityInput(num_classes=2)


def _load(path: str) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj, dtype=np.float32)[None]


def cases(folder: Path) -> tuple[list[torch.Tensor], np.ndarray]:
    """Every case ``folder/*/*_quality.json`` names: the head's input stacks ``[4, H, W]`` (scaled image, one-hot
    segmentation, entropy; the bundle's ``QualityInputd``) and the true Dice ``[N]``."""
    stacks, dice = [], []
    for path in sorted(folder.glob("*/*_quality.json")):
        saved = json.loads(path.read_text())
        entry = saved["entry"]
        stacks.append(_QUALITY_INPUT(_SCALE(_load(entry["image"])), _load(entry["seg"]), _load(entry["entropy"])))
        dice.append(float(saved["row"]["true_dice"]))
    if not stacks:
        raise FileNotFoundError(f"no saved cases (*/*_quality.json) under {folder}; run the demo first.")
    return stacks, np.array(dice)


def synthetic_datalist(run: Path, recipe: str) -> list[str]:
    """The recipe's synthetic-failure datalist (written once under ``RUN/head_choice/``), or none."""
    synthetic = RECIPES[recipe][0]
    if synthetic is None:
        return []
    folder = run / "head_choice" / "_".join(f"{k}{v}" for k, v in sorted(synthetic.items()))
    path = folder / SYNTHETIC_DATALIST
    if not path.is_file():
        write_synthetic_failures(stage2_datalists(run), folder, num_classes=2, **synthetic)
    return [str(path)]


def stage2_datalists(run: Path) -> list[str]:
    return sorted(str(p) for p in (run / "stage2_data").glob("fold*/stage2_datalist.json"))


def train_head(run: Path, recipe: str, seed: int, workdir: Path) -> tuple[torch.nn.Module, float]:
    """Train the head of ``recipe`` with ``train_quality.json`` on ``run``'s stage-2 data (and the recipe's
    synthetic failures); returns it (eval mode) and the training time in s."""
    overrides = RECIPES[recipe][1]
    datalists = stage2_datalists(run) + synthetic_datalist(run, recipe)
    start = time.perf_counter()
    run_workflow(bundle_root(), ["train_quality.json"], stage2_datalists=datalists, ckpt_dir=str(workdir),
                 output_dir=str(workdir), seed=seed, **overrides)  # fmt: skip
    return load_head(workdir / "quality_image_seg_entropy" / "model.pt"), time.perf_counter() - start


def load_head(checkpoint: Path) -> torch.nn.Module:
    """The bundle's quality head (``train_quality.json``'s ``quality_network_def``) with the weights of
    ``checkpoint``, in eval mode."""
    parser = ConfigParser()
    parser.read_config(str(bundle_root() / "configs" / "train_quality.json"))
    net = parser.get_parsed_content("quality_network_def")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    net.load_state_dict(state["model"] if "model" in state else state)
    return net.eval()


def step_seconds(run: Path, step: str) -> float:
    """The time of a step of the demo run, from its ``comparison.md``."""
    for line in (run / "report" / "comparison.md").read_text().splitlines():
        if line.startswith(f"| {step}"):
            return float(line.rsplit("|", 2)[1])
    raise ValueError(f"no step {step!r} in {run / 'report' / 'comparison.md'}")


def scores(net: torch.nn.Module, stacks: list[torch.Tensor], true: np.ndarray) -> dict[str, float]:
    with torch.no_grad():
        pred = np.array([float(net(x[None])[0, 0]) for x in stacks])
    return {"mae": float(np.mean(np.abs(pred - true))), "pearson": float(regression.pearson_correlation(pred, true)),
            "spearman": float(regression.spearman_correlation(pred, true)),
            "aurc": float(regression.aurc(pred, 1 - true))}  # fmt: skip


def summary(records: list[dict]) -> str:
    """Markdown: one row per recipe, mean ± sd over seeds of every metric on every split, and the rule's score."""
    lines = ["| recipe | seeds | head s | " + " | ".join(f"{s} {m}" for s in SPLITS for m in METRICS) + " | score |",
             "| --- | ---: | ---: | " + " | ".join("---:" for _ in SPLITS for _ in METRICS) + " | ---: |"]  # fmt: skip
    for recipe in dict.fromkeys(r["recipe"] for r in records):
        rows = [r for r in records if r["recipe"] == recipe]

        def cell(values: list[float]) -> str:
            return f"{np.mean(values):.3f}" + (f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else "")

        cells = [cell([r[s][m] for r in rows]) for s in SPLITS for m in METRICS]
        score = cell([(r["shift"]["spearman"] + r["cross_plane"]["spearman"]) / 2 for r in rows])
        lines.append(f"| {recipe} | {len(rows)} | {np.mean([r['seconds'] for r in rows]):.0f} | "
                     + " | ".join(cells) + f" | {score} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="output_dir of a demo run")
    p.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="head_choice.json", help="JSON file of the records (read, then extended)")
    p.add_argument("--run_head", action="store_true",
                   help="score the demo run's own head (RUN/models/quality_image_seg_entropy/model.pt) as 'shipped', "
                        "seed 0: the same recipe, data, seed and workflow, without training it again")
    args = p.parse_args()
    run, out = Path(args.run), Path(args.out)
    records = json.loads(out.read_text()) if out.is_file() else []
    splits = {name: cases(run / "report" / folder) for name, folder in SPLITS.items()}
    print(", ".join(f"{k}: {len(v[1])} cases" for k, v in splits.items()))
    if args.run_head and not any(r["recipe"] == "shipped" and r["seed"] == 0 for r in records):
        net = load_head(run / "models" / "quality_image_seg_entropy" / "model.pt")
        seconds = step_seconds(run, "stage 2: train the quality head")
        records.append({"recipe": "shipped", "seed": 0, "seconds": seconds, "from_run": True,
                        **{k: scores(net, *v) for k, v in splits.items()}})  # fmt: skip
        out.write_text(json.dumps(records, indent=1))
    for seed in args.seeds:  # seed-major: every recipe's first seed before any recipe's second
        for recipe in args.recipes:
            if any(r["recipe"] == recipe and r["seed"] == seed for r in records):
                continue
            with tempfile.TemporaryDirectory() as tmp:
                net, seconds = train_head(run, recipe, seed, Path(tmp))
            records.append({"recipe": recipe, "seed": seed, "seconds": seconds,
                            **{k: scores(net, *v) for k, v in splits.items()}})  # fmt: skip
            out.write_text(json.dumps(records, indent=1))
            print(f"{recipe}, seed {seed} ({seconds:.0f} s): {json.dumps(records[-1])}")
    print(summary(records))


if __name__ == "__main__":
    main()
