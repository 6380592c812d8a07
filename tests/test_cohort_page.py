"""The cohort page (``OUT/index.html``): written by the bundle's inference and evaluation, checked in a real headless
Chromium (Debian's ``chromium``): rows worst first, images decoded, sorting by a header.

Without Chromium the browser tests are skipped, except under CI (``CI=true``), where they fail: ``.ci/run`` installs it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import unittest
from html.parser import HTMLParser
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser
from segq_testing import copy_bundle, read_csv, untrained_weights, workflow, write_cases

from segq_monai.data import write_datalist
from segq_monai.evaluation import write_cohort_page
from segq_monai.evaluation.cohort_page import PAGE_NAME
from segq_monai.handlers import CohortPage, QualityReport, QualityWriter

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
IN_CI = os.environ.get("CI", "").lower() == "true"


class _Page(HTMLParser):
    """The parts of a (dumped) page the tests read: ``<body>`` attributes, the table's rows, the images."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.rows: list[dict[str, str]] = []
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.headers: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        elif tag == "tr" and "data-case" in a:
            self.rows.append(a)
        elif tag == "img":
            self.images.append(a)
        elif tag == "a":
            self.links.append(a.get("href", ""))
        elif tag == "th" and "data-key" in a:
            self.headers.append(a["data-key"])


