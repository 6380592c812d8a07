"""Prepare the demo experiment from the embedded slices: development, calibration, test, shift and cross-subject splits.

The embedded set (``segq_monai/demo_data``) holds one head, Colin27, in three planes: 72 axial slices (``training``
section) and 22 coronal and 22 sagittal slices (``cross_plane`` section), each plane ordered along its axis; and a
second head, the MNI ICBM152 2009a template (``demo_data/mni152``: 10 axial, 8 coronal, 8 sagittal slices,
brain-extracted). This module cuts each plane of Colin27 into ``blocks`` contiguous blocks (neighbouring slices are
near copies: never split at random), keeps every ``test_every``-th block as held-out slices, and writes copies of
each slice with a graded MR artifact (severities 0 to 1) so that the segmentation quality spreads from near perfect
to failed, as on scans from other scanners: the held-out copies take MONAI's five kinds (bias field, noise, Gibbs
ringing, k-space spikes, contrast), the development copies those and three written here (motion, aliasing, a signal
void: :data:`DEVELOPMENT_KINDS`). Stage 1 trains
on the clean development slices of the ``planes`` in use (a deployed 2D model is fed every orientation its protocol
has); out-of-fold sampling sees their artifact copies; with ``geometric_variants``, further copies per slice are
also turned by a random angle and zoomed (:func:`segq_monai.data.shift.random_geometry`; off by default). The
held-out slices are split at random, by slice, into a calibration split (for the guaranteed failure flag) and the
test split; both get ``held_out_variants`` artifact copies per slice. The shift split holds further artifact copies
of the test slices, each also turned or resampled (:mod:`segq_monai.data.shift`: orientations and resolutions stage
1 never saw), ``shift_variants`` per slice. The cross-subject split holds artifact copies of the MNI152 slices
(``cross_subject_variants`` per slice, all three planes), the copies of a slice kept, turned by 90°, zoomed out and
zoomed in in turn: a person neither stage saw, from another scanner, grid and field of view, and without a skull, which is a real shift for the brain-mask task (pipelines do feed brain-extracted images).

Outputs under ``output_dir``:

- ``stage1.json``: ``training`` = the clean development slices (``image``, ``label``, ``group``, ``plane``);
- ``dataset.json``: ``training`` = artifact copies of the development slices, ``calibration`` and ``testing`` =
  artifact copies of the held-out slices (all with ``label``, ``group`` = source slice, ``plane``, ``artifact``,
  ``severity``); ``shift`` = the shifted copies of the test slices (also ``shift``: the kind of shift);
  ``cross_subject`` = the copies of the MNI152 slices (groups ``mni152_<slice>``);
- ``images/`` and ``labels/``: the NIfTI files they name (float32 images, uint8 labels, the source affines).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

from segq_monai.data.datalist import demo_datalist_path, load_datalist, write_datalist
from segq_monai.data.shift import SHIFT_KINDS, random_geometry, shift_slice
from segq_monai.transforms.artifacts import (
    ARTIFACT_KINDS,
    EXTRA_ARTIFACT_KINDS,
    apply_mr_artifact,
    graded_artifact_plan,
)
from segq_monai.utils.atomic import atomic_path

__all__ = ["DEVELOPMENT_KINDS", "prepare_demo", "save_nifti"]

TASKS = {"brain": "label", "regions": "regions"}
#: the planes of the embedded slices, in their order
PLANES = ("axial", "coronal", "sagittal")
#: the moves of the cross-subject copies, taking turns: none, then each of :data:`SHIFT_KINDS`
CROSS_SUBJECT_MOVES = ("none", *SHIFT_KINDS)
#: the artifact kinds of the development copies (the quality head's training data): MONAI's five and the three
#: written here, chosen by round 3 of issue #25's rule (docs/head_choice_rule.md, docs/results.md); the held-out
#: copies take MONAI's five
DEVELOPMENT_KINDS = ARTIFACT_KINDS + EXTRA_ARTIFACT_KINDS


def save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Save ``array`` (``[X, Y[, Z]]``, no channel axis) with ``affine``, whole or not at all."""
    with atomic_path(path, suffix=".nii.gz") as tmp:
        nib.save(nib.Nifti1Image(array, affine), tmp)


