"""A case's DICOM SEG, as a PACS holds it, drawn over its source series (three axial slices), with the SR's
predicted Dice per segment in the title: what a viewer shows, as a PNG (``docs/figures/dicom_seg_from_pacs.png``).

    python -m segq_monai.dicom.figure --url http://127.0.0.1:8042/dicom-web --study STUDY_UID OUT.png

reads the study's segq SEG and SR (the last of each the PACS lists) and the series the SEG references from the PACS
(DICOMweb) and draws them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from segq_monai.dicom.outputs import report_values

__all__ = ["draw_seg_over_series", "main"]


def draw_seg_over_series(seg: Dataset, source: Sequence[Dataset], report: Dataset, path: str | os.PathLike,
                         slices: Sequence[int] | None = None) -> None:  # fmt: skip
    """Draw ``seg``'s segments (label colours, half transparent) over ``source`` on ``slices`` (default: at a
    third, half and two thirds of the stack) and write a PNG to ``path``.

    Args:
        seg: a DICOM SEG referencing ``source`` (:func:`~segq_monai.dicom.objects.segmentation_object`).
        source: its source series' slices, in any order (sorted here along the slices' normal).
        report: the case's SR (:func:`~segq_monai.dicom.objects.quality_report`): the predicted Dice per segment.
        path: the PNG file.
        slices: indices into the sorted slices.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from segq_monai.dicom.series import sort_slices

    ordered = sort_slices(list(source), "the SEG's source series")
    labels = hd.seg.Segmentation.from_dataset(seg).get_pixels_by_source_instance(
        [ds.SOPInstanceUID for ds in ordered], combine_segments=True)  # [slices, rows, columns]  # fmt: skip
    n = len(ordered)
    slices = list(slices) if slices is not None else [n // 3, n // 2, (2 * n) // 3]
    values = report_values(report)
    fig, axes = plt.subplots(1, len(slices), figsize=(3 * len(slices), 3.7))
    for ax, k in zip(np.atleast_1d(axes), slices):
        ax.imshow(ordered[k].pixel_array, cmap="gray")
        ax.imshow(np.ma.masked_equal(labels[k], 0), cmap="tab10", vmin=0, vmax=9, alpha=0.45, interpolation="nearest")
        ax.set_title(f"slice {k + 1} of {n}", fontsize=9)
        ax.axis("off")
    names = []
    for s in seg.SegmentSequence:
        group = values.get(f"segq class {s.SegmentLabel}", {})
        names.append(f"{s.SegmentNumber} {s.SegmentLabel} {group.get('pred_dice', float('nan')):.2f}")
    fig.suptitle(f"{seg.SeriesDescription}\nsegment, predicted Dice: " + "; ".join(names), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    """Read the study's SEG and SR (the last of each listed) and the SEG's source series from the PACS; draw them."""
    from segq_monai.dicom.pacs import connect

    p = argparse.ArgumentParser(prog="python -m segq_monai.dicom.figure", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--url", required=True)
    p.add_argument("--study", required=True)
    p.add_argument("output")
    args = p.parse_args(argv)
    client = connect(args.url)

    def last(modality: str) -> Dataset:
        found = client.search_for_instances(args.study, search_filters={"Modality": modality})
        if not found:
            raise ValueError(f"Study {args.study} on {args.url} holds no {modality}; run python -m segq_monai pacs.")
        uid = lambda e, tag: e[tag]["Value"][0]  # noqa: E731
        entry = found[-1]
        return client.retrieve_instance(args.study, uid(entry, "0020000E"), uid(entry, "00080018"))

    seg, report = last("SEG"), last("SR")
    series = seg.ReferencedSeriesSequence[0].SeriesInstanceUID
    draw_seg_over_series(seg, client.retrieve_series(args.study, series), report, args.output)
    print(args.output)


if __name__ == "__main__":
    main()
