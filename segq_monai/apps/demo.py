"""``python -m segq_monai demo`` (``segq-monai demo``): the two-stage experiment on the embedded Colin27 demo data,
end to end.

Each step is one of the bundle's workflows, run as ``python -m monai.bundle run`` would run it (the same
``monai.bundle.run`` entry point, in this process):

1. prepare the demo data (``segq_monai.data.demo.prepare_demo``): development slices, held-out slices split into a
   calibration and a test split, artifact copies at graded severities;
2. ``train_segmentation.json`` once per fold, on the clean development slices of the other folds, then
   ``calibrate.json``: the temperature of that fold's network, fitted on its held-out clean slices, with the
   expected calibration error before and after (reported, not applied: ``--temperature_scaling`` is off);
3. ``sample.json`` once per fold: that fold's model samples its held-out artifact copies (out-of-fold), writing
   segmentations, uncertainty maps and true Dice/IoU: the training data of stage 2;
4. ``train_quality.json`` for each input variant of the paper's ablation;
5. ``inference.json`` + ``evaluate.json`` for each variant, first on the calibration split, then on the test split
   with the guaranteed flag (``alpha``) calibrated on the first: ``quality.csv``, NIfTI maps, ``report.json``,
   figures;
6. the same for the other uncertainty estimators of the paper (single softmax pass; aleatoric + MC dropout;
   learned confidence), each with its own stage-1 networks where it needs them;
7. ``comparison.md``: the side-by-side tables of the variants, the estimators and the baselines.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

from segq_monai.apps.arguments import bundle_root_arg
from segq_monai.apps.workflows import run_workflow
from segq_monai.data.demo import prepare_demo
from segq_monai.evaluation.tables import comparison_table
from segq_monai.utils.resources import bundle_root

MAIN_VARIANT = "image_seg_entropy"
VARIANTS = ("image_seg_entropy", "image", "image_seg", "seg_entropy")


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
    """The steps of the experiment, sharing the data, the folders and the common overrides."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.output_dir).resolve()
        self.bundle_root = args.bundle_root or bundle_root()
        self.common = {"device": args.device} if args.device else {}
        self.data = prepare_demo(
            self.out / "data", variants=args.variants_per_slice, held_out_variants=args.held_out_variants
        )

    def stage1(self, ckpt_dir: Path, stage2: Path, sampler: str, overlay: list[str], train: bool) -> list[str]:
        """Train (when ``train``) and sample out-of-fold per fold; returns the stage-2 datalists."""
        a = self.args
        for fold in range(a.num_folds):
            if train:
                print(f"== stage 1, fold {fold + 1}/{a.num_folds}: train the segmentation network")
                run_workflow(self.bundle_root, ["train_segmentation.json", *overlay], datalist=str(self.data["stage1"]),
                     group_key="group", fold=fold, num_folds=a.num_folds, epochs=a.epochs_segmentation,
                     ckpt_dir=str(ckpt_dir), output_dir=str(self.out), **self.common)
                if not overlay:
                    print(f"== stage 1, fold {fold + 1}/{a.num_folds}: fit the temperature on its held-out slices")
                    run_workflow(self.bundle_root, ["calibrate.json"], datalist=str(self.data["stage1"]),
                                 group_key="group",
                         fold=fold, num_folds=a.num_folds, ckpt_dir=str(ckpt_dir), **self.common)
            print(f"== stage 1, fold {fold + 1}/{a.num_folds}: sample the held-out cases (out-of-fold, {sampler})")
            run_workflow(self.bundle_root, ["inference.json", "sample.json", *overlay],
                         datalist=str(self.data["dataset"]), datalist_key="training", group_key="group", fold=fold,
                         num_folds=a.num_folds, num_samples=a.num_samples, sampler=sampler, ckpt_dir=str(ckpt_dir),
                         output_dir=str(stage2 / f"fold{fold}"), **self.common)
        return [str(stage2 / f"fold{f}" / "stage2_datalist.json") for f in range(a.num_folds)]

    def stage2(
        self, variant: str, stage2_datalists: list[str], head_dir: Path, report_dir: Path, sampler: str,
        overlay: list[str], stage1_checkpoint: Path,
    ) -> dict[str, Any]:
        """Train the quality head on ``variant``; evaluate it on the calibration split, then on the test split
        with the guaranteed flag calibrated on the first. Returns the test report."""
        a = self.args
        print(f"== stage 2: train the quality head on {variant.replace('_', ' + ')}")
        run_workflow(self.bundle_root, ["train_quality.json"], stage2_datalists=stage2_datalists,
                     quality_variant=variant,
             epochs=a.epochs_quality, ckpt_dir=str(head_dir), output_dir=str(report_dir.parent), **self.common)
        oof_tables = [str(Path(p).with_name("quality.csv")) for p in stage2_datalists]
        common = dict(datalist=str(self.data["dataset"]), quality_variant=variant, num_samples=a.num_samples,
                      sampler=sampler, ckpt_dir=str(head_dir), stage1_checkpoint=str(stage1_checkpoint),
                      baseline_fit_csvs=oof_tables, **self.common)  # fmt: skip
        calibration_dir = report_dir / "calibration_split"
        print(f"== evaluate {variant} on the calibration split -> {calibration_dir}")
        run_workflow(self.bundle_root, ["inference.json", *overlay, "evaluate.json"], datalist_key="calibration",
             output_dir=str(calibration_dir), **common)
        print(f"== evaluate {variant} on the test split -> {report_dir}")
        run_workflow(self.bundle_root, ["inference.json", *overlay, "evaluate.json"], datalist_key="testing",
             output_dir=str(report_dir), alpha=a.alpha, conformal_csvs=[str(calibration_dir / "quality.csv")],
             **common)
        return json.loads((report_dir / "report.json").read_text())

    def run(self) -> dict[str, dict[str, Any]]:
        a, out = self.args, self.out
        start = time.perf_counter()
        models = out / "models"
        stage2 = self.stage1(models, out / "stage2_data", a.sampler, [], train=True)
        variants = {}
        for variant in a.quality_variants:
            report_dir = out / ("report" if variant == MAIN_VARIANT else f"report_{variant}")
            variants[variant] = self.stage2(variant, stage2, models, report_dir, a.sampler, [],
                                            models / "fold0" / "model.pt")
        estimators = {}
        if MAIN_VARIANT in variants:
            estimators[f"{a.sampler.replace('_', ' ')}, T={a.num_samples}; {MAIN_VARIANT}"] = variants[MAIN_VARIANT]
        for name in a.estimators:
            est = ESTIMATORS[name]
            overlay = [est.overlay] if est.overlay else []
            ckpt_dir = models / "estimators" / name
            stage1_dir = ckpt_dir if est.overlay else models
            datalists = self.stage1(stage1_dir, out / "estimators" / name / "stage2_data", est.sampler, overlay,
                                    train=bool(est.overlay))
            estimators[f"{est.label}; {est.variant}"] = self.stage2(
                est.variant, datalists, ckpt_dir, out / "estimators" / name / "report", est.sampler, overlay,
                stage1_dir / "fold0" / "model.pt",
            )
        minutes = (time.perf_counter() - start) / 60
        summary_dir = out / "report"
        summary_dir.mkdir(parents=True, exist_ok=True)
        text = (
            f"Demo: {a.num_folds} folds, T={a.num_samples}, stage 1 {a.epochs_segmentation} epochs, stage 2 "
            f"{a.epochs_quality} epochs, guaranteed flag at alpha={a.alpha}; {minutes:.1f} min.\n\n"
            f"## Quality-head inputs ({a.sampler.replace('_', ' ')}) and the scalar baselines\n\n"
            f"{comparison_table(variants)}\n"
        )
        text += _temperature_table(models, a.num_folds)
        if len(estimators) > 1:
            text += f"## Uncertainty estimators of stage 1\n\n{comparison_table(estimators, baselines=False)}\n"
        (summary_dir / "comparison.md").write_text(text)
        print(text)
        print(f"Done in {minutes:.1f} min. Report: {summary_dir}")
        return {"variants": variants, "estimators": estimators}


