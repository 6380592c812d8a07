"""``python -m segq_monai demo`` (``segq-monai demo``): the two-stage experiment on the embedded Colin27 demo data,
end to end.

Each step is one of the bundle's workflows, run as ``python -m monai.bundle run`` would run it (the same
``monai.bundle.run`` entry point, in this process):

1. prepare the demo data (``segq_monai.data.demo.prepare_demo``): development slices of Colin27 in every plane of
   ``--planes``, held-out blocks of each plane split into a calibration and a test split, artifact copies at graded
   severities (with ``--geometric_variants``, further development copies turned and zoomed at random, for stage 2),
   the shift split (the test slices' copies turned by 90° or resampled: orientations and resolutions stage 1 never
   saw) and the cross-subject split (the MNI152 template's slices in three planes with artifacts: a person neither
   stage saw, brain-extracted);
2. ``train_segmentation.json`` once per fold, on the clean development slices of the other folds, then
   ``fit_temperature.json``: the temperature of that fold's network, fitted on its held-out clean slices, with the
   expected calibration error before and after (reported, not applied: ``--temperature_scaling`` is off);
3. ``sample.json`` once per fold: that fold's model samples its held-out artifact copies (out-of-fold), writing
   segmentations, uncertainty maps and true Dice/IoU: the training data of stage 2;
4. ``train_quality.json`` for the quality head (the main input variant);
5. ``inference.json`` + ``evaluate.json`` on the calibration split, then on the test, shift and cross-subject splits
   with the guaranteed flag (``alpha``) calibrated on the first: ``quality.csv``, NIfTI maps, ``report.json``, figures, and
   ``bootstrap.json``: 95 % intervals that resample slices (all artifact copies of a slice together);
6. ``comparison.md``: the tables with their spread and the time of every step beside a reference time of the
   machine (one forward pass of the stage-1 network at 256²).

With ``--full``: every input variant of the paper's ablation (each head evaluated on the maps saved in step 5,
``evaluate_maps.json``, without sampling again), the other uncertainty estimators of the paper (single softmax
pass; aleatoric + MC dropout; learned confidence), each with its own stage-1 networks where it needs them, and the
whole experiment for 3 seeds of both stages: the tables then give mean ± sd over seeds.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import torch

from segq_monai.apps.arguments import bundle_root_arg
from segq_monai.apps.demo_recalibration import (
    fit_site_calibration,
    recalibration_scores,
    recalibration_table,
    site_half,
)
from segq_monai.apps.demo_tables import reference_pass_ms, results_of, spread_table, temperature_table, time_table
from segq_monai.apps.steps import StepTimes, trained
from segq_monai.apps.workflows import run_workflow
from segq_monai.calibration.recalibration import min_interval_cases
from segq_monai.data.columns import read_quality_csv
from segq_monai.data.demo import DEVELOPMENT_KINDS, PLANES, prepare_demo
from segq_monai.data.synthetic import FAILURE_SOURCE, SYNTHETIC_DATALIST, SYNTHETIC_FAILURES, write_synthetic_failures
from segq_monai.evaluation.bootstrap import report_intervals, write_intervals
from segq_monai.inferers.factory import PLAIN_NETWORK_SAMPLERS
from segq_monai.networks.recipe import HEAD_RECIPE
from segq_monai.transforms.artifacts import ARTIFACT_KINDS, EXTRA_ARTIFACT_KINDS
from segq_monai.transforms.quality import PLAIN_NETWORK_VARIANTS
from segq_monai.utils.atomic import atomic_write_text, remove_temporaries, writable_dir
from segq_monai.utils.resources import bundle_root

MAIN_VARIANT = HEAD_RECIPE["quality_variant"]
#: the head variants of ``--full``, the main one first: those the main stage-1 network feeds (no learned confidence)
VARIANTS = (MAIN_VARIANT, *(v for v in PLAIN_NETWORK_VARIANTS if v != MAIN_VARIANT))
#: the report folder of each split, relative to a variant's report folder
SPLIT_DIRS = {"calibration": "calibration_split", "testing": ".", "shift": "shift_split",
              "cross_subject": "cross_subject_split"}  # fmt: skip
#: the splits whose images differ in shape (evaluated one case a batch)
MIXED_SHAPES = ("shift", "cross_subject")
#: the files an evaluation writes when it completes (the cohort page last): a rerun skips it when they exist
EVALUATED = ("quality.csv", "report.json", "index.html")


class Estimator(NamedTuple):
    """A stage-1 uncertainty estimator of the comparison: its sampler, network overlay and quality-head input."""

    label: str
    sampler: str
    overlay: str | None  # a file of the bundle's configs/ that swaps the stage-1 network and loss; None: the main ones
    variant: str


ESTIMATORS = {
    "softmax": Estimator("softmax, T=1", "single_pass", None, MAIN_VARIANT),
    "aleatoric": Estimator("aleatoric + MC dropout", "aleatoric", "aleatoric_network.json", MAIN_VARIANT),
    "confidence": Estimator("learned confidence + MC dropout", "mc_dropout", "confidence_network.json",
                            "image_seg_confidence"),
}  # fmt: skip


class _Demo:
    """The steps of the experiment, sharing the data, the folders, the common overrides and the step times."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.output_dir).resolve()
        self.bundle_root = args.bundle_root or bundle_root()
        self.device = args.device or ("cuda:0" if torch.cuda.is_available() else "cpu")
        self.common = {"device": args.device} if args.device else {}
        self.out.mkdir(parents=True, exist_ok=True)
        remove_temporaries(self.out)  # a killed run's half-written files
        self.times = StepTimes(self.out)
        self.reference_ms = [reference_pass_ms(self.bundle_root, self.device)]
        with self.times.timed("prepare the demo data"):
            self.data = prepare_demo(self.out / "data", variants=args.variants_per_slice,
                                     held_out_variants=args.held_out_variants, shift_variants=args.shift_variants,
                                     cross_subject_variants=args.cross_subject_variants,
                                     geometric_variants=args.geometric_variants, planes=tuple(args.planes),
                                     development_kinds=tuple(args.development_artifacts))  # fmt: skip
        sections = json.loads(self.data["dataset"].read_text())
        self.splits = [s for s in SPLIT_DIRS if sections.get(s)]
        self.mixed = len(set(args.planes)) > 1  # slices of several planes differ in shape: one a batch at inference
        self.groups = {s: {item["image"]: item["group"] for item in sections[s]} for s in self.splits}

    def stage1(
        self, ckpt_dir: Path, stage2: Path, sampler: str, overlay: list[str], train: bool, seed: int, tag: str
    ) -> list[str]:
        """Train (when ``train``) and sample out-of-fold per fold; returns the stage-2 datalists. Steps done by an
        earlier run are skipped; the others continue where it stopped."""
        a = self.args
        for fold in range(a.num_folds):
            where = f"{tag}stage 1, fold {fold + 1}/{a.num_folds}"
            checkpoint = ckpt_dir / f"fold{fold}" / "model.pt"
            folds = dict(group_key="group", fold=fold, num_folds=a.num_folds, ckpt_dir=str(ckpt_dir), **self.common)
            if train:
                self.times.run(f"{where}: train the segmentation network", trained(checkpoint), partial(
                    run_workflow, self.bundle_root, ["train_segmentation.json", *overlay],
                    datalist=str(self.data["stage1"]), epochs=a.epochs_segmentation, output_dir=str(self.out),
                    seed=seed, mlflow=False, **folds))  # fmt: skip
            if train and not overlay:
                self.times.run(f"{where}: fit the temperature on its held-out slices",
                               (checkpoint.parent / "temperature.json").is_file(),
                               partial(run_workflow, self.bundle_root, ["fit_temperature.json"],
                                       datalist=str(self.data["stage1"]),
                                       **({"batch_size": 1} if self.mixed else {}), **folds))  # fmt: skip
            self.times.run(f"{where}: sample the held-out cases (out-of-fold, {sampler})",
                           (stage2 / f"fold{fold}" / "stage2_datalist.json").is_file(), partial(
                               run_workflow, self.bundle_root, ["inference.json", "sample.json", *overlay],
                               datalist=str(self.data["dataset"]), datalist_key="training",
                               num_samples=a.num_samples, sampler=sampler, seed=seed, skip_existing=True,
                               output_dir=str(stage2 / f"fold{fold}"), **self.one_a_batch(sampler, self.mixed),
                               **folds))  # fmt: skip
        return [str(stage2 / f"fold{f}" / "stage2_datalist.json") for f in range(a.num_folds)]

    def one_a_batch(self, sampler: str, mixed: bool) -> dict[str, Any]:
        """Overrides for cases of several shapes (turned, coronal, sagittal and axial slices): one case a batch, and
        then MC dropout's T samples as one batch of T copies (on a CPU about twice as fast as T passes of one)."""
        if not mixed:
            return {}
        return {"batch_size": 1, **({"sampler_kwargs": {"chunk_size": self.args.num_samples}}
                                    if sampler == "mc_dropout" else {})}  # fmt: skip

    def synthetic_failures(self, stage2_datalists: list[str], tag: str) -> list[str]:
        """``--synthetic_failures`` copies of every out-of-fold case (:mod:`segq_monai.data.synthetic`), written once
        beside the folds; returns their datalist (none without the option)."""
        a = self.args
        if not a.synthetic_failures:
            return []
        folder = Path(stage2_datalists[0]).parent.parent / "synthetic"
        self.times.run(f"{tag}stage 2: {a.synthetic_failures} synthetic failures per out-of-fold case",
                       (folder / SYNTHETIC_DATALIST).is_file(),
                       partial(write_synthetic_failures, stage2_datalists, folder, a.synthetic_failures,
                               num_classes=2, source=FAILURE_SOURCE, seed=0))  # fmt: skip
        return [str(folder / SYNTHETIC_DATALIST)]

    def stage2(
        self, variant: str, stage2_datalists: list[str], head_dir: Path, report_dir: Path, sampler: str,
        overlay: list[str], stage1_checkpoint: Path, seed: int, tag: str, maps_from: Path | None = None,
    ) -> dict[str, tuple[dict[str, Any], dict[str, Any] | None]]:
        """Train the quality head on ``variant``; evaluate it on the calibration split, then on the test and shift
        splits with the guaranteed flag calibrated on the first. ``maps_from``: the report folder of a run whose
        saved maps to read (no sampling). Returns ``{split: (report, bootstrap intervals or None)}``."""
        a = self.args
        training = stage2_datalists + self.synthetic_failures(stage2_datalists, tag)
        self.times.run(f"{tag}stage 2: train the quality head on {variant.replace('_', ' + ')}",
                       trained(head_dir / f"quality_{variant}" / "model.pt"),
                       partial(run_workflow, self.bundle_root, ["train_quality.json"], stage2_datalists=training,
                               quality_variant=variant, ckpt_dir=str(head_dir),
                               **({"epochs": a.epochs_quality} if a.epochs_quality else {}),
                               output_dir=str(report_dir.parent), seed=seed, mlflow=False,
                               **self.common))  # fmt: skip
        oof_tables = [str(Path(p).with_name("quality.csv")) for p in stage2_datalists]
        common = dict(datalist=str(self.data["dataset"]), quality_variant=variant, num_samples=a.num_samples,
                      sampler=sampler, ckpt_dir=str(head_dir), stage1_checkpoint=str(stage1_checkpoint),
                      baseline_fit_csvs=oof_tables, seed=seed, **self.common)  # fmt: skip
        configs = ["inference.json", *overlay, "evaluate.json"] + (["evaluate_maps.json"] if maps_from else [])
        calibration_csv = str(report_dir / SPLIT_DIRS["calibration"] / "quality.csv")
        results = {}
        for split in self.splits:
            split_dir = (report_dir / SPLIT_DIRS[split]).resolve()
            extra: dict[str, Any] = {}
            if split != "calibration":
                extra.update(alpha=a.alpha, calibration_csvs=[calibration_csv])
            extra.update(self.one_a_batch(sampler, split in MIXED_SHAPES or self.mixed))
            if maps_from is not None:
                extra["maps_dir"] = str((maps_from / SPLIT_DIRS[split]).resolve())
            how = "saved maps" if maps_from is not None else "sampling"
            self.times.run(f"{tag}evaluate {variant} on the {split} split ({how})",
                           all((split_dir / f).is_file() for f in EVALUATED),
                           partial(run_workflow, self.bundle_root, configs, datalist_key=split,
                                   output_dir=str(split_dir), skip_existing=True, **extra, **common))  # fmt: skip
            report = json.loads((split_dir / "report.json").read_text())
            intervals = None
            if split != "calibration" and a.seeds == 1:
                rows = read_quality_csv(split_dir / "quality.csv")
                intervals = report_intervals(rows, report, [self.groups[split][r["image"]] for r in rows],
                                             n_resamples=a.bootstrap_resamples)  # fmt: skip
                write_intervals(intervals, split_dir / "bootstrap.json")
            results[split] = (report, intervals)
        return results

    def one_seed(self, seed: int, tables: dict[str, dict[str, list[Any]]]) -> None:
        """The experiment with stage-1 and stage-2 seed ``seed``; appends its results to ``tables``."""
        a = self.args
        out = self.out if seed == 0 else self.out / "seeds" / f"seed{seed}"
        models = self.out / "models" if seed == 0 else self.out / "models" / "seeds" / f"seed{seed}"
        tag = f"seed {seed}: " if a.seeds > 1 else ""
        stage2 = self.stage1(models, out / "stage2_data", a.sampler, [], train=True, seed=seed, tag=tag)
        sampled: Path | None = None
        for variant in a.quality_variants:
            report_dir = out / ("report" if variant == MAIN_VARIANT else f"report_{variant}")
            res = self.stage2(variant, stage2, models, report_dir, a.sampler, [], models / "fold0" / "model.pt", seed,
                              tag, maps_from=sampled)  # fmt: skip
            for split, (report, intervals) in res.items():
                for label, r in results_of(report, intervals, f"quality head ({variant})", sampled is None).items():
                    tables.setdefault(f"variants/{split}", {}).setdefault(label, []).append(r)
                if variant == MAIN_VARIANT and a.estimators:
                    label = f"{a.sampler.replace('_', ' ')}, T={a.num_samples}; {MAIN_VARIANT}"
                    tables.setdefault(f"estimators/{split}", {}).setdefault(label, []).extend(
                        results_of(report, intervals, label, baselines=False).values())
            if sampled is None and "calibration" in self.splits:
                self.recalibrate(report_dir, models / f"quality_{variant}" / "model.pt", tables)
            sampled = sampled or report_dir
        for name in a.estimators:
            est = ESTIMATORS[name]
            overlay = [est.overlay] if est.overlay else []
            ckpt_dir = models / "estimators" / name
            stage1_dir = ckpt_dir if est.overlay else models
            datalists = self.stage1(stage1_dir, out / "estimators" / name / "stage2_data", est.sampler, overlay,
                                    train=bool(est.overlay), seed=seed, tag=f"{tag}{name}: ")  # fmt: skip
            res = self.stage2(est.variant, datalists, ckpt_dir, out / "estimators" / name / "report", est.sampler,
                              overlay, stage1_dir / "fold0" / "model.pt", seed, f"{tag}{name}: ")  # fmt: skip
            label = f"{est.label}; {est.variant}"
            for split, (report, intervals) in res.items():
                tables.setdefault(f"estimators/{split}", {}).setdefault(label, []).extend(
                    results_of(report, intervals, label, baselines=False).values())

    def recalibrate(self, report_dir: Path, checkpoint: Path, tables: dict[str, dict[str, list[Any]]]) -> None:
        """Fit the site calibration of the head on its calibration split; score it on the other splits."""
        rows = read_quality_csv(report_dir / SPLIT_DIRS["calibration"] / "quality.csv")
        calibration = fit_site_calibration(rows, checkpoint, [self.groups["calibration"][r["image"]] for r in rows])
        for split in self.splits[1:]:
            rows = read_quality_csv(report_dir / SPLIT_DIRS[split] / "quality.csv")
            groups = [self.groups[split][r["image"]] for r in rows] if self.args.seeds == 1 else None
            scores = recalibration_scores(calibration, rows, groups, self.args.bootstrap_resamples)
            tables.setdefault("recalibration", {}).setdefault(split, []).append(scores)
        # the demo's site half: seed 0 of site_half (the site's labelled cases recalibrate, the rest score it)
        site = site_half(self.groups["cross_subject"], 0) if "cross_subject" in self.splits else set()
        if site and len(site) < min_interval_cases(0.9):
            print(f"== no recalibration on the cross-subject split: half of it is {len(site)} cases, 90 % intervals "
                  f"need {min_interval_cases(0.9)} (--cross_subject_variants 2 or more)")
        elif site:
            rows = read_quality_csv(report_dir / SPLIT_DIRS["cross_subject"] / "quality.csv")
            calibration = fit_site_calibration([r for r in rows if r["image"] in site], checkpoint)
            rows = [r for r in rows if r["image"] not in site]
            groups = [self.groups["cross_subject"][r["image"]] for r in rows] if self.args.seeds == 1 else None
            scores = recalibration_scores(calibration, rows, groups, self.args.bootstrap_resamples)
            tables["recalibration"].setdefault("cross_subject_site", []).append(scores)

    def run(self) -> dict[str, dict[str, list[Any]]]:
        a = self.args
        tables: dict[str, dict[str, list[Any]]] = {}
        for seed in range(a.seeds):
            self.one_seed(seed, tables)
        self.reference_ms.append(reference_pass_ms(self.bundle_root, self.device))
        text = self.comparison(tables)
        summary_dir = self.out / "report"
        summary_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(summary_dir / "comparison.md", text)
        print(text)
        print(f"Done in {sum(s for _, s in self.times.steps) / 60:.1f} min. Report: {summary_dir}")
        return tables

    def comparison(self, tables: dict[str, dict[str, list[Any]]]) -> str:
        """The text of ``comparison.md``."""
        a = self.args
        spread = (
            f"mean ± sd over {a.seeds} seeds (stage 1 and stage 2 seeds 0 to {a.seeds - 1})" if a.seeds > 1 else
            f"in brackets, a 95 % bootstrap interval that resamples slices (all artifact copies of a slice together; "
            f"{a.bootstrap_resamples} resamples)"
        )  # fmt: skip
        text = (
            f"Demo: {a.num_folds} folds, T={a.num_samples}, stage 1 {a.epochs_segmentation} epochs, stage 2 "
            f"{a.epochs_quality or 'train_quality.json'} epochs, guaranteed flag at alpha={a.alpha}; {a.seeds} seed(s); "
            f"{sum(s for _, s in self.times.steps) / 60:.1f} min.\n\n"
            f"Spread: {spread}. Scores on the per-case mean Dice over classes; failure: true Dice < 0.8; AURC/e-AURC "
            "with risk = 1 − Dice (lower is better); AURC − head's: a method's AURC minus the first quality head's, "
            "its interval paired (both on the same resamples; above 0: the head ranks better beyond the spread); "
            "baseline MAE after a least-squares map onto the Dice scale "
            "fitted on the out-of-fold cases. Guaranteed flag: acceptance threshold calibrated on the calibration "
            f"split so that the failure rate among accepted cases is at most α = {a.alpha} with probability 1 − δ; "
            "accepted = fraction of the evaluated cases auto-accepted, then the realised failures among them.\n\n"
        )
        titles = {
            "testing": "Test split (in-distribution)",
            "cross_subject": "Cross-subject split (the MNI152 template's slices in three planes with graded artifacts, "
                             "kept, turned or zoomed: a person neither stage saw, brain-extracted, from another "
                             "scanner, grid and field of view)",
            "shift": "Shift split (the test slices' artifact copies turned by 90° or resampled to 3 mm / 1.5 mm "
                     "pixels: an orientation and resolutions stage 1 never saw)",
        }  # fmt: skip
        for split in ("testing", "shift", "cross_subject"):
            if f"variants/{split}" in tables:
                table = spread_table(tables[f"variants/{split}"], f"quality head ({a.quality_variants[0]})")
                text += f"## {titles[split]}: quality head and scalar baselines\n\n{table}\n"
        if "recalibration" in tables:
            labels = {"testing": "test (in-distribution)", "shift": "shift", "cross_subject": "cross-subject",
                      "cross_subject_site": "cross-subject, recalibrated on its other half (by slice)"}  # fmt: skip
            text += (
                f"## Recalibration to the site: the quality head ({a.quality_variants[0]}) recalibrated (identity, "
                "linear or isotonic map, chosen by cross-validated MAE) with split-conformal 90 % intervals (the "
                "kind in use, then both kinds), fitted on the calibration split; the last row is recalibrated on half "
                "the cross-subject slices instead and scored on the other half\n\n"
                + recalibration_table({labels[k]: v for k, v in tables["recalibration"].items()}) + "\n"
            )
        for split in ("testing", "shift", "cross_subject"):
            if len(tables.get(f"estimators/{split}", {})) > 1:
                table = spread_table(tables[f"estimators/{split}"])
                text += f"## Uncertainty estimators of stage 1, {titles[split]}\n\n{table}\n"
        text += temperature_table(self.out / "models", a.num_folds)
        text += f"## Time of each step\n\n{time_table(self.times.steps, self.reference_ms)}"
        return text


