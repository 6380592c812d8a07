"""Stage-2 training cases beyond stage 1's own outputs: synthetic segmentation failures, written once.

:func:`write_synthetic_failures` reads the stage-2 datalists that sampling wrote (``stage2_datalist.json``: image,
label, segmentation, maps, ``prob``, true Dice), makes ``copies`` synthetic failures of every case with
:class:`segq_monai.transforms.failures.SegmentationFailured` (a target Dice drawn uniformly in [0, 1], its exact
Dice measured against the label), saves each one's segmentation and entropy map beside the label's grid and affine,
and writes a datalist of them that ``train_quality.json`` reads like any other (``stage2_datalists``). The cases
go through the same loading and ``QualityInputd`` path as the real ones.

They are written once rather than drawn anew every epoch: a draw costs about 30 ms on a 2D slice (a bisection of
the severity), which per epoch would cost more than the head's training itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.transforms import EnsureChannelFirstd, LoadImaged
from tqdm import tqdm

from segq_monai.data.datalist import load_datalist, write_datalist
from segq_monai.data.demo import save_nifti
from segq_monai.transforms.failures import FAILURE_KINDS, SegmentationFailured

__all__ = ["FAILURE_SOURCE", "SYNTHETIC_DATALIST", "SYNTHETIC_FAILURES", "write_synthetic_failures"]

SYNTHETIC_DATALIST = "synthetic_datalist.json"
#: the shipped recipe (docs/head_choice_rule.md, docs/results.md): synthetic failures per real case, and their source
SYNTHETIC_FAILURES, FAILURE_SOURCE = 0, "prob"


def write_synthetic_failures(
    datalists: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    copies: int,
    num_classes: int,
    source: str = "prob",
    recompute_entropy: bool = True,
    kinds: Sequence[str] = FAILURE_KINDS,
    seed: int = 0,
) -> Path:
    """Write ``copies`` synthetic failures of every case of ``datalists`` (see the module docstring).

    Args:
        datalists: stage-2 datalists (``training`` items with ``image``, ``label``, ``seg``, ``entropy``, and
            ``prob`` when ``source="prob"``).
        output_dir: folder for ``<case>_f<k>/`` (segmentation and entropy) and :data:`SYNTHETIC_DATALIST`.
        copies: synthetic failures per case (>= 1).
        num_classes: classes including background.
        source: ``"prob"`` corrupts stage 1's mean probabilities; ``"label"`` the smoothed ground truth.
        recompute_entropy: the entropy of the corrupted probabilities (default); False keeps the entropy map of the
            uncorrupted prediction (the alternative measured in docs/results.md).
        kinds: failure kinds to draw from.
        seed: copy ``k`` of case ``i`` uses seed ``seed + i * copies + k``.

    Returns:
        the path of the written datalist; its items hold ``image``, ``label``, ``seg``, ``entropy``, ``true_dice``,
        ``true_iou`` and ``failure`` (the kind). Draws that no kind could bring to their target are left out and counted
        (a warning names the reasons).
    """
    if copies < 1:
        raise ValueError(f"copies is the number of synthetic failures per case and must be >= 1, got {copies}.")
    out = Path(output_dir)
    keys = ["label", "prob"] if source == "prob" else ["label"]
    items = [x for f in datalists for x in load_datalist(f, "training", ["image", "label", "seg", "entropy", *keys])]
    load = LoadImaged(keys, image_only=False)
    channel_first = EnsureChannelFirstd(keys)
    failure = SegmentationFailured(num_classes, source=source, entropy_key="entropy" if recompute_entropy else None)
    entries = []
    for i, item in enumerate(tqdm(items, desc="synthetic failures", unit="case")):
        data = channel_first(load({k: item[k] for k in keys}))
        label = data["label"]
        if "prob" in data and data["prob"].ndim > label.ndim:  # a 2D multi-channel NIfTI loads as [C, H, W, 1]
            data["prob"] = data["prob"].reshape(data["prob"].shape[0], *label.shape[1:])
        affine = np.asarray(label.affine)
        for k in range(copies):
            case = failure.set_random_state(seed + i * copies + k)(dict(data))
            if not case["failure"]:
                continue
            name = f"{Path(item['seg']).parent.name}_f{k}"
            seg_path = out / name / f"{name}_seg.nii.gz"
            seg_path.parent.mkdir(parents=True, exist_ok=True)
            save_nifti(np.asarray(case["seg"][0], dtype=np.uint8), affine, seg_path)
            entropy_path = item["entropy"]
            if recompute_entropy:
                entropy_path = out / name / f"{name}_entropy.nii.gz"
                save_nifti(np.asarray(case["entropy"][0], dtype=np.float32), affine, entropy_path)
            entries.append({"image": item["image"], "label": item["label"], "seg": str(seg_path),
                            "entropy": str(entropy_path), "true_dice": case["true_dice"].tolist(),
                            "true_iou": case["true_iou"].tolist(), "failure": case["failure"]})  # fmt: skip
    return write_datalist(out / SYNTHETIC_DATALIST, {"training": entries})
