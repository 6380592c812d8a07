"""The fit's progress bar and the handler that advances it, against counts worked by hand."""

from __future__ import annotations

import contextlib
import io
import unittest

import torch
from ignite.engine import Engine
from parameterized import parameterized

from segq_monai.apps.fit_progress import FitProgress
from segq_monai.handlers import ProgressUpdate


class Counter:
    def __init__(self):
        self.n = 0

    def update(self, n):
        self.n += n


class TestProgressUpdate(unittest.TestCase):
    @parameterized.expand([
        ("case_decollated", "case", True, [2, 1], 2, 6),  # 3 cases per epoch, the output a list of cases
        ("case_collated", "case", False, [3, 1], 1, 4),  # the batch's first dimension
        ("epoch", "epoch", True, [1, 1], 3, 3),
    ])  # fmt: skip
    def test_counts(self, _, per, decollated, batches, epochs, expected):
        counter = Counter()
        engine = Engine(lambda e, b: [{}] * len(b["image"]) if decollated else {"pred": b["image"]})
        ProgressUpdate(counter, per).attach(engine)
        engine.run([{"image": torch.zeros(n, 1, 4, 4)} for n in batches], max_epochs=epochs)
        self.assertEqual(counter.n, expected)

    def test_no_bar_attaches_nothing(self):
        engine = Engine(lambda e, b: b)
        ProgressUpdate(None).attach(engine)
        engine.run([1, 2])  # no error: nothing to update

    def test_bad_unit(self):
        with self.assertRaisesRegex(ValueError, r"per 'case' or per 'epoch', got per='batch'"):
            ProgressUpdate(Counter(), "batch")


class TestFitProgress(unittest.TestCase):
    def test_steps(self):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), FitProgress([("sample", 3, "cases"), ("train", 2, "epochs"),
                                                           ("calibrate", 4, "cases")]) as bar:  # fmt: skip
            bar.start(0)
            bar.update(2)  # one case skipped (done before): the step's end counts it
            self.assertEqual((bar.bar.n, bar.done), (2, 2))
            bar.finish()
            self.assertEqual(bar.bar.n, 3)
            bar.start(2)  # the train step skipped (done before): the bar stands at its end
            self.assertEqual(bar.bar.n, 5)
            bar.update(9)  # not beyond the step's total
            self.assertEqual((bar.bar.n, bar.done), (9, 4))
            bar.finish()
        text = err.getvalue().replace("\r", "\n")
        self.assertIn("1/3 sample 2/3 cases", text)
        self.assertRegex(text, r"3/3 calibrate 4/4 cases \|#+\| 9/9 \[")


if __name__ == "__main__":
    unittest.main()
