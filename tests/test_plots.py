from __future__ import annotations

import os
import tempfile
import unittest
from unittest import mock

import numpy as np
import pytest
import torch
from parameterized import parameterized
from PIL import Image

from segq_monai.evaluation import plots
from segq_monai.evaluation.plots import (
    plot_best_and_worst,
    plot_predicted_vs_true,
    plot_risk_coverage,
    plot_uncertainty_overlay,
)
from segq_monai.evaluation.report import write_report

MIN_BYTES = 5_000  # a blank canvas with axes only is well above 1 kB; real figures are tens of kB


def disc(shape, radius, centre=None):
    """A filled disc (2D) or ball (3D) label, int64 of ``shape``."""
    centre = centre or [s / 2 for s in shape]
    grid = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    return (sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2).astype(np.int64)


def case(shape, seed=0):
    """(image, seg, uncertainty in nats, label) of one synthetic case, spatial ``shape``."""
    rng = np.random.default_rng(seed)
    label = disc(shape, 10)
    seg = disc(shape, 9, [s / 2 + 1 for s in shape])
    image = 100.0 * label + rng.normal(0, 10, shape)
    unc = np.where(seg != label, 0.69, 0.05) + rng.uniform(0, 0.02, shape)
    return image, seg, unc, label


def drawn(call):
    """Run a plotting call; return its result and the figures it saved (what was drawn, for inspection)."""
    figures, save = [], plots._save

    def keep(fig, path):
        figures.append(fig)
        return save(fig, path)

    with mock.patch.object(plots, "_save", keep):
        return call(), figures


def selective_risk(confidence, risk):
    """Mean risk of the k most confident cases, k = 1..N (no ties)."""
    r = np.asarray(risk)[np.argsort(-np.asarray(confidence))]
    return np.cumsum(r) / np.arange(1, len(r) + 1)


