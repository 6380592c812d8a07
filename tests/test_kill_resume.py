"""Every long command resumes after a kill: killed by a signal part-way, then run again with the same command line,
it skips the work done, does the rest, and ends with the outputs of a run never interrupted, no file half-written.

Each command runs in a process of its own (forked from :data:`command_server.SERVERS`, in its own process group,
killed as a whole, as a terminal or a job scheduler does it) at toy size, one thread, so that an uninterrupted run gives the same numbers bit for bit. The
kill point is a file that marks progress (a case's sidecar, a step of ``fit.json``, a checkpoint). A kill that lands
while a file is written leaves its temporary file (``atomic_path``); one is planted before every rerun, which
must delete it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
import unittest
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from parameterized import parameterized
from command_server import SERVERS
from segq_testing import (
    EXAMPLE3D_TOY,
    copy_bundle,
    make_host,
    read_csv,
    untrained_weights,
    workflow,
    write_cases,
    write_labelled_cases,
)

from test_demo import TOY

from segq_monai.__main__ import main
from segq_monai.apps.example3d import _fit_done
from segq_monai.data import write_datalist
from segq_monai.data.fit_folder import write_fit
from segq_monai.utils.atomic import remove_temporaries

#: set in the environment of a run to kill: the configs :func:`slow_when_asked` changed then sleep after each case
SLOW = "SEGQ_TEST_SLOW"


def slow_when_asked(config: Path, run_id: str = "run") -> None:
    """Make the evaluator of ``config`` (a bundle's or a host's) sleep 0.3 s after every iteration, after its
    writer, when ``SLOW`` is set: the test then kills the run between cases, and the rerun, the same command
    without ``SLOW``, runs at full speed."""
    content = json.loads(config.read_text())
    content["imports"] = [*content.get("imports", []), "$import os", "$import ignite"]
    content[run_id] = [
        "$@evaluator.add_event_handler(ignite.engine.Events.ITERATION_COMPLETED, lambda e: os.system('sleep 0.3')) "
        f"if os.environ.get('{SLOW}') else None",
        *content[run_id],
    ]  # fmt: skip
    config.write_text(json.dumps(content, indent=1))


def run(argv: list[str], log: Path, cwd: Path) -> None:
    """Run ``argv`` (``[python, "-m", MODULE, ...]``) to its end, one thread (output appended to ``log``); fails
    the test on a non-zero exit."""
    code = SERVERS.start(argv[1:], cwd, log, OMP_NUM_THREADS="1").wait()
    if code:
        raise AssertionError(f"{argv[:4]} exited with {code}:\n{log.read_text()[-3000:]}")


def run_killed(argv: list[str], log: Path, cwd: Path, ready: Callable[[], bool], sig: int = signal.SIGKILL) -> None:
    """Start ``argv`` (with ``SLOW`` set, one thread) in its own process group and send ``sig`` to the whole group
    once ``ready()`` holds."""
    started = SERVERS.start(argv[1:], cwd, log, OMP_NUM_THREADS="1", **{SLOW: "1"})
    try:
        while not ready():
            if not started.running():
                raise AssertionError(f"{argv[:4]} ended (exit {started.wait()}) before the kill point:\n"
                                     f"{log.read_text()[-3000:]}")  # fmt: skip
            time.sleep(0.02)
        os.killpg(started.pid, sig)
    finally:
        if started.running():
            os.killpg(started.pid, signal.SIGKILL)  # a failed test leaves no run behind
        code = started.wait()
    if code != -sig:
        raise AssertionError(f"{argv[:4]} was not killed by signal {sig} (exit {code})")


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with one torch thread, as the runs to kill run (``OMP_NUM_THREADS=1``): an uninterrupted
    reference run in this process then gives their numbers bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def plant_temporary(folder: Path, name: str, suffix: str = "") -> Path:
    """A temporary file as ``atomic_path(folder / name, suffix)`` names it, as a kill while writing leaves it."""
    path = folder / f".{name}.{'0' * 32}.tmp{suffix}"
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


@pytest.mark.slow
class TestBundleInferenceKilled(unittest.TestCase):
    """The bundle's inference (and evaluate) with ``--skip_existing true``, 5 cases in batches of 2: killed after its
    second batch, then, as if the kill had come between the 2 cases of that batch, the last case's sidecar removed.
    The rerun reads the first batch back, computes the second whole again (MC dropout draws its masks per batch) and
    the third."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp())
        cls.root = copy_bundle(cls.tmp)
        slow_when_asked(cls.root / "configs" / "inference.json")
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
        run_killed(self._command(configs, out), self.tmp / f"{_}.log", self.tmp,
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


#: the fit at toy size (test_fit's TINY), 6 calibration cases
FIT_ARGS = ["--num_samples", "2", "--epochs", "1", "--head_channels", "4", "4", "--alpha", "0.95", "--delta", "0.5",
            "--coverage", "0.5", "--tau", "0.3"]  # fmt: skip


@pytest.mark.slow
class TestFitKilled(unittest.TestCase):
    """``python -m segq_monai fit`` killed while it runs the calibration cases (its sample and head steps done):
    the rerun skips both steps, reads back the calibration cases written, runs the others and calibrates."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp())
        cls.host = make_host("slice2d_like", cls.tmp)
        slow_when_asked(cls.host / "configs" / "inference.json")
        train = write_labelled_cases(cls.tmp / "train", ["t0", "t1"], (20, 9), (0, 1, 2), seed=1)
        cal = write_labelled_cases(cls.tmp / "cal", [f"k{i}" for i in range(6)], (20, 9), (0, 1, 2), seed=2)
        cls.datalist = write_datalist(cls.tmp / "datalist.json", {"validation": train, "calibration": cal})

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def _args(self, fit_dir: Path) -> list[str]:
        return ["fit", "--host_bundle", str(self.host), "--datalist", str(self.datalist), "--output_dir", str(fit_dir),
                *FIT_ARGS]  # fmt: skip

    def test_killed_fit_resumes(self):
        reference, fit_dir, log = self.tmp / "FIT_reference", self.tmp / "FIT", self.tmp / "fit.log"
        with one_thread(), open(log, "w") as f, redirect_stdout(f), redirect_stderr(f):
            main(self._args(reference))
        command = [sys.executable, "-m", "segq_monai", *self._args(fit_dir)]
        first = fit_dir / "calibration" / "k0" / "k0_quality.json"
        run_killed(command, log, self.tmp, first.is_file)
        self.assertEqual(json.loads((fit_dir / "fit.json").read_text())["steps"], ["sample", "head"])
        self.assertFalse((fit_dir / "calibration" / "quality.csv").exists())
        assert_whole(self, fit_dir)
        planted = plant_temporary(fit_dir, "fit.json")
        untouched = {p: p.stat().st_mtime_ns for p in [*(fit_dir / "sample").rglob("*"), *first.parent.iterdir()]}

        rerun = log.with_name("rerun.log")
        run(command, rerun, self.tmp)
        printed = rerun.read_text()
        self.assertNotIn("== fit, 1/3", printed)  # skipped, as was the head's training
        self.assertNotIn("== fit, 2/3", printed)
        self.assertIn("== fit, 3/3", printed)
        self.assertIn("1 of 6 cases already written", printed)
        self.assertEqual({p: p.stat().st_mtime_ns for p in untouched}, untouched)
        self.assertEqual(json.loads((fit_dir / "fit.json").read_text()), json.loads((reference / "fit.json").read_text()))
        for name in ("quality_calibration.json", "datalist.json", "sample/stage2_datalist.json"):
            self.assertEqual((fit_dir / name).read_text(), (reference / name).read_text(), name)
        for table in ("sample", "calibration"):
            self.assertEqual(read_csv(fit_dir / table / "quality.csv"), read_csv(reference / table / "quality.csv"))
        assert_same_maps(self, fit_dir, reference)
        self.assertFalse(planted.exists())
        self.assertEqual(temporaries(fit_dir), [])


def same_text(test: unittest.TestCase, folder: Path, reference: Path, names: list[str]) -> None:
    """The files ``names`` read the same in both folders, each folder's path written as ``OUT``."""
    for name in names:
        test.assertEqual((folder / name).read_text().replace(str(folder), "OUT"),
                         (reference / name).read_text().replace(str(reference), "OUT"), name)  # fmt: skip


@pytest.mark.slow
class TestDemoKilled(unittest.TestCase):
    """``python -m segq_monai demo`` at test_demo's toy size (without geometric copies, the shift and cross-plane
    splits, 100 bootstrap resamples) killed while
    it evaluates the test split: the rerun skips every step done (training, temperature, sampling, the head, the
    calibration split), continues the test split from its written batches and ends as a run never interrupted."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.root = copy_bundle(self.tmp)
        slow_when_asked(self.root / "configs" / "inference.json")

    def _args(self, out: Path) -> list[str]:
        return ["demo", "--output_dir", str(out), "--bundle_root", str(self.root), *TOY, "--geometric_variants", "0",
                "--shift_variants", "0", "--cross_subject_variants", "0", "--planes", "axial",
                "--bootstrap_resamples", "100"]  # fmt: skip

    def test_killed_demo_resumes(self):
        reference, out, log = self.tmp / "reference", self.tmp / "out", self.tmp / "demo.log"
        with one_thread(), open(log, "w") as f, redirect_stdout(f), redirect_stderr(f):
            main(self._args(reference))
        command = [sys.executable, "-m", "segq_monai", *self._args(out)]
        run_killed(command, log, self.tmp, lambda: any((out / "report").glob("*/*_quality.json")))
        self.assertFalse((out / "report" / "quality.csv").exists())
        assert_whole(self, out)
        planted = plant_temporary(out / "models" / "fold0", "temperature.json")
        written = {p: p.stat().st_mtime_ns for p in (out / "report" / "calibration_split").rglob("*")}

        rerun = log.with_name("rerun.log")
        run(command, rerun, self.tmp)
        printed = rerun.read_text()
        self.assertEqual(printed.count("done by an earlier run, skipped"), 2 * 3 + 2, printed[-3000:])
        self.assertIn("== evaluate image_seg_entropy on the testing split (sampling)\n", printed)
        self.assertEqual({p: p.stat().st_mtime_ns for p in written}, written)
        same_text(self, out, reference, ["report/quality.csv", "report/calibration_split/quality.csv",
                                         "report/report.json", "report/bootstrap.json"])  # fmt: skip
        text, expected = ((d / "report" / "comparison.md").read_text() for d in (out, reference))
        self.assertEqual(text.split("## Time of each step")[0].split("\n", 1)[1],
                         expected.split("## Time of each step")[0].split("\n", 1)[1])  # the first line: minutes
        for folder in ("report", "stage2_data"):
            assert_same_maps(self, out / folder, reference / folder)
        self.assertFalse(planted.exists())
        self.assertEqual(temporaries(out), [])


@pytest.fixture(scope="class")
def example3d_reference(request: pytest.FixtureRequest, example3d_run) -> None:
    """conftest's ``example3d_run`` on the class, as ``example3d_run``."""
    request.cls.example3d_run = example3d_run


@pytest.mark.slow
@pytest.mark.usefixtures("example3d_reference")
class TestExample3dKilled(unittest.TestCase):
    """``python -m segq_monai example3d`` (test_example3d's toy size), its host trained by an earlier run, killed
    with its fit once the fit has sampled: the rerun skips the host's training, continues the fit (it used to take the
    fit's first ``fit.json`` for a finished fit, skip it and fail at the deployment), deploys and reports as a run never
    interrupted: conftest's ``example3d_run``, the same command line in the same environment. A third run then skips
    every step."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def _command(self, out: Path) -> list[str]:
        return [sys.executable, "-m", "segq_monai", "example3d", "--output_dir", str(out), *EXAMPLE3D_TOY]

    def test_killed_example_resumes(self):
        (code, output), reference = self.example3d_run
        self.assertEqual(code, 0, output[-3000:])
        out, log = self.tmp / "out", self.tmp / "example3d.log"
        # the host trained (and the data made) as by a first run killed after the host's training: saves a training
        shutil.copytree(reference / "colin27_regions3d", out / "colin27_regions3d")

        def sampled() -> bool:
            try:
                return "sample" in json.loads((out / "fit" / "fit.json").read_text())["steps"]
            except FileNotFoundError:
                return False

        run_killed(self._command(out), log, self.tmp, sampled)
        self.assertFalse((out / "deploy").exists())
        assert_whole(self, out)
        planted = plant_temporary(out / "fit", "fit.json")
        host_weights = (out / "colin27_regions3d" / "models" / "model.pt").stat().st_mtime_ns

        rerun = log.with_name("rerun.log")
        run(self._command(out), rerun, self.tmp)
        printed = rerun.read_text()
        self.assertIn("== host training (the host's own train.json): done by an earlier run, skipped", printed)
        self.assertNotIn("== fit, 1/3", printed)  # the fit continued after its sampling
        self.assertIn("== fit, 2/3", printed)
        self.assertEqual((out / "colin27_regions3d" / "models" / "model.pt").stat().st_mtime_ns, host_weights)

        same_text(self, out, reference, ["fit/fit.json", "fit/quality_calibration.json", "deploy/quality.csv",
                                         "report/report.json"])  # fmt: skip
        for folder in ("fit", "deploy"):
            assert_same_maps(self, out / folder, reference / folder)
        self.assertFalse(planted.exists())
        self.assertEqual(temporaries(out), [])

        # a third run finds every step done: it runs none of them and keeps their times
        times = json.loads((out / "times.json").read_text())
        again = log.with_name("again.log")
        run(self._command(out), again, self.tmp)
        printed = again.read_text()
        for step in ("host training (the host's own train.json)", "fit (segq_monai fit on the host's validation cases)",
                     "deploy (host inference.json + segq overlay) on the test cases"):  # fmt: skip
            self.assertIn(f"== {step}: done by an earlier run, skipped", printed)
            self.assertEqual(json.loads((out / "times.json").read_text()).get(step), times.get(step))
        self.assertIn("deploy (host inference.json + segq overlay) on the test cases", times)
        self.assertNotIn("monai.bundle run", printed)  # no step's command line: none ran
        self.assertNotIn("segq_monai fit --host_bundle", printed)



class TestFitDone(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def test_fit_done_reads_the_steps(self):
        """A fit is done when ``calibration`` is among its steps; its first ``fit.json`` already has a filled
        ``calibration`` key (the settings)."""
        self.assertFalse(_fit_done(self.tmp))
        settings = {"alpha": 0.2, "delta": 0.1, "tau": 0.8, "coverage": 0.9}
        for steps, done in (([], False), (["sample", "head"], False), (["sample", "head", "calibration"], True)):
            write_fit(self.tmp, {"calibration": settings, "steps": steps})
            self.assertEqual(_fit_done(self.tmp), done, steps)


class TestRemoveTemporaries(unittest.TestCase):
    @parameterized.expand([(None, ["a", "a/b", "a/b/c"]), (0, ["."]), (1, [".", "a"])])
    def test_depth(self, depth, cleaned):
        """Only ``atomic_path``'s temporary names, down to ``depth`` levels of subfolders."""
        with tempfile.TemporaryDirectory() as tmp:
            folders = [Path(tmp, *parts) for parts in ((), ("a",), ("a", "b"), ("a", "b", "c"))]
            folders[-1].mkdir(parents=True)
            kept = [f / name for f in folders for name in ("x.nii.gz", ".x.tmp", f".x.{'0' * 31}.tmp")]
            for path in kept:
                path.write_text("")
            planted = [plant_temporary(f, "x.nii.gz", ".nii.gz") for f in folders] + [plant_temporary(folders[0], "y")]
            removed = remove_temporaries(tmp, depth)
            expected = [p for p in planted if str(p.parent.relative_to(tmp)) in cleaned or depth is None]
            self.assertEqual(sorted(removed), sorted(expected))
            self.assertTrue(all(p.exists() for p in kept))


if __name__ == "__main__":
    unittest.main()
