"""``python -m segq_monai example3d``: quality control for a user's own 3D multi-class bundle, end to end.

The user's side is played by ``examples/colin27_regions3d``, an ordinary MONAI bundle (3D UNet, four brain lobes
of Colin27 at 4 mm) that knows nothing of segq. Every step runs as its own command line, printed before it runs:

1. **data**: deformed crops of the embedded Colin27 volume with graded MR artifacts, split into the host's
   ``training`` and ``validation`` cases, ``calibration`` and ``testing``
   (:func:`segq_monai.data.volume3d.prepare_volume3d`; one head: the cases are correlated);
2. **host training**: ``python -m monai.bundle run`` on the host's own ``configs/train.json`` (a copy of the host
   bundle under ``OUT/colin27_regions3d``: weights land there, never in the package);
3. **fit**: ``python -m segq_monai fit`` on the host's validation cases (which it never trained on), calibrated on
   the ``calibration`` cases -> ``OUT/fit``;
4. **deploy**: the host's ``inference.json`` with segq's deploy overlay and ``segq#fit_dir`` on the test cases
   (``imagesTs``, as the host reads them) -> ``OUT/deploy``: segmentations, maps, ``quality.csv``;
5. **report**: true Dice per class from the saved segmentations and the labels, scored against the predicted Dice
   (:mod:`segq_monai.apps.example3d_report`) -> ``OUT/report``: ``report.md``, ``report.json``, PNG figures.

A rerun with the same arguments continues, also after a kill: finished steps are skipped (the data are rewritten
identically), the fit continues where it stopped (``fit.json`` records its finished steps), and an unfinished host
training or deployment runs again from its start.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

from segq_monai.apps.example3d_report import add_true_quality, write_example_report
from segq_monai.apps.fit import OVERLAYS
from segq_monai.apps.fit_cases import check_calibration_size
from segq_monai.apps.steps import StepTimes
from segq_monai.apps.workflows import bundle_argv
from segq_monai.data.datalist import load_datalist
from segq_monai.data.fit_folder import FIT_FILE
from segq_monai.data.volume3d import SPLITS, prepare_volume3d
from segq_monai.data.columns import read_quality_csv
from segq_monai.utils.atomic import atomic_write_text, remove_temporaries, writable_dir
from segq_monai.utils.resources import packaged

__all__ = ["add_parser", "example3d", "example_host_source"]

HOST_NAME = "colin27_regions3d"


def example_host_source() -> Path:
    """The example host bundle's folder (``examples/colin27_regions3d`` beside the checkout's ``bundle/``)."""
    path = packaged().parent / "examples" / HOST_NAME
    if not (path / "configs" / "train.json").is_file():
        raise FileNotFoundError(
            f"The example host bundle is missing at {path} (configs/train.json); run from a segq-monai checkout "
            "(the examples/ folder is not installed with the package)."
        )
    return path


def _command(step: str, argv: list[str], log: Path) -> None:
    """Run one step's command line in a process of its own, its output to the console and to ``log``."""
    print(shlex.join(argv), flush=True)
    with open(log, "a") as f:
        f.write(f"== {step}: {shlex.join(argv)}\n")
        f.flush()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            f.write(line)
        code = proc.wait()
    if code != 0:
        raise RuntimeError(
            f"step '{step}' failed (exit code {code}); its output is in {log}. Command:\n{shlex.join(argv)}"
        )


def _fit_done(fit_dir: Path) -> bool:
    """Whether ``fit_dir/fit.json`` records a finished fit: its last step, ``"calibration"``, is among its ``steps``
    (its ``calibration`` key holds the settings from the fit's first write on, so it cannot tell)."""
    path = fit_dir / FIT_FILE
    return path.is_file() and "calibration" in json.loads(path.read_text()).get("steps", [])


