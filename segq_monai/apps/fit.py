"""``python -m segq_monai fit``: fit a quality head to a user's own MONAI bundle, without editing its files.

Each step is a bundle workflow, run as ``python -m monai.bundle run`` runs it (the same ``monai.bundle.run`` entry
point, in this process); the command prints each step's command line, so every step can be rerun by hand:

1. **sample**: the host's ``inference.json`` + ``configs/segq_overlay.json`` + ``fit_labelled.json`` +
   ``fit_sample.json``: the host's preprocessing, network and inferer (wrapped by ``UncertaintyInferer``) over the
   labelled ``training`` cases of ``FIT/datalist.json``; per case the segmentation, the maps, the image as the
   network saw it and the true Dice/IoU on the input grid -> ``FIT/sample/quality.csv``, ``stage2_datalist.json``;
2. **train**: with ``--synthetic_failures N``, N synthetic failures of every sampled case
   (:func:`segq_monai.data.write_synthetic_failures` -> ``FIT/synthetic/``); then the segq bundle's
   ``train_quality.json`` + ``fit_train.json``: the quality head, with the data's dimensionality, the host's classes
   and input channels, on the sampled and the synthetic cases -> ``FIT/quality_head.pt``;
3. **calibrate**: the deployment itself (host + ``segq_overlay.json`` with ``segq#fit_dir``) plus the labels
   (``fit_labelled.json`` + ``fit_calibrate.json``) on the ``calibration`` cases -> ``FIT/calibration/quality.csv``;
   on it :func:`~segq_monai.calibration.quality_calibration.calibrate_quality_table` fits the recalibration, the
   per-case intervals at ``--coverage`` and the acceptance threshold λ̂ of the guaranteed flag ->
   ``FIT/quality_calibration.json``, which the deployment applies.

``--recalibrate`` reruns the calibrate step alone on the cases of ``--datalist`` (e.g. labelled cases of a new
site), keeping the quality head: the fit's calibration cases, table and file are replaced.

The labelled cases are split into the head's training cases and the calibration cases, and counted, by
:mod:`segq_monai.apps.fit_cases`. Before anything is written, every labelled case is checked from its file headers
(:mod:`segq_monai.apps.fit_grid`): the head's per-axis strides are chosen from the first case's shape and spacing
(the input grid, which the head reads), and a case the head cannot read, or a label on another grid than its image,
is refused, named.

``FIT/fit.json`` holds the settings and each step's result (:mod:`segq_monai.data.fit_folder`). A rerun of the same
command continues: finished steps are skipped, sampling skips finished cases, training resumes from its last epoch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser

from segq_monai.data.fit_folder import CALIBRATION_FILE, FIT_FILE, HEAD_FILE, write_fit
from segq_monai.apps.fit_grid import (
    AUTO_BAND_MARGIN,
    AUTO_BAND_VOXELS,
    check_case_grids,
    foreground_band,
    head_strides,
)
from segq_monai.apps.fit_host import HostBundle
from segq_monai.apps.fit_progress import FitProgress
from segq_monai.apps.fit_cases import split_cases
from segq_monai.apps.workflows import bundle_command, run_workflow
from segq_monai.data.datalist import load_datalist, write_datalist
from segq_monai.data.synthetic import FAILURE_SOURCE, SYNTHETIC_FAILURES, write_synthetic_failures
from segq_monai.data.columns import class_label, read_quality_csv
from segq_monai.calibration.quality_calibration import calibrate_quality_table, head_fingerprint
from segq_monai.inferers.factory import PLAIN_NETWORK_SAMPLERS
from segq_monai.metrics.quality import FAILURE_DICE
from segq_monai.networks.recipe import HEAD_RECIPE
from segq_monai.transforms.quality import PLAIN_NETWORK_VARIANTS, QUALITY_VARIANTS
from segq_monai.utils.atomic import remove_temporaries, writable_dir
from segq_monai.utils.errors import bad_input
from segq_monai.utils.host_binding import HOST_BINDING_FILE
from segq_monai.utils.resources import bundle_root, configs_dir

__all__ = ["add_parser", "fit"]

SEGQ_BUNDLE = bundle_root()
OVERLAYS = configs_dir()
#: epochs of the quality head on the sampled cases alone
FULL_EPOCHS = 60


def _run(configs: Sequence[Path], bundle_root: Path, run_id: str, overrides: Mapping[str, Any], step: str,
         progress: tuple[str, Any] | None = None) -> None:  # fmt: skip
    """Print a step's command line and run it (:func:`~segq_monai.apps.workflows.run_workflow`); a failure is
    re-raised with its first clear cause. ``progress``: an id and the fit's bar (:mod:`segq_monai.apps.fit_progress`),
    set in the run, not printed."""
    print(f"== fit, {step}:\n{bundle_command(configs, bundle_root, run_id, overrides)}", flush=True)
    try:
        run_workflow(bundle_root, configs, run_id, **overrides, **dict([progress] if progress else []))
    except Exception as e:
        cause = bad_input(e)
        if cause is None:
            raise
        raise type(cause)(
            f"The fit stopped at step {step!r}: {cause}\nFix it and rerun the same command: it continues."
        ) from e


def _json_list(text: str, name: str) -> list[Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{name} takes a JSON list of transforms, e.g. '[{{\"_target_\": ...}}]'; got {text!r} ({e}).") from e
    if not isinstance(value, list):
        raise ValueError(f"{name} takes a JSON list of transforms, got {type(value).__name__}.")
    return value


class _Fit:
    """The fit's steps, sharing the host, the fit folder and its ``fit.json``."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.host = HostBundle(args.host_bundle, args.host_config, args.host_override, args.run_id, args.activation,
                               args.class_names, args.sampler)
        self.dir = Path(args.output_dir).expanduser().resolve()
        remove_temporaries(self.dir)  # a killed run's half-written files
        split, key = split_cases(args)
        train_config = ConfigParser()
        train_config.read_config(str(SEGQ_BUNDLE / "configs" / "train_quality.json"))
        head_def = train_config.get("quality_network_def")
        channels = args.head_channels or head_def["channels"]
        if args.head_strides and len(args.head_strides) != len(channels):
            raise ValueError(
                f"--head_strides {args.head_strides} needs one stride per --head_channels level ({len(channels)}: "
                f"{channels}); or leave it out: the fit then chooses per-axis strides from the first case's grid."
            )
        strides, grid = head_strides(split["training"] or split["calibration"], len(channels), args.head_strides)
        band = foreground_band(args.foreground_band, grid["shape"], torch.cuda.is_available())
        if band is not None and args.foreground_band == "auto":
            print(f"== sampling in a band of {band} voxels around the predicted foreground: {grid['image']} has "
                  f"{math.prod(grid['shape'])} voxels and no GPU is available (--foreground_band none: the whole "
                  "input)", flush=True)  # fmt: skip
        synthetic = args.synthetic_failures if self.host.activation == "softmax" else 0
        if synthetic != args.synthetic_failures:
            print(f"== no synthetic failures: they corrupt softmax probabilities, and {self.host.root} is multi-label "
                  "(sigmoid); the head trains on the sampled cases alone", flush=True)  # fmt: skip
        self.head = {
            "checkpoint": HEAD_FILE,
            "quality_variant": args.quality_variant,
            "quality_keys": list(QUALITY_VARIANTS[args.quality_variant]),
            # the rest of the recipe, as train_quality.json reads it (segq_monai.HEAD_RECIPE)
            "rank_weight": HEAD_RECIPE["rank_weight"],
            "rank_loss": HEAD_RECIPE["rank_loss"],
            "members": HEAD_RECIPE["quality_members"],
            "scalars": list(HEAD_RECIPE["quality_scalars"]),
            "channels": channels,
            "strides": strides,
            "grid": grid,
            "dropout": head_def["dropout"],
            "synthetic_failures": synthetic,
            "epochs": args.epochs or max(1, round(FULL_EPOCHS / (1 + synthetic))),
        }
        settings = {
            "host_bundle": self.host.record(),
            "host_network": self.host.signature,
            "activation": self.host.activation,
            "num_classes": self.host.signature["out_channels"],
            "class_names": self.host.class_names,
            "in_channels": self.host.signature["in_channels"],
            "sampler": args.sampler,
            "num_samples": args.num_samples,
            "foreground_band": band,
            "seed": args.seed,
            "label_transforms": _json_list(args.label_transforms, "--label_transforms"),
            "datalist": {"source": str(Path(args.datalist).resolve()), "key": key, "file": "datalist.json",
                         "n_training": len(split["training"]), "n_calibration": len(split["calibration"])},
            "spatial_dims": len(grid["shape"]),
            "head": self.head,
            "calibration": {"alpha": args.alpha, "delta": args.delta, "tau": args.tau, "coverage": args.coverage},
        }  # fmt: skip
        self.fit = self._start(settings, split)
        self.progress: FitProgress | None = None

    def _start(self, settings: dict[str, Any], split: dict[str, list[dict]]) -> dict[str, Any]:
        """``fit.json``: a new one, or the one of an interrupted run of the same fit (refused if it differs); with
        ``--recalibrate`` the fitted one, its calibration undone and its calibration cases replaced."""
        path = self.dir / FIT_FILE
        if self.args.recalibrate and not (path.is_file() and "head" in json.loads(path.read_text())["steps"]):
            raise ValueError(
                f"--recalibrate needs a fit with a trained quality head in {self.dir}; run the fit command without "
                "--recalibrate first (or point --output_dir at the fit folder)."
            )
        if path.is_file():
            fit = json.loads(path.read_text())
            if self.args.recalibrate:  # the fitted head is kept: the new cases must fit its strides
                settings["head"], settings["spatial_dims"] = fit["head"], fit["spatial_dims"]
            check_case_grids(split["training"] + split["calibration"], settings["head"]["strides"],
                             settings["spatial_dims"])  # fmt: skip
            kept = [k for k in settings if not (self.args.recalibrate and k in ("datalist", "calibration"))]
            recorded = {k: fit.get(k) for k in settings}
            recorded["calibration"] = {k: fit["calibration"].get(k) for k in settings["calibration"]}
            changed = sorted(k for k in kept if recorded[k] != json.loads(json.dumps(settings[k])))
            if changed:
                raise ValueError(
                    f"{self.dir} holds a fit with other settings ({', '.join(changed)} differ); rerun with the same "
                    "arguments to continue it, or pass a new --output_dir."
                )
            if self.args.recalibrate:
                self._replace_calibration(fit, settings, split["calibration"])
            return fit
        check_case_grids(split["training"] + split["calibration"], settings["head"]["strides"],
                         settings["spatial_dims"])  # before the fit folder is made
        writable_dir(self.dir)
        write_datalist(self.dir / "datalist.json", split)
        fit = {**settings, "steps": []}
        write_fit(self.dir, fit)
        return fit

    def _replace_calibration(self, fit: dict[str, Any], settings: dict[str, Any], cases: list[dict]) -> None:
        """Undo the calibrate step (``fit.json`` first, so an interruption leaves the fit unfinished, not stale) and
        put ``cases`` in place of the calibration cases."""
        fit["steps"] = [s for s in fit["steps"] if s != "calibration"]
        fit["calibration"] = settings["calibration"]
        fit["datalist"].update(n_calibration=len(cases), calibration_source={
            k: settings["datalist"][k] for k in ("source", "key")})  # fmt: skip
        write_fit(self.dir, fit)
        shutil.rmtree(self.dir / "calibration", ignore_errors=True)
        (self.dir / CALIBRATION_FILE).unlink(missing_ok=True)
        training = load_datalist(self.dir / "datalist.json", "training")
        write_datalist(self.dir / "datalist.json", {"training": training, "calibration": cases})

    def _host_step(self, overlays: Sequence[str], step: str, **extra: Any) -> None:
        """A step on the host's config with ``overlays`` (files of ``configs/``) and ``extra`` overrides: the fit
        folder, continued."""
        configs = [self.host.config, *(OVERLAYS / o for o in overlays)]
        overrides = {**self.host.overrides, "segq#fit_dir": str(self.dir), "segq#skip_existing": True, **extra}
        if self.fit["label_transforms"]:
            overrides["segq#label_transforms"] = self.fit["label_transforms"]
        _run(configs, self.host.root, self.host.run_id, overrides, step, ("segq#progress", self.progress))

    def _done(self, step: str) -> None:
        self.fit["steps"].append(step)
        write_fit(self.dir, self.fit)

    def sample(self) -> None:
        if "sample" in self.fit["steps"]:
            return
        # synthetic failures read the label as the host's label transforms left it (and the mean probabilities)
        keys = (["label"] + (["prob"] if FAILURE_SOURCE == "prob" else [])) if self.head["synthetic_failures"] else []
        self._host_step(["segq_overlay.json", "fit_labelled.json", "fit_sample.json"],
                        "1/3 sample the labelled cases with the host network",
                        **({"segq#synthetic_keys": keys} if keys else {}))  # fmt: skip
        # the host as the sample step ran it (segq_monai.handlers.HostBinding): deployments are checked against it
        binding = json.loads((self.dir / "sample" / HOST_BINDING_FILE).read_text())
        self.fit["host_binding"] = {**binding, "overrides": self.host.resolved_overrides}
        self._done("sample")

    def train(self) -> None:
        if "head" in self.fit["steps"]:
            return
        h = self.head
        overrides = {
            "fit_dir": str(self.dir), "spatial_dims": self.fit["spatial_dims"], "num_classes": self.fit["num_classes"],
            "image_channels": self.fit["in_channels"], "multi_label": self.fit["activation"] == "sigmoid",
            "quality_variant": h["quality_variant"], "quality_network_def#channels": h["channels"],
            "quality_network_def#strides": h["strides"], "epochs": h["epochs"], "seed": self.args.seed,
        }  # fmt: skip
        if h["synthetic_failures"]:
            sampled = str(self.dir / "sample" / "stage2_datalist.json")
            print(f"== stage-2 cases: {h['synthetic_failures']} synthetic failures per sampled case", flush=True)
            synthetic = write_synthetic_failures([sampled], self.dir / "synthetic", h["synthetic_failures"],
                                                 self.fit["num_classes"], source=FAILURE_SOURCE, seed=self.args.seed)
            overrides["stage2_datalists"] = [sampled, str(synthetic)]
        if self.args.device:
            overrides["device"] = self.args.device
        configs = [SEGQ_BUNDLE / "configs" / "train_quality.json", OVERLAYS / "fit_train.json"]
        _run(configs, SEGQ_BUNDLE, "run", overrides, "2/3 train the quality head", ("progress", self.progress))
        self._done("head")

    def calibrate(self) -> None:
        if "calibration" in self.fit["steps"]:
            return
        step = "3/3 run the fitted pipeline on the calibration cases and calibrate"
        self._host_step(["segq_overlay.json", "fit_labelled.json", "fit_calibrate.json"], step)
        table = self.dir / "calibration" / "quality.csv"
        s = self.fit["calibration"]
        try:
            cal = calibrate_quality_table(
                read_quality_csv(table), head_fingerprint(self.dir / HEAD_FILE), coverage=s["coverage"],
                alpha=s["alpha"], delta=s["delta"], tau=s["tau"], seed=self.fit["seed"],
            )  # fmt: skip
        except ValueError as e:
            raise ValueError(f"The fit stopped at step {step!r}: {e}\nFix it and rerun the same command.") from e
        cal.save(self.dir / CALIBRATION_FILE)
        flag = cal.flag
        self.fit["calibration"] = {
            **s,
            "acceptance_threshold": flag.acceptance_threshold if math.isfinite(flag.acceptance_threshold) else None,
            "feasible": flag.feasible,
            "bound": flag.bound,
            "n_calibration": flag.n_calibration,
            "fraction_accepted": flag.fraction_accepted,
            "failures_accepted": flag.failures_accepted,
            "half_width": {class_label(c): r.half_width for c, r in zip(cal.classes, cal.recalibrations)},
            "file": CALIBRATION_FILE,
            "table": os.path.relpath(table, self.dir),
        }
        self._done("calibration")

    def deploy_command(self) -> str:
        configs = [self.host.config, OVERLAYS / "segq_overlay.json"]
        return bundle_command(configs, self.host.root, self.host.run_id, {**self.host.overrides, "segq#fit_dir": str(self.dir)})