def _dump(page: Path, query: str = "") -> _Page:
    """The DOM of ``page`` after its scripts ran, as headless Chromium dumps it."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", f"--user-data-dir={profile}",
             "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri() + query],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    if result.returncode != 0 or "<body" not in result.stdout:
        raise AssertionError(f"chromium failed ({result.returncode}): {result.stderr[-2000:]}")
    return _Page(result.stdout)


@pytest.mark.slow
class TestCohortPageInBrowser(unittest.TestCase):
    """A tiny calibrated evaluation and a plain inference of the bundle (untrained, seeded weights, T = 2), their
    pages opened in headless Chromium."""

    @classmethod
    def setUpClass(cls):
        if CHROMIUM is None:
            if IN_CI:
                raise AssertionError("chromium is missing under CI; .ci/run installs it (apt-get install chromium).")
            raise unittest.SkipTest("chromium is not installed (apt-get install chromium)")
        cls.tmp = Path(tempfile.mkdtemp())
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        cls.root = copy_bundle(cls.tmp)
        untrained_weights(cls.root / "configs" / "inference.json", cls.root / "models")
        data = cls.tmp / "data"
        cal_items = write_cases(data, [f"cal{i}" for i in range(8)], (24, 24), seed=2)
        test_items = write_cases(data, [f"test{i}" for i in range(5)], (24, 20), seed=1)
        cls.datalist = data / "datalist.json"
        write_datalist(cls.datalist, {"calibration": cal_items, "testing": test_items})
        common = {"num_samples": 2, "device": "cpu", "datalist": str(cls.datalist)}
        both = ["inference.json", "evaluate.json"]
        workflow(both, cls.root, datalist_key="calibration", output_dir=str(cls.tmp / "cal"), **common)
        cls.cal_file = cls.tmp / "quality_calibration.json"
        workflow(["inference.json", "calibrate_quality.json"], cls.root, calibration_csvs=[str(cls.tmp / "cal" / "quality.csv")],
                 calibration_file=str(cls.cal_file), coverage=0.8, alpha=0.5, delta=0.5, **common)  # fmt: skip
        cls.out = cls.tmp / "calibrated"
        workflow(both, cls.root, output_dir=str(cls.out), calibration_file=str(cls.cal_file), **common)
        cls.plain = cls.tmp / "plain"
        workflow(["inference.json"], cls.root, output_dir=str(cls.plain), **common)

    def test_rows_worst_first_with_interval_truth_and_links(self):
        page = _dump(self.out / PAGE_NAME)
        table = read_csv(self.out / "quality.csv")
        self.assertEqual(len(page.rows), len(table))
        preds = [float(r["data-pred_dice"]) for r in page.rows]
        self.assertEqual(preds, sorted(float(r["pred_dice"]) for r in table))  # worst first
        self.assertEqual(page.body["data-sort"], "pred_dice:asc")
        by_case = {Path(r["image"]).name.removesuffix(".nii.gz"): r for r in table}
        for row in page.rows:
            source = by_case[row["data-case"]]
            for key in ("pred_dice_lo", "pred_dice_hi", "pred_dice_sd", "true_dice", "flagged"):
                self.assertAlmostEqual(float(row[f"data-{key}"]), float(source[key]), places=9, msg=key)
        self.assertEqual(page.headers, ["index", "case", "pred_dice", "pred_dice_lo", "pred_dice_hi", "pred_dice_sd",
                                        "true_dice", "flagged"])  # fmt: skip
        nifti = [h for h in page.links if h.endswith(".nii.gz")]
        self.assertEqual(len(nifti), 4 * len(table))  # seg, entropy, mutual_information, agreement
        for href in nifti + ["drift.json", "report.json", "quality.csv"]:
            self.assertIn(href, page.links)
            self.assertTrue((self.out / href).is_file(), href)  # relative links resolve from the page's folder

    def test_images_decode(self):
        page = _dump(self.out / PAGE_NAME)
        thumbs = [i for i in page.images if "thumb" in i.get("class", "")]
        self.assertEqual(len(thumbs), 5)
        self.assertEqual(len(page.images), 6)  # and the histogram
        for img in page.images:
            self.assertTrue(img["src"].startswith("data:image/png;base64,"))
            png = base64.b64decode(img["src"].split(",", 1)[1])
            self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
        self.assertEqual(page.body["data-images-decoded"], "6")  # naturalWidth > 0 for every image
        html = (self.out / PAGE_NAME).read_text()
        for remote in ("http://", "https://", "//cdn"):
            self.assertNotIn(remote, html)  # nothing fetched: no server, no network

    def test_sort_by_true_dice_descending_and_by_case(self):
        table = read_csv(self.out / "quality.csv")
        page = _dump(self.out / PAGE_NAME, "?sort=true_dice&order=desc")
        self.assertEqual(page.body["data-sort"], "true_dice:desc")
        truth = [float(r["data-true_dice"]) for r in page.rows]
        self.assertEqual(truth, sorted((float(r["true_dice"]) for r in table), reverse=True))
        page = _dump(self.out / PAGE_NAME, "?sort=case")
        self.assertEqual([r["data-case"] for r in page.rows], [f"test{i}" for i in range(5)])

    def test_drift_and_histogram_against_calibration(self):
        html = (self.out / PAGE_NAME).read_text()
        drift = json.loads((self.out / "drift.json").read_text())
        statement = drift["message"] if drift["drifted"] else "No drift detected"
        self.assertIn(statement.split(".")[0].replace("'", "&#39;"), html)
        self.assertIn("against\nthe calibration split", html)

    def test_plain_inference_page(self):
        page = _dump(self.plain / PAGE_NAME)
        self.assertEqual(len(page.rows), 5)
        self.assertNotIn("true_dice", page.headers)
        self.assertNotIn("pred_dice_lo", page.headers)
        self.assertEqual(page.body["data-images-decoded"], "6")
        self.assertIn("No drift check", (self.plain / PAGE_NAME).read_text())


class TestCohortPageWriter(unittest.TestCase):
    """``write_cohort_page`` on a hand-written folder (no browser)."""

    def test_order_nan_last_escaping_sd_and_classes(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            rows = ["image,pred_dice_1,pred_dice_2,pred_dice_sd_1,pred_dice_sd_2,flagged",
                    "a.nii.gz,0.9,0.7,0.1,0.3,0", "<b>.nii.gz,0.2,0.4,0.05,0.05,1", "c.nii.gz,,0.5,,,0"]  # fmt: skip
            (out / "quality.csv").write_text("\n".join(rows) + "\n")
            image = np.zeros((8, 8, 4), np.float32)
            (out / "a").mkdir()
            nib.save(nib.Nifti1Image(image, np.eye(4)), out / "a" / "a_seg.nii.gz")
            page = _Page(write_cohort_page(out).read_text())
            self.assertEqual([r["data-case"] for r in page.rows], ["<b>", "a", "c"])  # 0.3, 0.8, then no value
            self.assertEqual([r["data-pred_dice"] for r in page.rows], ["0.30000000000000004", "0.8", ""])
            self.assertEqual(page.rows[0]["data-pred_dice_sd"], "0.05")
            self.assertIn("pred_dice_sd", page.headers)
            self.assertIn("a/a_seg.nii.gz", page.links)
            self.assertIn("&lt;b&gt;", (out / PAGE_NAME).read_text())  # autoescaped
            self.assertEqual(page.images[0]["alt"], "histogram of predicted Dice")  # no thumbnails: no images

    def test_the_page_runs_last(self):
        """Ignite runs the handlers of an event in the order they were added: the page reads quality.csv, drift.json
        and report.json, so it adds itself to COMPLETED when the run starts, after their writers, though
        evaluate.json lists the QualityReport after it (and once, however often the engine runs)."""
        calls = []

        class Page(CohortPage):
            def __call__(self, engine=None):
                calls.append("page")

        engine = Engine(lambda e, b: None)
        Page(tempfile.gettempdir()).attach(engine)
        engine.add_event_handler(Events.COMPLETED, lambda e: calls.append("report"))
        engine.run([0], max_epochs=1)
        engine.run([0], max_epochs=1)
        self.assertEqual(calls, ["report", "page"] * 2)
        parser = ConfigParser()
        parser.read_config([str(Path(__file__).resolve().parents[1] / "bundle" / "configs" / c)
                            for c in ("inference.json", "evaluate.json")])  # fmt: skip
        parser.update({"device": "cpu", "output_dir": tempfile.gettempdir()})
        self.assertEqual(parser.get("evaluator")["val_handlers"], "@handlers")
        kinds = [type(h) for h in parser.get_parsed_content("handlers")]
        self.assertLess(kinds.index(QualityWriter), kinds.index(CohortPage))
        self.assertEqual(kinds[-1], QualityReport)


if __name__ == "__main__":
    unittest.main()
