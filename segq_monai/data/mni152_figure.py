"""Figure of the MNI152 demo slices beside the Colin27 slices at the same MNI coordinate (``docs/figures``).

Run::

    python -m segq_monai.data.mni152_figure docs/figures/mni152_slices.png

Each row is one plane; each pair of panels shows Colin27 (skull included) and the MNI152 template (brain-extracted)
at one coordinate: the image in grey, the merged AAL regions in colour, the brain mask's outline in yellow. Both
are drawn the same way, the first in-plane axis across and the second upwards (axial: the subject's right on the
right, anterior up; coronal: right on the right, superior up; sagittal: anterior on the right, superior up), so
the pair shows whether the slices line up.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from segq_monai.data.datalist import demo_datalist_path, load_datalist

__all__ = ["plot_mni152_slices", "slice_position"]

_KEYS = ("image", "label", "regions")
_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}


def slice_position(path: str | Path, plane: str) -> float:
    """MNI coordinate (mm) of a 2D demo slice's plane along its fixed axis, from the file's affine."""
    return float(nib.load(path).affine[_AXIS[plane], 3])


def plot_mni152_slices(path: str | Path, positions: dict[str, Sequence[float]] | None = None) -> Path:
    """Save the figure to ``path`` (PNG): per plane, Colin27 and MNI152 side by side at each of ``positions``
    (MNI mm per plane; default two per plane, all of them positions of the MNI152 slices)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    positions = positions or {"axial": (-21.0, 29.0), "coronal": (-69.0, 13.0), "sagittal": (-42.0, 10.0)}
    mni_list = demo_datalist_path().parent / "mni152" / "dataset.json"
    colin_items = load_datalist(demo_datalist_path(), "training", _KEYS) + load_datalist(
        demo_datalist_path(), "cross_plane", _KEYS
    )
    subjects = {"Colin27": {}, "MNI152": {}}
    for item in colin_items:
        plane = item.get("plane", "axial")
        subjects["Colin27"][plane, slice_position(item["image"], plane)] = item
    for plane in _AXIS:
        for item in load_datalist(mni_list, plane, _KEYS):
            subjects["MNI152"][plane, item["position_mm"]] = item
    colours = ListedColormap(["none", "tab:blue", "tab:green", "tab:red", "tab:purple"])
    columns = max(len(v) for v in positions.values()) * 2
    fig, axes = plt.subplots(len(positions), columns, figsize=(2.3 * columns, 2.4 * len(positions)),
                             layout="constrained")  # fmt: skip
    for row, (plane, coords) in enumerate(positions.items()):
        for k, (coord, (name, items)) in enumerate((c, s) for c in coords for s in subjects.items()):
            ax = axes[row, k]
            item = items[plane, coord]
            image, brain, regions = (np.asarray(nib.load(item[key]).dataobj).T for key in _KEYS)
            ax.imshow(image, cmap="gray", origin="lower", interpolation="nearest")
            ax.imshow(np.ma.masked_equal(regions, 0), cmap=colours, vmin=0, vmax=4, alpha=0.45, origin="lower",
                      interpolation="nearest")  # fmt: skip
            ax.contour(brain, levels=[0.5], colors=["yellow"], linewidths=0.8)
            ax.set_title(f"{name} {plane} {'xyz'[_AXIS[plane]]} = {coord:g} mm", fontsize=8)
            ax.set_axis_off()
    handles = [plt.Line2D([], [], color="yellow", label="brain mask")] + [
        plt.Rectangle((0, 0), 1, 1, color=colours(c), alpha=0.6, label=n)
        for c, n in enumerate(("", "frontal", "temporal", "parietal + occipital", "cerebellum")) if c
    ]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncols=5, fontsize=8, frameon=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m segq_monai.data.mni152_figure OUT.png``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="PNG to write, e.g. docs/figures/mni152_slices.png")
    print(plot_mni152_slices(parser.parse_args(argv).out))


if __name__ == "__main__":
    main()