def _temperature_table(models: Path, num_folds: int) -> str:
    """Markdown: each fold's fitted temperature and its calibration errors (``calibrate.json`` outputs)."""
    lines = [
        "## Temperature scaling of stage 1 (fitted per fold on its held-out clean slices)\n",
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


def demo(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Run the whole experiment; returns the test reports: ``{"variants": {...}, "estimators": {...}}``."""
    return _Demo(args).run()


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``demo`` and its options on the ``python -m segq_monai`` command line."""
    d = commands.add_parser("demo", help="train both stages on the embedded demo data, evaluate, write the report",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--output_dir", default="segq_output",
                   help="where data, weights (models/), maps and reports go")
    d.add_argument("--bundle_root", type=bundle_root_arg, default=None,
                   help="the bundle whose workflows run (default: the one shipped with segq-monai; it is only read)")
    d.add_argument("--num_folds", type=int, default=3)
    d.add_argument("--variants_per_slice", type=int, default=4, help="artifact copies per development slice")
    d.add_argument("--held_out_variants", type=int, default=12,
                   help="artifact copies per calibration or test slice")
    d.add_argument("--epochs_segmentation", type=int, default=40)
    d.add_argument("--epochs_quality", type=int, default=60)
    d.add_argument("--num_samples", type=int, default=20, help="T, samples per image")
    d.add_argument("--sampler", default="mc_dropout", choices=["mc_dropout", "tta", "ensemble", "single_pass"])
    d.add_argument("--quality_variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    d.add_argument("--estimators", nargs="*", default=list(ESTIMATORS), choices=list(ESTIMATORS),
                   help="further stage-1 estimators to compare (none: --estimators with no name)")
    d.add_argument("--alpha", type=float, default=0.1, help="target failure rate among auto-accepted cases")
    d.add_argument("--device", default=None, help="e.g. cpu or cuda:0; default: cuda:0 when available")
    d.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> None:
    os.makedirs(args.output_dir, exist_ok=True)
    demo(args)
