"""Figures of the evaluation report (matplotlib, Agg backend): each function saves one PNG and closes its figure.

* :func:`plot_predicted_vs_true`: predicted against true Dice, identity line and the failure Dice τ.
* :func:`plot_risk_coverage`: selective risk (mean ``1 - Dice`` of the accepted cases) against the fraction accepted.
* :func:`plot_uncertainty_overlay`: image with contours, uncertainty heat map (nats), segmentation.
* :func:`plot_best_and_worst`: overlays of the cases with the highest and lowest Dice.
* :func:`thumbnail_png`, :func:`dice_histogram_png`: small figures as PNG bytes, for the cohort page
  (:mod:`segq_monai.evaluation.cohort_page`).

Dice is dimensionless, in [0, 1]; entropy and mutual information are in nats.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from segq_monai import metrics  # noqa: E402
from segq_monai.data.columns import class_mean  # noqa: E402
from segq_monai.metrics.quality import FAILURE_DICE  # noqa: E402
from segq_monai.utils.atomic import atomic_path  # noqa: E402

__all__ = [
    "plot_predicted_vs_true",
    "plot_risk_coverage",
    "plot_uncertainty_overlay",
    "plot_best_and_worst",
    "thumbnail_png",
    "dice_histogram_png",
]


def _save(fig: Figure, path: str | os.PathLike) -> str:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    try:
        with atomic_path(path, suffix=os.path.splitext(path)[1]) as tmp:
            fig.savefig(tmp, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _png_bytes(fig: Figure, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", **kwargs)
    finally:
        plt.close(fig)
    return buf.getvalue()


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _quiet(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    """A metric for a legend: NaN (without the warning) when undefined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(fn(*args, **kwargs))


