"""The 3D example's report: true Dice per class from the saved segmentations, bootstrap intervals, tables, figures.

The deploy run writes ``quality.csv`` (predicted Dice per class, no labels) and ``<case>/<case>_seg.nii.gz`` on the
input grid. :func:`add_true_quality` adds the true Dice/IoU per class, computed from those files and the labels
(:func:`segq_monai.metrics.quality.segmentation_quality`); :func:`write_example_report` scores the prediction
(:func:`segq_monai.evaluation.report.write_report`: ``report.json``, predicted-vs-true and risk-coverage plots, map
overlays of the best and worst cases); :func:`summary_table` gives the table of ``report.md``: per class and for
the per-case mean, the mean true and predicted Dice, MAE, Pearson correlation and failure AUROC, each with a
bootstrap 95 % interval over cases (:func:`segq_monai.evaluation.bootstrap.bootstrap_interval`, every case its own
group). Cases come from one head (see :mod:`segq_monai.data.volume3d`): the intervals describe resampling of these
cases, not of subjects.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.transforms import LoadImage

from segq_monai import metrics
from segq_monai.data.outputs import case_name
from segq_monai.data.columns import write_quality_csv
from segq_monai.evaluation import write_report
from segq_monai.evaluation.bootstrap import bootstrap_interval
from segq_monai.metrics.quality import FAILURE_DICE, segmentation_quality

__all__ = ["add_true_quality", "summary_table", "write_example_report"]

_LOAD = LoadImage(image_only=True, ensure_channel_first=True)


def add_true_quality(
    rows: Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike,
    labels: Mapping[str, str],
    class_names: Sequence[str],
) -> list[dict[str, Any]]:
    """Each row of a deploy ``quality.csv`` with ``true_dice_<name>`` and ``true_iou_<name>`` added.

    Rows are matched to ``labels`` by case name (:func:`segq_monai.data.outputs.case_name`, which also names the deploy
    run's folder of each case), so an output folder that was moved or copied still matches its own datalist; each
    returned row's ``image`` is the datalist's path.

    Args:
        rows: the rows (``image`` = the input path).
        output_dir: the deploy run's output folder, holding ``<case>/<case>_seg.nii.gz``.
        labels: image path -> label path (both as the datalist gives them).
        class_names: foreground class names, in class-index order (class ``k + 1`` is ``class_names[k]``).

    Raises:
        ValueError: two images of ``labels`` share a case name; a row's case has no label (named, with the table);
            the saved segmentation and the label differ in shape (both files named).
    """
    by_case: dict[str, tuple[str, str]] = {}
    for image, label in labels.items():
        if case_name(image) in by_case:
            raise ValueError(f"{by_case[case_name(image)][0]} and {image} share the case name {case_name(image)!r}, "
                             "so their outputs share one folder; give every image a distinct file name.")
        by_case[case_name(image)] = (str(image), str(label))
    out = []
    for row in rows:
        name = case_name(row["image"])
        if name not in by_case:
            raise ValueError(
                f"{row['image']} (a row of {Path(output_dir) / 'quality.csv'}) has no label in the datalist (no image "
                f"named {name}); evaluate only labelled cases: deploy on the datalist's testing images."
            )
        image, label_path = by_case[name]
        seg_path = Path(output_dir) / name / f"{name}_seg.nii.gz"
        seg, label = _LOAD(seg_path), _LOAD(label_path)
        if seg.shape != label.shape:
            raise ValueError(
                f"segmentation {seg_path} has shape {tuple(seg.shape)} but label {label_path} has "
                f"{tuple(label.shape)}; the deploy run must save the segmentation on the input grid."
            )
        dice, iou = segmentation_quality(seg, label, num_classes=len(class_names) + 1)
        new = dict(row, image=image)
        for k, cls in enumerate(class_names):
            new[f"true_dice_{cls}"], new[f"true_iou_{cls}"] = float(dice[k]), float(iou[k])
        out.append(new)
    return out


def _quiet(fn: Callable[..., Any]) -> Callable[[np.ndarray, np.ndarray], float]:
    def statistic(pred: np.ndarray, true: np.ndarray) -> float:
        with warnings.catch_warnings():  # undefined on a resample (constant values, one outcome only): NaN
            warnings.simplefilter("ignore", UserWarning)
            try:
                return float(fn(pred, true))
            except ValueError:
                return float("nan")

    return statistic


def _cell(value: float, low: float, high: float) -> str:
    if not np.isfinite(value):
        return "–"
    interval = f" [{low:.2f}, {high:.2f}]" if np.isfinite(low) else ""
    return f"{value:.3f}{interval}"


def summary_table(
    rows: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    threshold: float = FAILURE_DICE,
    num_resamples: int = 2000,
) -> str:
    """Markdown: per class and for the per-case mean over classes, the number of cases, mean true and predicted
    Dice, MAE, Pearson r and failure AUROC (failure: true Dice < ``threshold``), with bootstrap 95 % intervals."""
    pred = np.array([[float(r[f"pred_dice_{c}"]) for c in class_names] for r in rows])
    true = np.array([[float(r[f"true_dice_{c}"]) for c in class_names] for r in rows])
    stats = {
        "MAE": _quiet(metrics.mean_absolute_error),
        "Pearson r": _quiet(metrics.pearson_correlation),
        "failure AUROC": _quiet(lambda p, t: metrics.failure_auroc(p, t, threshold)),
    }
    lines = [
        f"| class | cases | true Dice (mean) | predicted Dice (mean) | failures (< {threshold}) | "
        + " | ".join(stats) + " |",
        "| --- | ---: | ---: | ---: | ---: |" + " ---: |" * len(stats),
    ]
    columns = [(name, pred[:, k], true[:, k]) for k, name in enumerate(class_names)]
    columns.append(("mean over classes", pred.mean(axis=1), true.mean(axis=1)))
    for name, p, t in columns:
        cells = [_cell(*bootstrap_interval(fn, p, t, n_resamples=num_resamples)) for fn in stats.values()]
        lines.append(
            f"| {name} | {len(p)} | {t.mean():.3f} | {p.mean():.3f} | {int((t < threshold).sum())} | "
            + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def write_example_report(
    rows: Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike,
    deploy_dir: str | os.PathLike,
    labels: Mapping[str, str],
    class_names: Sequence[str],
    threshold: float = FAILURE_DICE,
    map_key: str = "entropy",
) -> dict[str, Any]:
    """Write ``quality.csv`` (the rows, with true quality), ``report.json`` and the figures into ``output_dir``.

    Args:
        rows: deploy rows with true quality (:func:`add_true_quality`).
        output_dir: where the report goes (created).
        deploy_dir: the deploy run's output folder (segmentations and maps, for the overlays).
        labels: image path -> label path.
        class_names: foreground class names.
        threshold: failure threshold on the true Dice.
        map_key: the map drawn in the overlays, ``<case>/<case>_<map_key>.nii.gz``.

    Returns:
        the report dict of :func:`segq_monai.evaluation.report.write_report`, with ``"table"``: the markdown table.
    """

    def load_case(row: Mapping[str, Any]) -> tuple[Any, Any, Any, Any]:
        case = Path(deploy_dir) / case_name(row["image"])
        name = case_name(row["image"])
        return (_LOAD(row["image"]), _LOAD(case / f"{name}_seg.nii.gz"), _LOAD(case / f"{name}_{map_key}.nii.gz"),
                _LOAD(labels[str(row["image"])]))  # fmt: skip

    os.makedirs(output_dir, exist_ok=True)
    write_quality_csv(Path(output_dir) / "quality.csv", rows)
    report = write_report(rows, output_dir, tau=threshold, load_case=load_case, k=1)
    report["table"] = summary_table(rows, class_names, threshold)
    return report