def example3d(args: argparse.Namespace) -> dict[str, Any]:
    """Run the example (see the module docstring); returns the report (with ``"times"``: seconds per step)."""
    check_calibration_size(args.cases[2], args, f"--cases gives {args.cases[2]}",
                           "Raise the third number of --cases, raise --alpha or --delta, or lower --coverage.")
    out = writable_dir(Path(args.output_dir).expanduser().resolve())
    remove_temporaries(out)  # a killed run's half-written files
    log = out / "example3d.log"
    times = StepTimes(out)

    cases = dict(zip(SPLITS, args.cases))
    with times.timed("data"):
        print(f"{cases} cases of {'x'.join(map(str, args.spatial_size))} voxels (4 mm) -> {out / 'data'}")
        datalist = prepare_volume3d(out / "data", cases=cases, spatial_size=args.spatial_size, seed=args.seed)

    host = out / HOST_NAME
    if not (host / "configs").is_dir():
        shutil.copytree(example_host_source(), host, ignore=shutil.ignore_patterns("models", "eval"))
    device = {"device": f"$torch.device('{args.device}')"} if args.device else {}
    train = [sys.executable, *bundle_argv([host / "configs" / "train.json"], host, "run",
                                          {"dataset_dir": str(out / "data"), "epochs": args.epochs,
                                           "val_interval": max(1, args.epochs // 4), **device})]  # fmt: skip
    step = "host training (the host's own train.json)"
    times.run(step, (host / "models" / "model.pt").is_file(), partial(_command, step, train, log))

    fit_dir = out / "fit"
    fit = [sys.executable, "-m", "segq_monai", "fit", "--host_bundle", str(host), "--datalist", str(datalist),
           "--output_dir", str(fit_dir), "--num_samples", str(args.num_samples), "--epochs", str(args.epochs_quality),
           "--alpha", str(args.alpha), "--delta", str(args.delta), "--coverage", str(args.coverage),
           "--seed", str(args.seed), "--foreground_band", args.foreground_band]  # fmt: skip
    if args.head_channels:
        fit += ["--head_channels", *map(str, args.head_channels)]
    if args.device:
        fit += ["--device", args.device]
    step = "fit (segq_monai fit on the host's validation cases)"
    times.run(step, _fit_done(fit_dir), partial(_command, step, fit, log))

    deploy_dir = out / "deploy"
    deploy = [sys.executable, *bundle_argv([host / "configs" / "inference.json", OVERLAYS / "segq_overlay.json"], host,
                                           "run", {"segq#fit_dir": str(fit_dir), "dataset_dir": str(out / "data"),
                                                   "output_dir": str(deploy_dir), **device})]  # fmt: skip
    step = "deploy (host inference.json + segq overlay) on the test cases"
    # the deployment's last file is its cohort page
    times.run(step, (deploy_dir / "index.html").is_file(), partial(_command, step, deploy, log))

    with times.timed("report"):
        fit_json = json.loads((fit_dir / "fit.json").read_text())
        class_names = fit_json["class_names"]
        tests = load_datalist(datalist, "testing")
        labels = {item["image"]: item["label"] for item in tests}
        rows = add_true_quality(read_quality_csv(deploy_dir / "quality.csv"), deploy_dir, labels, class_names)
        tau = fit_json["calibration"]["tau"]
        report = write_example_report(rows, out / "report", deploy_dir, labels, class_names, threshold=tau)
    report["times"] = dict(times.steps)
    text = _report_markdown(report, args, fit_json, report["times"])
    atomic_write_text(out / "report" / "report.md", text)
    print(text)
    print(f"Report: {out / 'report'}")
    return report


def _report_markdown(report: dict[str, Any], args: argparse.Namespace, fit: dict[str, Any],
                     times: dict[str, float]) -> str:  # fmt: skip
    cal = fit.get("calibration") or {}
    threshold = cal.get("acceptance_threshold")
    lines = [
        f"3D example (Colin27 lobes, host `{HOST_NAME}`): cases per split {dict(zip(SPLITS, args.cases))}, "
        f"host {args.epochs} epochs, {fit['sampler']} T={fit['num_samples']}, quality head {args.epochs_quality} "
        f"epochs on {fit['datalist']['n_training']} cases, guaranteed flag at alpha={cal.get('alpha')} on "
        f"{cal.get('n_calibration')} calibration cases (accept when the raw predicted Dice >= "
        f"{'none certified' if threshold is None else f'{threshold:.3f}'}); predicted Dice recalibrated on them, "
        f"per-case intervals at coverage {cal.get('coverage')}.\n",
        f"## Predicted vs true Dice on the {report['n_cases']} test cases (bootstrap 95 % intervals over cases)\n",
        report["table"],
        "## Time of each step (wall clock, this machine)\n",
        "| step | seconds |",
        "| --- | ---: |",
        *(f"| {step} | {sec:.0f} |" for step, sec in times.items()),
        f"| total | {sum(times.values()):.0f} |",
        "",
        f"Figures: {', '.join(report.get('figures', []))}.",
    ]
    return "\n".join(lines) + "\n"


def add_parser(sub: Any) -> None:
    """Register the ``example3d`` subcommand on the subparsers of ``python -m segq_monai``."""
    p = sub.add_parser(
        "example3d", help="3D multi-class example: train a host bundle, fit and deploy segq on it, report",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--output_dir", default="segq_example3d", help="data, host copy, fit folder, outputs, report")
    p.add_argument("--cases", type=int, nargs=4, default=[24, 32, 32, 24], metavar=("TRAIN", "VAL", "CAL", "TEST"),
                   help="cases per split: host training, host validation (fit), calibration, test")
    p.add_argument("--spatial_size", type=int, nargs=3, default=[40, 48, 40], help="case size in 4 mm voxels")
    p.add_argument("--epochs", type=int, default=20, help="epochs of the host network")
    p.add_argument("--epochs_quality", type=int, default=20, help="epochs of the quality head")
    p.add_argument("--num_samples", type=int, default=10, help="T, MC dropout samples per case")
    p.add_argument("--foreground_band", default="auto", help="the fit's --foreground_band (VOXELS, auto or none)")
    p.add_argument("--head_channels", type=int, nargs="+", default=[8, 16, 32, 64],
                   help="channels of the quality head's levels (fit's --head_channels)")
    p.add_argument("--alpha", type=float, default=0.2, help="target failure rate among auto-accepted cases")
    p.add_argument("--delta", type=float, default=0.1, help="allowed probability that the guarantee fails")
    p.add_argument("--coverage", type=float, default=0.9, help="promised coverage of the per-case Dice intervals")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="e.g. cpu or cuda:0; default: cuda:0 when available")
    p.set_defaults(func=example3d)