def plot_predicted_vs_true(
    pred: Any,
    true: Any,
    path: str | os.PathLike,
    tau: float = FAILURE_DICE,
    title: str = "Predicted vs true Dice per case",
    class_names: Sequence[str] | None = None,
) -> str:
    """Scatter of predicted against true Dice, with the identity line and the failure Dice τ on both axes.

    Args:
        pred: predicted Dice ``[N]`` or ``[N, K]`` (K foreground classes), in [0, 1].
        true: true Dice, same shape.
        path: PNG file to write.
        tau: the failure Dice τ (true Dice below it is a failure; predicted below it is flagged).
        title: figure title.
        class_names: K names for the legend (``[N, K]`` input).

    Returns:
        ``path``. The legend gives each class's MAE (Dice) and Pearson r.
    """
    p, t = _np(pred), _np(true)
    if p.shape != t.shape or p.ndim not in (1, 2) or p.size == 0:
        raise ValueError(f"pred and true must both be [N] or [N, K] and non-empty, got {p.shape} and {t.shape}.")
    p2, t2 = (p[:, None], t[:, None]) if p.ndim == 1 else (p, t)
    names = list(class_names) if class_names is not None else [str(k + 1) for k in range(p2.shape[1])]
    if len(names) != p2.shape[1]:
        raise ValueError(f"class_names has {len(names)} names for {p2.shape[1]} classes; give one per class.")
    fig, ax = plt.subplots(figsize=(5.5, 5.0))
    ax.axvspan(-0.02, tau, color="tab:red", alpha=0.06, lw=0, label=f"true failure (Dice < τ = {tau:g})")
    ax.plot([0, 1], [0, 1], color="0.4", lw=1, ls="--", label="identity (perfect prediction)")
    ax.axvline(tau, color="tab:red", lw=1, ls=":")
    ax.axhline(tau, color="tab:orange", lw=1, ls=":", label=f"flagged below τ = {tau:g}")
    for k in range(p2.shape[1]):
        mae = _quiet(metrics.mean_absolute_error, p2[:, k], t2[:, k])
        r = _quiet(metrics.pearson_correlation, p2[:, k], t2[:, k])
        prefix = f"{names[k]}: " if p2.shape[1] > 1 else ""
        ax.scatter(t2[:, k], p2[:, k], s=22, alpha=0.8, label=f"{prefix}MAE {mae:.3f}, Pearson r {r:.3f}")
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), aspect="equal")
    ax.set_xlabel("true Dice (dimensionless, 0–1)")
    ax.set_ylabel("predicted Dice (dimensionless, 0–1)")
    ax.set_title(f"{title}\n(N = {p2.shape[0]} cases; Dice, dimensionless)", fontsize=10)
    ax.legend(loc="upper left", fontsize=7, framealpha=0.9)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_risk_coverage(
    curves: Mapping[str, tuple[Any, Any]],
    path: str | os.PathLike,
    title: str = "Risk-coverage: selective risk vs fraction accepted",
) -> str:
    """Selective risk against the fraction of cases accepted, for each method, AURC in the legend, plus the optimal
    curve.

    Args:
        curves: ``{method: (confidence [N], risk [N])}``; confidence any scale (higher = more likely good),
            risk e.g. ``1 - true Dice`` in [0, 1]. The optimal curve (confidence = -risk) is drawn for the
            first method's risk, and again for any method whose cases differ.
        path: PNG file to write.
        title: figure title.

    Returns:
        ``path``.
    """
    if not curves:
        raise ValueError("curves is empty; pass {method: (confidence, risk)}.")
    fig, ax = plt.subplots(figsize=(6.0, 4.5))
    optimal: list[np.ndarray] = []
    for name, (confidence, risk) in curves.items():
        c, r = _np(confidence), _np(risk)
        fraction_accepted, selective = metrics.risk_coverage_curve(c, r)
        area = _quiet(metrics.aurc, c, r)
        ax.plot(fraction_accepted, selective, lw=1.5, label=f"{name} (AURC {area:.3f})")
        if not any(o.shape == r.shape and np.array_equal(np.sort(o), np.sort(r)) for o in optimal):
            optimal.append(r)
            accepted, sel_o = metrics.risk_coverage_curve(-r, r)
            label = "optimal" if len(optimal) == 1 else f"optimal ({name}'s cases)"
            area = _quiet(metrics.aurc, -r, r)
            ax.plot(accepted, sel_o, color="k", lw=1, ls="--", label=f"{label} (AURC {area:.3f})")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("fraction of cases accepted, most confident first")
    ax.set_ylabel("selective risk (mean 1 − Dice of accepted cases)")
    ax.set_title(f"{title}\n(risk = 1 − Dice, dimensionless; lower is better)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", framealpha=0.9)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _slice2d(x: Any, name: str, channel_reduce: str = "first") -> np.ndarray:
    """``[H, W]``, ``[1, H, W]``, ``[H, W, D]`` or ``[C, H, W, D]`` as a 2D ``[H, W]`` (middle slice along D).

    ``channel_reduce``: what to do with ``C > 1`` channels of a 4D input: ``"first"`` channel (images) or
    ``"labels"`` (binary channels to class indices ``max_c (c + 1) * x[c]``, for sigmoid segmentations).
    """
    a = _np(x)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    elif a.ndim == 4:
        if a.shape[0] == 1 or channel_reduce == "first":
            a = a[0]
        else:
            a = np.max((a != 0) * np.arange(1, a.shape[0] + 1).reshape(-1, 1, 1, 1), axis=0)
    if a.ndim == 3:
        a = a[:, :, a.shape[2] // 2]
    if a.ndim != 2:
        raise ValueError(
            f"{name} must be [H, W], [1, H, W], [H, W, D] or [1, H, W, D], got shape {tuple(_np(x).shape)}."
        )
    return a


def _contours(ax: Any, seg: np.ndarray, color: str, style: str) -> bool:
    """Draw one contour per foreground class of a 2D label image; False when there is no foreground."""
    drawn = False
    for c in np.unique(seg):
        if c == 0:
            continue
        mask = (seg == c).astype(float)
        ax.contour(mask, levels=[0.5], colors=[color], linewidths=1.2, linestyles=style)
        drawn = True
    return drawn


def plot_uncertainty_overlay(
    image: Any,
    seg: Any,
    uncertainty: Any,
    path: str | os.PathLike,
    title: str = "Segmentation and uncertainty",
    label: Any | None = None,
    uncertainty_name: str = "predictive entropy",
    units: str = "nats",
    transpose: bool = True,
) -> str:
    """Three panels for one case: image with the segmentation (and ground-truth) contour, the uncertainty map
    as a heat map over the image with a colour bar, and the segmentation.

    Args:
        image: ``[H, W]``, ``[1, H, W]``, ``[H, W, D]`` or ``[C, H, W, D]`` (first channel shown), any intensity
            unit. 3D inputs show the middle slice along the last (axial) axis.
        seg: class indices, same spatial shape (``[C, H, W, D]`` binary channels are merged to indices).
        uncertainty: one-channel map, same spatial shape, in ``units``.
        path: PNG file to write.
        title: figure title.
        label: optional ground-truth class indices, same spatial shape: drawn as a dashed contour.
        uncertainty_name, units: colour-bar label, e.g. ``"mutual information"``, ``"nats"``.
        transpose: True for arrays in MONAI/NIfTI order (first axis = x, second = y): the slice is shown with x
            to the right and y up. False shows the array as rows and columns.

    Returns:
        ``path``.
    """
    img = _slice2d(image, "image")
    sg = _slice2d(seg, "seg", "labels")
    unc = _slice2d(uncertainty, "uncertainty")
    lab = None if label is None else _slice2d(label, "label", "labels")
    for name, a in (("seg", sg), ("uncertainty", unc), ("label", lab)):
        if a is not None and a.shape != img.shape:
            raise ValueError(f"{name} has spatial shape {a.shape} but image has {img.shape}; resample onto one grid.")
    if transpose:
        img, sg, unc = img.T, sg.T, unc.T
        lab = None if lab is None else lab.T
    origin = "lower" if transpose else "upper"
    show = {"origin": origin, "interpolation": "nearest"}

    fig, axes = plt.subplots(1, 3, figsize=(13.0, 4.6), layout="constrained")
    ax0, ax1, ax2 = axes
    ax0.imshow(img, cmap="gray", **show)
    handles = []
    if _contours(ax0, sg, "tab:cyan", "solid"):
        handles.append(plt.Line2D([], [], color="tab:cyan", label="segmentation"))
    if lab is not None and _contours(ax0, lab, "tab:orange", "dashed"):
        handles.append(plt.Line2D([], [], color="tab:orange", ls="--", label="ground truth"))
    # contour() may autoscale: restore the image extent (row 0 at the bottom for origin="lower", else the top)
    ax0.set_xlim(-0.5, img.shape[1] - 0.5)
    ax0.set_ylim(*((-0.5, img.shape[0] - 0.5) if transpose else (img.shape[0] - 0.5, -0.5)))
    if handles:
        ax0.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.8)
    ax0.set_title("image + contours (intensity, a.u.)", fontsize=9)

    ax1.imshow(img, cmap="gray", **show)
    vmax = float(unc.max()) if unc.size and float(unc.max()) > 0 else 1.0
    heat = ax1.imshow(unc, cmap="inferno", alpha=0.65, vmin=0.0, vmax=vmax, **show)
    fig.colorbar(heat, ax=ax1, fraction=0.046, pad=0.04, label=f"{uncertainty_name} ({units})")
    ax1.set_title(f"{uncertainty_name} ({units})", fontsize=9)

    n_cls = int(max(sg.max(), 1))
    colours = ["black"] + [plt.get_cmap("tab10")(c % 10) for c in range(n_cls)]
    cmap = ListedColormap(colours)
    norm = BoundaryNorm(np.arange(-0.5, n_cls + 1), n_cls + 1)
    seg_im = ax2.imshow(sg, cmap=cmap, norm=norm, **show)
    cbar = fig.colorbar(seg_im, ax=ax2, fraction=0.046, pad=0.04, ticks=range(0, n_cls + 1))
    cbar.set_label("class index (0 = background)")
    ax2.set_title("segmentation (class index)", fontsize=9)
    xlab, ylab = ("x (voxels)", "y (voxels)") if transpose else ("column (pixels)", "row (pixels)")
    for ax in axes:
        ax.set_xlabel(xlab, fontsize=8)
        ax.set_ylabel(ylab, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def plot_best_and_worst(
    rows: Sequence[Mapping[str, Any]],
    load_case: Callable[[Mapping[str, Any]], tuple[Any, Any, Any, Any]],
    output_dir: str | os.PathLike,
    k: int = 2,
) -> list[str]:
    """Overlays (:func:`plot_uncertainty_overlay`) of the ``k`` cases with the highest and the lowest Dice.

    Cases are ranked by true Dice (mean over classes, :func:`~segq_monai.data.columns.class_mean`) when the
    rows have it, else by predicted Dice.

    Args:
        rows: the per-case table (see :mod:`segq_monai.data.columns`).
        load_case: ``row -> (image, seg, uncertainty, label or None)``, arrays as
            :func:`plot_uncertainty_overlay` takes them (uncertainty in nats).
        output_dir: folder for ``overlay_best_1.png`` … ``overlay_best_k.png``, ``overlay_worst_1.png`` … .
        k: cases per end (fewer when the table is shorter).

    Returns:
        the written paths, best first.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1 case, got {k}.")
    pred_dice, true_dice = class_mean(rows, "pred_dice"), class_mean(rows, "true_dice")
    kind, dice = ("true", true_dice) if np.isfinite(true_dice).any() else ("pred", pred_dice)
    scored = [(d, i) for i, d in enumerate(dice.tolist()) if np.isfinite(d)]
    if not scored:
        raise ValueError("no row has a true_dice or pred_dice value; nothing to rank.")
    order = [i for _, i in sorted(scored, key=lambda t: (-t[0], t[1]))]
    k = min(k, len(order))
    paths = []
    for which, picked in (("best", order[:k]), ("worst", order[::-1][:k])):
        for rank, i in enumerate(picked, start=1):
            row = rows[i]
            image, seg, unc, label = load_case(row)
            name = os.path.basename(str(row.get("image", f"case {i}")))
            pred = pred_dice[i]
            extra = f", predicted {pred:.3f}" if kind == "true" and np.isfinite(pred) else ""
            title = f"{which} {rank}: {name} — {kind} Dice {dice[i]:.3f}{extra} (dimensionless)"
            path = os.path.join(os.fspath(output_dir), f"overlay_{which}_{rank}.png")
            paths.append(plot_uncertainty_overlay(image, seg, unc, path, title=title, label=label))
    return paths


def thumbnail_png(image: Any, seg: Any, uncertainty: Any, size: int = 96, transpose: bool = True) -> bytes:
    """A ``size`` × ``size`` pixel PNG of one case: the image (grey), the uncertainty map as a translucent heat map
    (scaled to the case's own maximum) and the segmentation's contour (cyan); no axes, no text.

    Args:
        image, seg, uncertainty: as :func:`plot_uncertainty_overlay` takes them (3D: the middle slice along the
            last axis; ``seg`` as class indices, or ``[C, H, W, D]`` binary channels).
        size: width and height in pixels (the slice is stretched to a square).
        transpose: as in :func:`plot_uncertainty_overlay`.
    """
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}.")
    img = _slice2d(image, "image")
    sg = _slice2d(seg, "seg", "labels")
    unc = _slice2d(uncertainty, "uncertainty")
    for name, a in (("seg", sg), ("uncertainty", unc)):
        if a.shape != img.shape:
            raise ValueError(f"{name} has spatial shape {a.shape} but image has {img.shape}; resample onto one grid.")
    if transpose:
        img, sg, unc = img.T, sg.T, unc.T
    show = {"origin": "lower" if transpose else "upper", "interpolation": "nearest", "aspect": "auto"}
    fig = plt.figure(figsize=(size / 100, size / 100), dpi=100)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    ax.imshow(img, cmap="gray", **show)
    vmax = float(unc.max()) if unc.size and float(unc.max()) > 0 else 1.0
    ax.imshow(np.ma.masked_less_equal(unc, 0.0), cmap="inferno", alpha=0.6, vmin=0.0, vmax=vmax, **show)
    for c in np.unique(sg):
        if c != 0:
            ax.contour((sg == c).astype(float), levels=[0.5], colors=["tab:cyan"], linewidths=0.8)
    ax.set_xlim(-0.5, img.shape[1] - 0.5)
    ax.set_ylim(*((-0.5, img.shape[0] - 0.5) if transpose else (img.shape[0] - 0.5, -0.5)))
    return _png_bytes(fig, dpi=100)


def dice_histogram_png(
    cohort: Any, reference: Any | None = None, acceptance_threshold: float | None = None
) -> bytes:
    """A PNG histogram of the cohort's per-case predicted Dice (dimensionless, [0, 1]) over 20 bins, as densities;
    with ``reference`` (the calibration split's values) both, so that their shapes compare whatever the sizes.

    Args:
        cohort: ``[N]`` per-case predicted Dice; non-finite values are left out.
        reference: optional ``[M]``, the same quantity on the calibration split.
        acceptance_threshold: optional ``λ̂`` (or the fixed threshold), drawn as a vertical line.
    """
    bins = np.linspace(0.0, 1.0, 21)
    fig, ax = plt.subplots(figsize=(4.8, 2.6), layout="constrained")
    for values, name, colour in ((cohort, "this cohort", "tab:blue"), (reference, "calibration split", "tab:orange")):
        if values is None:
            continue
        v = _np(values).reshape(-1)
        v = v[np.isfinite(v)]
        if v.size:
            ax.hist(np.clip(v, 0.0, 1.0), bins=bins, density=True, alpha=0.55, color=colour, label=f"{name} (n={v.size})")
    if acceptance_threshold is not None and np.isfinite(acceptance_threshold):
        ax.axvline(acceptance_threshold, color="tab:red", ls="--", lw=1, label=f"threshold {acceptance_threshold:.2f}")
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("predicted Dice (dimensionless)", fontsize=8)
    ax.set_ylabel("density", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper left")
    return _png_bytes(fig, dpi=100)