class PNGAssertions(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def assert_png(self, path):
        self.assertTrue(os.path.isfile(path), path)
        self.assertGreater(os.path.getsize(path), MIN_BYTES, path)
        with Image.open(path) as im:
            self.assertEqual(im.format, "PNG")
            im.verify()
        with Image.open(path) as im:
            self.assertGreater(min(im.size), 200)


class TestSummaryPlots(PNGAssertions):
    @parameterized.expand([("binary", (20,), None), ("two_class", (20, 2), ["frontal", "temporal"])])
    def test_predicted_vs_true(self, _, shape, names):
        rng = np.random.default_rng(0)
        true = rng.uniform(0.3, 1.0, shape)
        pred = np.clip(true + rng.normal(0, 0.1, shape), 0, 1)
        path, (fig,) = drawn(lambda: plot_predicted_vs_true(
            torch.as_tensor(pred), true, os.path.join(self.dir, "pvt.png"), tau=0.7, class_names=names))  # fmt: skip
        self.assert_png(path)
        ax = fig.axes[0]
        p2, t2 = pred.reshape(20, -1), true.reshape(20, -1)
        self.assertEqual(len(ax.collections), p2.shape[1])  # one scatter per class: x = true, y = predicted
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        for k, points in enumerate(ax.collections):
            np.testing.assert_allclose(points.get_offsets(), np.column_stack([t2[:, k], p2[:, k]]))
            mae, r = np.abs(p2[:, k] - t2[:, k]).mean(), np.corrcoef(p2[:, k], t2[:, k])[0, 1]
            self.assertTrue(any(f"MAE {mae:.3f}, Pearson r {r:.3f}" in label for label in labels), labels)
        self.assertIn("flagged below τ = 0.7", labels)
        self.assertIn([0.7, 0.7], [list(line.get_xdata()) for line in ax.lines])  # τ on the true-Dice axis

    def test_predicted_vs_true_bad_shapes(self):
        with self.assertRaises(ValueError):
            plot_predicted_vs_true(np.zeros(3), np.zeros(4), os.path.join(self.dir, "x.png"))

    def test_risk_coverage(self):
        rng = np.random.default_rng(1)
        true = rng.uniform(0.3, 1.0, 30)
        curves = {
            "quality head": (true + rng.normal(0, 0.05, 30), 1 - true),
            "mean_entropy": (rng.normal(size=30), 1 - true),
            "subset": (rng.normal(size=20), 1 - true[:20]),  # different cases: its own optimal curve
        }
        path, (fig,) = drawn(lambda: plot_risk_coverage(curves, os.path.join(self.dir, "sub", "rc.png")))
        self.assert_png(path)
        lines = {line.get_label(): line for line in fig.axes[0].lines}
        want = {name: (c, r) for name, (c, r) in curves.items()}
        want["optimal"] = (-(1 - true), 1 - true)
        want["optimal (subset's cases)"] = (-(1 - true[:20]), 1 - true[:20])
        self.assertEqual(len(lines), len(want))
        for name, (confidence, risk) in want.items():
            curve = selective_risk(confidence, risk)
            (label,) = [k for k in lines if k.startswith(f"{name} (AURC")]
            self.assertEqual(label, f"{name} (AURC {curve.mean():.3f})")
            np.testing.assert_allclose(lines[label].get_xdata(), np.arange(1, len(risk) + 1) / len(risk))
            np.testing.assert_allclose(lines[label].get_ydata(), curve, rtol=1e-12)
        with self.assertRaises(ValueError):
            plot_risk_coverage({}, os.path.join(self.dir, "empty.png"))


class TestOverlay(PNGAssertions):
    @parameterized.expand(
        [
            ("2d", (48, 40), lambda a: a),
            ("2d_channel_torch", (48, 40), lambda a: torch.as_tensor(a)[None]),
            ("3d", (32, 28, 9), lambda a: a),
            ("3d_channel", (32, 28, 9), lambda a: a[None]),
        ]
    )
    def test_shapes(self, _, shape, wrap):
        image, seg, unc, label = case(shape)
        for with_label, transpose in ((True, True), (False, False)):
            path = os.path.join(self.dir, f"ov_{with_label}.png")
            out, (fig,) = drawn(lambda: plot_uncertainty_overlay(
                wrap(image), wrap(seg), wrap(unc), path, title="case", label=wrap(label) if with_label else None,
                transpose=transpose,
            ))  # fmt: skip
            self.assert_png(out)
            middle = (lambda a: a[..., a.shape[-1] // 2]) if len(shape) == 3 else (lambda a: a)
            shown = (lambda a: middle(a).T) if transpose else middle  # x to the right, y up
            panels = fig.axes[:3]
            np.testing.assert_allclose(panels[0].images[0].get_array(), shown(image))  # the image, grey
            np.testing.assert_allclose(panels[1].images[1].get_array(), shown(unc))  # the heat map over it
            np.testing.assert_array_equal(panels[2].images[0].get_array(), shown(seg))  # the class indices
            legend = [t.get_text() for t in panels[0].get_legend().get_texts()]
            self.assertEqual(legend, ["segmentation", "ground truth"] if with_label else ["segmentation"])

    def test_empty_seg_and_multiclass(self):
        image, seg, unc, label = case((40, 40))
        self.assert_png(plot_uncertainty_overlay(image, np.zeros_like(seg), unc, os.path.join(self.dir, "e.png")))
        self.assert_png(plot_uncertainty_overlay(image, seg + label, unc, os.path.join(self.dir, "m.png"), label=label))

    def test_mismatch_raises(self):
        image, seg, unc, _ = case((40, 40))
        with self.assertRaises(ValueError):
            plot_uncertainty_overlay(image, seg[:30], unc, os.path.join(self.dir, "x.png"))
        with self.assertRaises(ValueError):
            plot_uncertainty_overlay(image[None, None], seg, unc, os.path.join(self.dir, "x.png"))


@pytest.mark.slow
class TestBestAndWorst(PNGAssertions):
    def rows(self, with_true=True):
        rows = []
        for i, d in enumerate([0.9, 0.3, 0.75, 0.95, 0.5]):
            row = {"image": f"/data/case{i}.nii.gz", "pred_dice": 1 - d if with_true else d}
            # an interval around the predicted Dice is no class of its own: counted, it would reverse the ranking
            row["pred_dice_lo"] = row["pred_dice_hi"] = d if with_true else 1 - d
            if with_true:
                row["true_dice"] = d
            rows.append(row)
        return rows

    @parameterized.expand([("true", True), ("pred", False)])
    def test_ranking(self, _, with_true):
        want = ["case3", "case0", "case1", "case4"]  # best 1, 2, worst 1, 2 (pred = 1 - true if both)
        loaded = []

        def load_case(row):
            loaded.append(os.path.basename(row["image"]).split(".")[0])
            image, seg, unc, label = case((32, 32))
            return image, seg, unc, label if with_true else None

        paths = plot_best_and_worst(self.rows(with_true), load_case, self.dir, k=2)
        self.assertEqual(loaded, want)
        self.assertEqual(
            [os.path.basename(p) for p in paths],
            ["overlay_best_1.png", "overlay_best_2.png", "overlay_worst_1.png", "overlay_worst_2.png"],
        )
        for p in paths:
            self.assert_png(p)

    def test_write_report_with_overlays(self):
        rows = [dict(r, flagged=int(r["pred_dice"] < 0.8), baseline_mean_entropy=-r["true_dice"]) for r in self.rows()]
        report = write_report(rows, self.dir, load_case=lambda row: case((32, 32)), k=1)
        want = ["predicted_vs_true.png", "risk_coverage.png", "overlay_best_1.png", "overlay_worst_1.png"]
        self.assertEqual(report["figures"], want)
        for name in report["figures"]:
            self.assert_png(os.path.join(self.dir, name))


if __name__ == "__main__":
    unittest.main()
