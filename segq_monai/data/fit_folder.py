"""The fit folder: everything a deployment needs to run a quality head fitted to a user's own MONAI bundle.

Layout (written by ``python -m segq_monai fit``, read by ``configs/segq_overlay.json`` through ``segq#fit_dir``)::

    FIT/fit.json              settings and results (below); written atomically after every step
    FIT/datalist.json         the labelled cases used: "training" (stage-2 cases), "calibration"
    FIT/sample/               stage 1 on the "training" cases: maps, quality.csv, stage2_datalist.json
    FIT/quality_head.pt       the quality head's weights ({"model": state_dict, ...})
    FIT/calibration/          the deployed pipeline on the "calibration" cases: quality.csv (pred and true Dice)
    FIT/quality_calibration.json  the site's calibration (segq-quality-calibration/1): recalibration, intervals,
                              λ̂, drift reference (:mod:`segq_monai.calibration.quality_calibration`)

``fit.json`` keys: ``host_bundle`` (name, version, bundle_root, config_file, run_id), ``host_network``
(``spatial_dims``, ``in_channels``, ``out_channels`` of the host's network), ``activation`` (``softmax`` or
``sigmoid``), ``num_classes`` (the network's output channels), ``class_names`` (foreground classes), ``spatial_dims``
(the data's input grid's, which the head follows), ``in_channels``, ``sampler``, ``num_samples``, ``seed``, ``label_transforms``,
``datalist`` (source file, section, cases per split; after ``--recalibrate`` also ``calibration_source``: the
file and section of the calibration cases), ``head`` (checkpoint, quality variant and keys, channels,
``strides``: one per level, each an int or one per axis, chosen from ``grid``: ``{"image", "shape", "spacing"}`` of
the first labelled case (:func:`~segq_monai.networks.quality_regressor.quality_strides`; the deployment builds the
head with them), dropout, epochs), ``calibration`` (``alpha``, ``delta``, ``tau``, ``coverage``; once calibrated also
``acceptance_threshold`` λ̂ (``null`` when no threshold is certified: every case is flagged), ``feasible``, ``bound``,
``n_calibration``, ``fraction_accepted``, ``failures_accepted``, ``half_width`` (per class, Dice units), ``file``
(the calibration file) and ``table``), ``host_binding`` (the host as the sample step ran it, which deployments are
checked against, :mod:`segq_monai.utils.host_binding`: ``weights``, ``weight_files``, ``network``, ``preprocessing``,
``inferer``, and ``overrides``: each ``--host_override`` as the host config resolves it) and ``steps``: the steps
done (``sample``, ``head``, ``calibration``), in order. A ``fit.json`` whose calibration has no ``file`` (made before intervals existed) deploys with the fixed
threshold λ̂ alone.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from segq_monai.utils.atomic import atomic_write_text

__all__ = [
    "CALIBRATION_FILE",
    "FIT_FILE",
    "HEAD_FILE",
    "load_fit",
    "write_fit",
]

FIT_FILE = "fit.json"
CALIBRATION_FILE = "quality_calibration.json"
HEAD_FILE = "quality_head.pt"
_STAGES = ("head", "calibration")
_SIGNATURE = ("spatial_dims", "in_channels", "out_channels")
#: keys every ``fit.json`` this version reads has (a fit folder without them is of an older format)
_RECORDED = ("host_network", "head", "steps")
#: optional head record keys, read by the overlay with their defaults: ``members`` (1: one head, no ensemble) and
#: ``scalars`` (``[]``: no per-case scalars; :data:`segq_monai.transforms.QUALITY_SCALARS` names)
_HEAD_OPTIONS = ("members", "scalars")


def write_fit(fit_dir: str | os.PathLike, content: Mapping[str, Any]) -> Path:
    """Write ``fit_dir/fit.json`` atomically; returns its path."""
    path = Path(fit_dir) / FIT_FILE
    atomic_write_text(path, json.dumps(content, indent=2) + "\n")
    return path


def _read(fit_dir: Path) -> dict[str, Any]:
    path = fit_dir / FIT_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{fit_dir} is not a fit folder ({FIT_FILE} is missing); make one with python -m segq_monai fit "
            "--host_bundle HOST --datalist FILE --output_dir FIT, and pass that folder as segq#fit_dir."
        )
    try:
        fit = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); rerun python -m segq_monai fit to rewrite it.") from e
    missing = [k for k in _RECORDED if k not in fit] if isinstance(fit, dict) else list(_RECORDED)
    if missing:
        raise ValueError(
            f"{path} is of an older or another format (no {', '.join(map(repr, missing))}); this segq-monai cannot "
            "deploy it. Fit again with python -m segq_monai fit --output_dir NEW_FIT (same arguments), or deploy with "
            "the segq-monai version that made it."
        )
    return fit


def load_fit(
    fit_dir: str | os.PathLike | None,
    host: Mapping[str, int] | None = None,
    require: Sequence[str] = _STAGES,
) -> dict[str, Any]:
    """Read ``fit_dir/fit.json`` for the deploy overlay (``segq#fit``), checked against the host network.

    Args:
        fit_dir: the fit folder; ``None`` gives ``{}`` (the overlay then uses its own defaults).
        host: the host network's :func:`~segq_monai.networks.signature.network_signature`; a fit made for another
            network is refused here, before any case is sampled.
        require: the steps that must be done: ``"sample"``, ``"head"`` (the quality head is trained),
            ``"calibration"``.

    Returns:
        the content of ``fit.json`` plus the overlay's ids: ``quality_checkpoint`` (absolute), ``quality_keys``,
        ``quality_network`` (channels, strides, dropout, and where the head record has them ``members``: heads in
        its ensemble, ``scalars``: the per-case scalars it reads) from ``head``, ``acceptance_threshold``: the calibrated
        λ̂ (``inf``, flag every case, when none was certified), and ``calibration_file``: the absolute path of the
        fit's calibration file (``None`` when the fit has none: the overlay then flags with ``acceptance_threshold``).

    Raises:
        FileNotFoundError / ValueError: no or an unreadable ``fit.json``; a stage of ``require`` not done (rerun the
        fit, it continues); the host network differs from the one the head was fitted to (both named).
    """
    if fit_dir is None:
        return {}
    fit_dir = Path(fit_dir).expanduser().absolute()
    fit = _read(fit_dir)
    missing = [stage for stage in require if stage not in fit.get("steps", ())]
    if missing:
        raise ValueError(
            f"The fit in {fit_dir} is unfinished (no {' and no '.join(missing)} yet); rerun the same python -m "
            "segq_monai fit command: it continues where it stopped."
        )
    if host is not None:
        fitted = {k: fit["host_network"][k] for k in _SIGNATURE}
        this = {k: int(host[k]) for k in _SIGNATURE}
        if fitted != this:
            name = fit.get("host_bundle", {}).get("name")
            raise ValueError(
                f"The quality head in {fit_dir} was fitted to a host network with {fitted} (bundle {name!r}), but "
                f"this host's network has {this}; fit a head to this bundle (python -m segq_monai fit --host_bundle "
                "...) or point segq#fit_dir at the fit of this bundle."
            )
    out = dict(fit)
    head = fit["head"]
    out["quality_checkpoint"] = str(fit_dir / head["checkpoint"])
    out["quality_keys"] = list(head["quality_keys"])
    out["quality_network"] = {k: head[k] for k in ("channels", "strides", "dropout")}
    out["quality_network"].update({k: head[k] for k in _HEAD_OPTIONS if k in head})
    if "calibration" in fit["steps"]:
        lam = fit["calibration"]["acceptance_threshold"]
        out["acceptance_threshold"] = math.inf if lam is None else float(lam)
        name = fit["calibration"].get("file")
        out["calibration_file"] = None if name is None else str(fit_dir / name)
        if name is not None and not (fit_dir / name).is_file():
            raise FileNotFoundError(
                f"The fit in {fit_dir} records the calibration file {name} but it is missing; rerun the fit command "
                "with --recalibrate to write it again."
            )
    return out
