"""Every long command resumes after a kill: killed by a signal part-way, then run again with the same command line,
it skips the work done, does the rest, and ends with the outputs of a run never interrupted, no file half-written.

Each command runs in a real subprocess (its own process group, killed as a whole, as a terminal or a job
scheduler does it) at toy size, one thread, so that an uninterrupted run gives the same numbers bit for bit. The
kill point is a file that marks progress (a case's sidecar, a step of ``fit.json``, a checkpoint). A kill that lands
while a file is written leaves its temporary file (``atomic_path``); one is planted before every rerun, which
must delete it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from parameterized import parameterized
from segq_testing import REPO, copy_bundle, read_csv, untrained_weights, workflow, write_cases

from segq_monai.data import write_datalist

#: one thread: the same floating-point sums in every run
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
#: an Ignite handler that sleeps after every iteration (after the writer's), so that the test can kill a run between
#: iterations
SLOW = {"run": ["$@evaluator.add_event_handler(ignite.engine.Events.ITERATION_COMPLETED, "
                "lambda e: os.system('sleep 0.5'))", "$@evaluator.run()"]}


def run(argv: list[str], log: Path, cwd: Path) -> None:
    """Run ``argv`` to its end (output in ``log``); fails the test on a non-zero exit."""
    with open(log, "a") as f:
        code = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, cwd=cwd, env=ENV, check=False).returncode
    if code:
        raise AssertionError(f"{argv[:4]} exited with {code}:\n{log.read_text()[-3000:]}")


def run_killed(argv: list[str], log: Path, cwd: Path, ready: Callable[[], bool], sig: int = signal.SIGKILL) -> None:
    """Start ``argv`` in its own process group and send ``sig`` to the whole group once ``ready()`` holds."""
    with open(log, "a") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd=cwd, env=ENV, start_new_session=True)
        try:
            while not ready():
                if proc.poll() is not None:
                    raise AssertionError(f"{argv[:4]} ended (exit {proc.returncode}) before the kill point:\n"
                                         f"{log.read_text()[-3000:]}")  # fmt: skip
                time.sleep(0.02)
            os.killpg(proc.pid, sig)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # a failed test leaves no run behind
            proc.wait()
    if proc.returncode != -sig:
        raise AssertionError(f"{argv[:4]} was not killed by signal {sig} (exit {proc.returncode})")


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with one torch thread, as the subprocesses run (``ENV``): an uninterrupted reference run in
    this process then gives their numbers bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def plant_temporary(folder: Path, name: str) -> Path:
    """A temporary file as ``atomic_path`` names it, as a kill while writing ``folder/name`` leaves it."""
    path = folder / f".{name}.{'0' * 32}.tmp"
    path.write_text("half")
    return path


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if ".tmp" in p.name]


def assert_whole(test: unittest.TestCase, folder: Path) -> None:
    """Every NIfTI and JSON file in ``folder`` reads whole (a killed run leaves no half-written file)."""
    for path in folder.rglob("*"):
        if path.name.startswith("."):
            continue
        if path.name.endswith(".nii.gz"):
            np.asarray(nib.load(path).dataobj)
        elif path.suffix == ".json":
            json.loads(path.read_text())


def assert_same_maps(test: unittest.TestCase, folder: Path, reference: Path) -> None:
    """The same NIfTI files in both folders, with equal arrays."""
    names = sorted(p.relative_to(reference) for p in reference.rglob("*.nii.gz"))
    test.assertEqual(sorted(p.relative_to(folder) for p in folder.rglob("*.nii.gz")), names)
    for name in names:
        np.testing.assert_array_equal(np.asarray(nib.load(folder / name).dataobj),
                                      np.asarray(nib.load(reference / name).dataobj), err_msg=str(name))  # fmt: skip


def report_numbers(path: Path) -> dict:
    """``report.json`` without its figure list (file names only)."""
    report = json.loads(path.read_text())
    report.pop("figures", None)
    return report


OVERRIDES = {"datalist_key": "testing", "num_samples": 2, "quality_num_samples": 2, "batch_size": 2, "device": "cpu",
             "skip_existing": True}


class TestBundleInferenceKilled(unittest.TestCase):
    """The bundle's inference (and evaluate) with ``--skip_existing true``, 5 cases in batches of 2: killed after its
    second batch, then, as if the kill had come between the 2 cases of that batch, the last case's sidecar removed.
    The rerun reads the first batch back, computes the second whole again (MC dropout draws its masks per batch) and
    the third."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp())
        cls.root = copy_bundle(cls.tmp)
        (cls.root / "configs" / "slow.json").write_text(json.dumps(SLOW))
        untrained_weights(cls.root / "configs" / "inference.json", cls.root / "models")
        items = write_cases(cls.tmp / "data", [f"c{i}" for i in range(5)], (32, 32))
        cls.datalist = write_datalist(cls.tmp / "data" / "datalist.json", {"testing": items})

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def _command(self, configs: list[str], out: Path) -> list[str]:
        files = "[" + ",".join(f"'{self.root / 'configs' / c}'" for c in configs) + "]"
        argv = [sys.executable, "-m", "monai.bundle", "run", "--bundle_root", str(self.root), "--config_file", files,
                "--meta_file", str(self.root / "configs" / "metadata.json")]  # fmt: skip
        for key, value in {**OVERRIDES, "datalist": str(self.datalist), "output_dir": str(out)}.items():
            argv += [f"--{key}", str(value)]
        return argv

    @parameterized.expand([("inference", ["inference.json"]), ("evaluate", ["inference.json", "evaluate.json"])])
    def test_killed_run_resumes(self, _, configs):
        reference, out = self.tmp / f"{_}_reference", self.tmp / f"{_}_resumed"
        with one_thread():
            workflow(configs, self.root, datalist=str(self.datalist), output_dir=str(reference), **OVERRIDES)
        sidecars = [out / c / f"{c}_quality.json" for c in ("c0", "c1", "c2", "c3")]
        run_killed(self._command([*configs, "slow.json"], out), self.tmp / f"{_}.log", self.tmp,
                   lambda: all(p.is_file() for p in sidecars))  # fmt: skip
        self.assertFalse((out / "quality.csv").exists())
        assert_whole(self, out)
        sidecars[3].unlink()  # as if killed between the two cases of the second batch
        planted = plant_temporary(out / "c3", "c3_seg.nii.gz")
        untouched = {p: p.stat().st_mtime_ns for c in ("c0", "c1") for p in (out / c).iterdir()}

        run(self._command(configs, out), self.tmp / f"{_}.log", self.tmp)
        self.assertEqual({p: p.stat().st_mtime_ns for p in untouched}, untouched)  # the first batch read back
        self.assertEqual(read_csv(out / "quality.csv"), read_csv(reference / "quality.csv"))
        assert_same_maps(self, out, reference)
        if "evaluate.json" in configs:
            self.assertEqual(report_numbers(out / "report.json"), report_numbers(reference / "report.json"))
        self.assertFalse(planted.exists())
        self.assertEqual(temporaries(out), [])


if __name__ == "__main__":
    unittest.main()
