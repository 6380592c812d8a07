"""``python -m segq_monai demo``: the two-stage experiment on the embedded Colin27 demo data, end to end.

Each step is one of the bundle's workflows, run as ``python -m monai.bundle run`` would run it (the same
``monai.bundle.run`` entry point, in this process):

1. prepare the demo data (``segq_monai.data.demo.prepare_demo``): a development block and a test block of slices,
   artifact copies at graded severities;
2. ``train_segmentation.json`` once per fold, on the clean development slices of the other folds;
3. ``sample.json`` once per fold: that fold's model samples its held-out artifact copies (out-of-fold), writing
   segmentations, uncertainty maps and true Dice/IoU: the training data of stage 2;
4. ``train_quality.json`` for each input variant of the paper's ablation;
5. ``inference.json`` + ``evaluate.json`` on the test block, for each variant: ``quality.csv``, NIfTI maps,
   ``report.json``, figures; then ``comparison.md``, the side-by-side table of the variants and the baselines.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from monai.bundle import run as bundle_run

from segq_monai.data.demo import prepare_demo
from segq_monai.report import comparison_table

MAIN_VARIANT = "image_seg_entropy"
VARIANTS = ("image_seg_entropy", "image", "image_seg", "seg_entropy")


def _default_bundle_root() -> Path:
    return Path(__file__).resolve().parents[1] / "bundle"


def _run(bundle_root: Path, configs: Sequence[str], **overrides) -> None:
    files = [str(bundle_root / "configs" / c) for c in configs]
    bundle_run(
        config_file=files if len(files) > 1 else files[0],
        meta_file=str(bundle_root / "configs" / "metadata.json"),
        logging_file=str(bundle_root / "configs" / "logging.conf"),
        bundle_root=str(bundle_root),
        **overrides,
    )


def demo(args: argparse.Namespace) -> dict[str, dict]:
    """Run the whole experiment; returns the evaluation report of each variant."""
    start = time.perf_counter()
    out = Path(args.output_dir).resolve()
    bundle_root = Path(args.bundle_root).resolve()
    if not (bundle_root / "configs" / "inference.json").is_file():
        raise FileNotFoundError(
            f"No bundle at {bundle_root} (configs/inference.json is missing); pass --bundle_root to the bundle/ "
            "folder of a segq-monai checkout."
        )
    ckpt_dir = str(bundle_root / "models")
    common = {"device": args.device} if args.device else {}
    data = prepare_demo(out / "data", variants=args.variants_per_slice)
    stage2 = out / "stage2_data"
    for fold in range(args.num_folds):
        print(f"== stage 1, fold {fold + 1}/{args.num_folds}: train the segmentation network")
        _run(bundle_root, ["train_segmentation.json"], datalist=str(data["stage1"]), group_key="group", fold=fold,
             num_folds=args.num_folds, epochs=args.epochs_segmentation, ckpt_dir=ckpt_dir, output_dir=str(out),
             **common)
        print(f"== stage 1, fold {fold + 1}/{args.num_folds}: sample the held-out cases (out-of-fold)")
        _run(bundle_root, ["sample.json"], datalist=str(data["dataset"]), datalist_key="training",
             group_key="group", fold=fold, num_folds=args.num_folds, num_samples=args.num_samples,
             sampler=args.sampler, ckpt_dir=ckpt_dir, output_dir=str(stage2 / f"fold{fold}"), **common)
    stage2_datalists = [str(stage2 / f"fold{f}" / "stage2_datalist.json") for f in range(args.num_folds)]
    calibration = [str(stage2 / f"fold{f}" / "quality.csv") for f in range(args.num_folds)]
    reports = {}
    for variant in args.quality_variants:
        print(f"== stage 2: train the quality head on {variant.replace('_', ' + ')}")
        _run(bundle_root, ["train_quality.json"], stage2_datalists=stage2_datalists, quality_variant=variant,
             epochs=args.epochs_quality, ckpt_dir=ckpt_dir, output_dir=str(out), **common)
        report_dir = out / ("report" if variant == MAIN_VARIANT else f"report_{variant}")
        print(f"== evaluate {variant} on the test block -> {report_dir}")
        _run(bundle_root, ["inference.json", "evaluate.json"], datalist=str(data["dataset"]),
             datalist_key="testing", quality_variant=variant, num_samples=args.num_samples, sampler=args.sampler,
             ckpt_dir=ckpt_dir, output_dir=str(report_dir), calibration_csvs=calibration, **common)
        reports[variant] = json.loads((report_dir / "report.json").read_text())
    table = comparison_table(reports)
    summary_dir = out / "report" if MAIN_VARIANT in reports else out
    summary_dir.mkdir(parents=True, exist_ok=True)
    minutes = (time.perf_counter() - start) / 60
    (summary_dir / "comparison.md").write_text(
        f"Demo: {args.num_folds} folds, T={args.num_samples} ({args.sampler}), stage 1 {args.epochs_segmentation} "
        f"epochs, stage 2 {args.epochs_quality} epochs; {minutes:.1f} min.\n\n{table}\n"
    )
    print(table)
    print(f"Done in {minutes:.1f} min. Report: {summary_dir}")
    return reports


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m segq_monai", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="train both stages on the embedded demo data, evaluate, write the report")
    d.add_argument("--output_dir", default="segq_output", help="where data, maps and reports go")
    d.add_argument("--bundle_root", default=str(_default_bundle_root()), help="the bundle/ folder (weights go to its models/)")
    d.add_argument("--num_folds", type=int, default=3)
    d.add_argument("--variants_per_slice", type=int, default=4, help="artifact copies per demo slice")
    d.add_argument("--epochs_segmentation", type=int, default=40)
    d.add_argument("--epochs_quality", type=int, default=60)
    d.add_argument("--num_samples", type=int, default=20, help="T, samples per image")
    d.add_argument("--sampler", default="mc_dropout", choices=["mc_dropout", "tta", "ensemble", "softmax"])
    d.add_argument("--quality_variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    d.add_argument("--device", default=None, help="e.g. cpu or cuda:0; default: cuda:0 when available")
    args = parser.parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    demo(args)


if __name__ == "__main__":
    main()