def _moved_copies(
    image: np.ndarray, label: np.ndarray, affine: np.ndarray, name: str, task: str, out: Path,
    plan: list[tuple[str, float]], seed: int, tag: str,
    move: Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray, dict]],
) -> list[dict]:
    """Artifact copies of one slice ``[H, W]`` (artifact ``plan[v]``, seed ``seed + v``), each then moved with its
    label by ``move(corrupted, label, v) -> (image, label, extra entry keys)``; saved as ``<name>_<tag><v>`` with
    their own labels. The files keep the slice's affine (the arrays are turned or resampled, not the world grid)."""
    entries = []
    for v, (kind, severity) in enumerate(plan):
        corrupted = apply_mr_artifact(image[None], kind, severity, seed=seed + v)[0].numpy()
        moved, moved_label, extra = move(corrupted, label, v)
        path = out / "images" / f"{name}_{tag}{v}.nii.gz"
        label_path = out / "labels" / f"{name}_{tag}{v}_{task}.nii.gz"
        save_nifti(moved, affine, path)
        save_nifti(moved_label.astype(np.uint8), affine, label_path)
        entries.append({"image": str(path), "label": str(label_path), "group": name, "artifact": kind,
                        "severity": severity, **extra})  # fmt: skip
    return entries


def _shift(corrupted: np.ndarray, label: np.ndarray, v: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """The shift split's move: the next kind of :data:`SHIFT_KINDS`, named in the entry (``shift``)."""
    kind = SHIFT_KINDS[v % len(SHIFT_KINDS)]
    return *shift_slice(corrupted, label, kind), {"shift": kind}


def _cross_subject(out: Path, task: str, copies: int, seed: int) -> list[dict]:
    """Artifact copies (graded plan of seed ``seed + 3``) of the embedded MNI152 slices of every plane, saved as
    ``mni152_<slice>_x<v>`` with the slice's label; copy ``v`` is also moved by :data:`CROSS_SUBJECT_MOVES`
    ``[v % 4]`` (kept, turned by 90°, zoomed out, zoomed in: another scanner's grid and field of view). Groups
    ``mni152_<slice>``; entries also hold ``plane`` and ``shift`` (``"none"`` for a kept copy)."""
    path = demo_datalist_path().parent / "mni152" / "dataset.json"
    slices = [item for plane in PLANES for item in load_datalist(path, plane, path_keys=("image", "label", "regions"))]
    plan = graded_artifact_plan(copies * len(slices), seed=seed + 3)
    entries = []
    for k, item in enumerate(slices):
        name = "mni152_" + Path(item["image"]).name.replace("_image.nii.gz", "")
        image_nii = nib.load(item["image"])
        image = np.asarray(image_nii.dataobj, dtype=np.float32)
        label = np.asarray(nib.load(item[TASKS[task]]).dataobj, dtype=np.uint8)

        def moved(corrupted: np.ndarray, label: np.ndarray, v: int, plane: str = item["plane"]) -> tuple:
            kind = CROSS_SUBJECT_MOVES[v % len(CROSS_SUBJECT_MOVES)]
            if kind != "none":
                corrupted, label = shift_slice(corrupted, label, kind)
            return corrupted.astype(np.float32), label, {"plane": plane, "shift": kind}

        entries += _moved_copies(image, label, image_nii.affine, name, task, out, plan[k * copies : (k + 1) * copies],
                                 seed + 20_000 + k * copies, "x", moved)  # fmt: skip
    return entries


def embedded_slices(task: str, planes: tuple[str, ...] = PLANES) -> list[dict]:
    """Colin27's embedded slices of ``planes``, plane by plane in :data:`PLANES` order, each ordered along its axis:
    ``image``, the ``task``'s label file as ``label``, ``plane`` and ``index`` (the position in its plane)."""
    axial = load_datalist(demo_datalist_path(), "training", path_keys=("image", "label", "regions"))
    others = load_datalist(demo_datalist_path(), "cross_plane", path_keys=("image", "label", "regions"))
    by_plane = {"axial": [dict(item, plane="axial") for item in axial],
                **{p: [item for item in others if item["plane"] == p] for p in PLANES[1:]}}  # fmt: skip
    return [{"image": item["image"], "label": item[TASKS[task]], "plane": plane, "index": i}
            for plane in PLANES if plane in planes for i, item in enumerate(by_plane[plane])]  # fmt: skip


def prepare_demo(
    output_dir: str | os.PathLike,
    task: str = "brain",
    variants: int = 4,
    blocks: int = 12,
    test_every: int = 3,
    held_out_variants: int = 6,
    calibration_fraction: float = 2 / 3,
    shift_variants: int = 6,
    cross_subject_variants: int = 4,
    geometric_variants: int = 0,
    planes: tuple[str, ...] = PLANES,
    development_kinds: tuple[str, ...] = DEVELOPMENT_KINDS,
    seed: int = 0,
) -> dict[str, Path]:
    """Write the demo's datalists and images (see the module docstring).

    Args:
        output_dir: folder to write into (created).
        task: ``"brain"`` (brain extraction, 2 classes) or ``"regions"`` (5 merged AAL classes).
        variants: artifact copies per development slice.
        blocks: contiguous blocks per plane (slice ``k`` of ``n`` is in block ``k * blocks // n``; 72 axial
            slices: blocks of 6).
        test_every: every ``test_every``-th block (starting with block 1) of each plane is held out.
        held_out_variants: artifact copies per held-out slice.
        calibration_fraction: fraction of the held-out slices (rounded down, at least one left for testing) that
            form the calibration split; chosen at random with ``seed``.
        shift_variants: shifted artifact copies per test slice (``shift`` section); the shift kinds take turns.
            0: no shift split.
        cross_subject_variants: artifact copies per MNI152 slice (``cross_subject`` section; 26 slices, three
            planes). 0: no cross-subject split.
        geometric_variants: further artifact copies per development slice, each turned and zoomed at random
            (``training`` section; files ``<slice>_g<k>``, each with its own label).
        planes: the planes of Colin27 that stage 1 and stage 2 train on and the calibration and test splits hold.
        development_kinds: the artifact kinds of the development copies (stage 2's training data); other kinds than
            :data:`ARTIFACT_KINDS` give them a plan of their own (seed ``seed + 4``), and every held-out copy keeps
            the artifact of the shared plan.
        seed: seed of the split, the artifact plan and the artifacts.

    Returns:
        ``{"stage1": path of stage1.json, "dataset": path of dataset.json}``.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}.")
    if not planes or set(planes) - set(PLANES):
        raise ValueError(f"planes must be some of {PLANES}, got {planes}.")
    if variants < 1 or held_out_variants < 1 or blocks < test_every or test_every < 2 or min(
        shift_variants, cross_subject_variants, geometric_variants
    ) < 0:
        raise ValueError(
            "variants and held_out_variants must be >= 1, shift_variants, cross_subject_variants and "
            "geometric_variants >= 0, test_every >= 2 and blocks >= test_every."
        )
    if not 0.0 <= calibration_fraction < 1.0:
        raise ValueError(f"calibration_fraction must be in [0, 1), got {calibration_fraction}.")
    out = Path(output_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    slices = embedded_slices(task, planes)
    per_plane = {p: sum(1 for s in slices if s["plane"] == p) for p in planes}
    held_out = [i for i, s in enumerate(slices) if (s["index"] * blocks // per_plane[s["plane"]]) % test_every == 1]
    order = np.random.RandomState(seed).permutation(held_out)
    calibration = set(order[: min(int(calibration_fraction * len(held_out)), len(held_out) - 1)].tolist())
    section = [
        "calibration" if i in calibration else "testing" if i in held_out else "training" for i in range(len(slices))
    ]
    copies = [variants if name == "training" else held_out_variants for name in section]
    plan = graded_artifact_plan(sum(copies), seed=seed)
    first = np.cumsum([0] + copies)
    developments = [i for i in range(len(slices)) if section[i] == "training"]
    if tuple(development_kinds) != ARTIFACT_KINDS:
        development = graded_artifact_plan(variants * len(developments), kinds=development_kinds, seed=seed + 4)
        for j, i in enumerate(developments):
            plan[first[i] : first[i] + variants] = development[j * variants : (j + 1) * variants]
    tests = [i for i in range(len(slices)) if section[i] == "testing"]
    shift_plan = graded_artifact_plan(shift_variants * len(tests), seed=seed + 1)
    geometric_plan = graded_artifact_plan(geometric_variants * len(developments), kinds=development_kinds,
                                          seed=seed + 2)  # fmt: skip
    geometry = np.random.default_rng(seed + 2)
    clean, sections = [], {"training": [], "calibration": [], "testing": [], "shift": []}
    for i, item in enumerate(slices):
        name = Path(item["image"]).name.replace("_image.nii.gz", "")
        image_nii = nib.load(item["image"])
        image = np.asarray(image_nii.dataobj, dtype=np.float32)
        label_path = out / "labels" / f"{name}_{task}.nii.gz"
        label = np.asarray(nib.load(item["label"]).dataobj, dtype=np.uint8)
        save_nifti(label, image_nii.affine, label_path)
        plane = {"plane": item["plane"]}
        if section[i] == "training":
            clean_path = out / "images" / f"{name}.nii.gz"
            save_nifti(image, image_nii.affine, clean_path)
            clean.append({"image": str(clean_path), "label": str(label_path), "group": name, **plane})
        for v in range(copies[i]):
            kind, severity = plan[first[i] + v]
            corrupted = apply_mr_artifact(image[None], kind, severity, seed=seed + int(first[i]) + v)[0].numpy()
            path = out / "images" / f"{name}_v{v}.nii.gz"
            save_nifti(corrupted.astype(np.float32), image_nii.affine, path)
            sections[section[i]].append({"image": str(path), "label": str(label_path), "group": name, **plane,
                                         "artifact": kind, "severity": severity})  # fmt: skip
        if section[i] == "training" and geometric_variants:
            j = developments.index(i) * geometric_variants

            def turn(corrupted: np.ndarray, label: np.ndarray, v: int) -> tuple[np.ndarray, np.ndarray, dict]:
                # the plain copies' keys: a batch of the training section mixes these entries with them
                return *random_geometry(corrupted, label, geometry)[:2], dict(plane)

            sections["training"] += _moved_copies(
                image, label, image_nii.affine, name, task, out, geometric_plan[j : j + geometric_variants],
                seed + 10_000 + j, "g", turn,  # artifact seeds apart from the other copies'
            )  # fmt: skip
        if section[i] == "testing":
            k = tests.index(i)

            def shift(corrupted: np.ndarray, label: np.ndarray, v: int) -> tuple[np.ndarray, np.ndarray, dict]:
                moved, moved_label, extra = _shift(corrupted, label, v)
                return moved, moved_label, {**extra, **plane}

            sections["shift"] += _moved_copies(
                image, label, image_nii.affine, name, task, out,
                shift_plan[k * shift_variants : (k + 1) * shift_variants],
                seed + 1 + (k + len(slices)) * shift_variants, "s", shift,
            )  # fmt: skip
    if not shift_variants:
        del sections["shift"]
    if cross_subject_variants:
        sections["cross_subject"] = _cross_subject(out, task, cross_subject_variants, seed)
    write_datalist(out / "stage1.json", {"training": clean})
    write_datalist(out / "dataset.json", sections)
    return {"stage1": out / "stage1.json", "dataset": out / "dataset.json"}