def demo(args: argparse.Namespace) -> dict[str, dict[str, list[Any]]]:
    """Run the whole experiment; returns ``{"variants/<split>" | "estimators/<split>": {label: [Result per seed]},
    "recalibration": {split: [scores per seed]}}``."""
    if args.full:
        args.quality_variants = args.quality_variants or list(VARIANTS)
        args.estimators = list(ESTIMATORS) if args.estimators is None else args.estimators
        args.seeds = args.seeds or 3
    args.quality_variants = args.quality_variants or [MAIN_VARIANT]
    args.estimators = args.estimators or []
    args.seeds = args.seeds or 1
    return _Demo(args).run()


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``demo`` and its options on the ``python -m segq_monai`` command line."""
    d = commands.add_parser("demo", help="train both stages on the embedded demo data, evaluate, write the report",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--output_dir", default="segq_output",
                   help="where data, weights (models/), maps and reports go")
    d.add_argument("--bundle_root", type=bundle_root_arg, default=None,
                   help="the bundle whose workflows run (default: the one shipped with segq-monai; it is only read)")
    d.add_argument("--full", action="store_true",
                   help="the full comparison: every quality variant, every estimator, 3 seeds (each overridable)")
    d.add_argument("--num_folds", type=int, default=2)
    d.add_argument("--variants_per_slice", type=int, default=4, help="artifact copies per development slice")
    d.add_argument("--held_out_variants", type=int, default=6,
                   help="artifact copies per calibration or test slice")
    d.add_argument("--shift_variants", type=int, default=6, help="shifted artifact copies per test slice (0: none)")
    d.add_argument("--cross_subject_variants", type=int, default=4,
                   help="artifact copies per MNI152 slice, 26 slices in three planes (0: no cross-subject split)")
    d.add_argument("--planes", nargs="+", default=["axial"], choices=PLANES,
                   help="the planes of Colin27 both stages train on and the calibration and test splits hold "
                        "(default: axial, chosen by the rule of docs/head_choice_rule.md over all three)")
    d.add_argument("--development_artifacts", nargs="+", default=list(DEVELOPMENT_KINDS),
                   choices=ARTIFACT_KINDS + EXTRA_ARTIFACT_KINDS, help="artifact kinds of the quality head's training "
                   "copies (held-out copies: MONAI's five)")
    d.add_argument("--geometric_variants", type=int, default=0,
                   help="further artifact copies per development slice, turned and zoomed at random (stage-2 data; "
                        "measured, not the default: docs/results.md, 'Choosing the head')")
    d.add_argument("--synthetic_failures", type=int, default=SYNTHETIC_FAILURES,
                   help="synthetic failures per out-of-fold case for the quality head's training (0: none; "
                        "the default is the recipe chosen in docs/results.md)")
    d.add_argument("--epochs_segmentation", type=int, default=25)
    d.add_argument("--epochs_quality", type=int, default=None,
                   help="epochs of the quality head (default: train_quality.json's, chosen with its recipe)")
    d.add_argument("--num_samples", type=int, default=10, help="T, samples per image")
    d.add_argument("--sampler", default="mc_dropout", choices=PLAIN_NETWORK_SAMPLERS)
    d.add_argument("--quality_variants", nargs="+", default=None, choices=list(VARIANTS),
                   help=f"quality-head inputs; the first samples, the others reuse its maps (default: {MAIN_VARIANT}; "
                        "--full: all)")
    d.add_argument("--estimators", nargs="*", default=None, choices=list(ESTIMATORS),
                   help="further stage-1 estimators to compare (default: none; --full: all)")
    d.add_argument("--seeds", type=int, default=None, help="seeds of both stages, 0 to N-1 (default 1; --full: 3)")
    d.add_argument("--bootstrap_resamples", type=int, default=1000, help="resamples of the slice bootstrap")
    d.add_argument("--alpha", type=float, default=0.1, help="target failure rate among auto-accepted cases")
    d.add_argument("--device", default=None, help="e.g. cpu or cuda:0; default: cuda:0 when available")
    d.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> None:
    writable_dir(args.output_dir)
    demo(args)