def fit(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or continue) the fit; prints the deploy command and returns the content of ``fit.json``."""
    job = _Fit(args)
    with FitProgress.of_fit(job.fit) as job.progress:
        for i, step in enumerate((job.sample, job.train, job.calibrate)):
            job.progress.start(i)
            step()
            job.progress.finish()
    cal = job.fit["calibration"]
    print(
        f"== fit done: {job.dir / FIT_FILE}\nguaranteed flag: accept a case when its raw predicted Dice "
        f"(pred_dice_raw, lowest class) >= {cal['acceptance_threshold']} (certified: {cal['feasible']}; "
        f"{cal['fraction_accepted']:.0%} of the {cal['n_calibration']} calibration cases accepted)\n"
        f"per-case intervals: coverage {cal['coverage']}, half-width {cal['half_width']} (Dice)\n"
        f"deploy (add the host's own input arguments, e.g. --dataset_dir or --datalist):\n{job.deploy_command()}",
        flush=True,
    )
    return job.fit


def add_parser(sub: Any) -> None:
    """Register the ``fit`` subcommand on the subparsers of ``python -m segq_monai``."""
    p = sub.add_parser(
        "fit", help="fit a quality head to your own MONAI bundle (labelled cases it did not train on)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--host_bundle", required=True, help="your bundle folder (model-zoo layout), never edited")
    p.add_argument("--datalist", required=True, help="Decathlon datalist of labelled cases the host did not train on")
    p.add_argument("--datalist_key", default=None, help="its section (default: validation if present, else training)")
    p.add_argument("--output_dir", required=True, help="the fit folder FIT (continued when it exists)")
    p.add_argument("--host_config", default=None, help="default: HOST/configs/inference.json")
    p.add_argument("--run_id", default=None, help="the host's run id (default: run, or the list that runs the evaluator)")
    p.add_argument("--host_override", action="append", default=[], metavar="ID=VALUE",
                   help="an id of the host config to set in every step and at deployment (VALUE: JSON or a string)")
    p.add_argument("--activation", choices=["softmax", "sigmoid"], default=None,
                   help="default: sigmoid when the host's postprocessing applies one (multi-label), else softmax")
    p.add_argument("--class_names", nargs="+", default=None, help="foreground classes (default: host metadata)")
    p.add_argument("--label_transforms", default="[]",
                   help="JSON list of transforms for key 'label' after loading, e.g. the host's label conversion")
    p.add_argument("--sampler", default="mc_dropout", choices=PLAIN_NETWORK_SAMPLERS)
    p.add_argument("--num_samples", type=int, default=20, help="T, samples per case")
    p.add_argument("--foreground_band", default="auto", metavar="VOXELS|auto|none",
                   help="draw the T samples only in a box this many voxels around the host's predicted foreground: "
                        "one full pass + T passes over the box (segq_monai.ForegroundBandSampler); none: the whole "
                        f"input; auto (default): {AUTO_BAND_MARGIN} voxels on a CPU for 3D cases of at least "
                        f"{AUTO_BAND_VOXELS} voxels, else none (the cost table in docs/fit.md)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quality_variant", default=HEAD_RECIPE["quality_variant"], choices=PLAIN_NETWORK_VARIANTS,
                   help="the head's input stack (default: the recipe's, segq_monai.HEAD_RECIPE)")
    p.add_argument("--synthetic_failures", type=int, default=SYNTHETIC_FAILURES,
                   help="synthetic failures per sampled case (segq_monai.SegmentationFailured, true Dice exact) "
                        "added to the head's training cases; softmax hosts only (default: the demo's chosen recipe)")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"epochs of the quality head (default: {FULL_EPOCHS} / (1 + synthetic_failures), as many "
                        f"training draws as {FULL_EPOCHS} epochs of the sampled cases)")
    p.add_argument("--head_channels", type=int, nargs="+", default=None)
    p.add_argument("--head_strides", type=int, nargs="+", default=None,
                   help="one stride per level for every axis (default: per-axis strides chosen from the first case's "
                        "shape and spacing, segq_monai.quality_strides, recorded in fit.json)")
    p.add_argument("--calibration_fraction", type=float, default=0.5,
                   help="share of the cases kept for calibration (unless the datalist has a calibration section)")
    p.add_argument("--alpha", type=float, default=0.1, help="target failure rate among auto-accepted cases")
    p.add_argument("--delta", type=float, default=0.1, help="allowed probability that the guarantee fails")
    p.add_argument("--tau", type=float, default=FAILURE_DICE, help="a case fails when its true Dice is below tau")
    p.add_argument("--coverage", type=float, default=0.9,
                   help="promised coverage of the per-case Dice intervals pred_dice_lo/hi (marginal, per class)")
    p.add_argument("--recalibrate", action="store_true",
                   help="rerun only the calibrate step on the cases of --datalist (its calibration section, else "
                        "--datalist_key's; e.g. a new site), keeping the head")
    p.add_argument("--device", default=None, help="device of the quality head's training (e.g. cpu, cuda:0)")
    p.set_defaults(func=fit)
