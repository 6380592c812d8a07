"""Crash-safe runs: training killed mid-run resumes to the same weights; sampling skips cases already written;
checkpoints load with ``weights_only=True``.

Training runs in a process of its own (``python -m monai.bundle run``, forked from :data:`command_server.SERVERS`),
is killed with SIGKILL once the 2nd epoch's checkpoint exists, and is started again with the same command; its final weights must equal, bit for bit, those
of a run never interrupted.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import tempfile
import time
import unittest
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader
from monai.networks.nets import UNet
from parameterized import parameterized
from command_server import SERVERS
from segq_testing import copy_bundle, read_csv, workflow, write_cases

import segq_monai.data.outputs  # noqa: F401  (the expressions below name it)
from segq_monai.data import write_datalist
from segq_monai.data.outputs import pending_items
from segq_monai.handlers.resume import EpochSeed, ResumeCheckpoint, epoch_seed, latest_checkpoint
from segq_monai.utils.errors import causes

EPOCHS = 4
# MLflow's sqlite store costs seconds per epoch: off in these tests
TRAIN = {"fold": 0, "num_folds": 2, "epochs": EPOCHS, "batch_size": 2, "device": "cpu", "train#handlers#2#_disabled_": True}
# prints each epoch and sleeps after its checkpoint, so that the test can kill the run between epochs
SLOW = {
    "run": [
        (
            "$@train#trainer.add_event_handler(ignite.engine.Events.EPOCH_COMPLETED, "
            "lambda e: print('finished epoch', e.state.epoch, flush=True) or os.system('sleep 0.3'))"
        ),
        "$@train#trainer.run()",
    ]
}


class Pickled:
    """Not a tensor: ``torch.load(weights_only=True)`` must refuse a checkpoint holding one."""


@pytest.mark.slow
class TestCrashSafeRuns(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp())
        cls.root = copy_bundle(cls.tmp)
        (cls.root / "configs" / "slow.json").write_text(json.dumps(SLOW))
        cls.datalist = cls.tmp / "data" / "datalist.json"
        write_datalist(cls.datalist, {"training": write_cases(cls.tmp / "data", [f"c{i}" for i in range(6)], (32, 32))})
        cls.ref_models = cls.tmp / "ref_models"
        workflow(["train_segmentation.json"], cls.root, datalist=str(cls.datalist), ckpt_dir=str(cls.ref_models),
                 **TRAIN)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def _train_command(self) -> list[str]:
        configs = [str(self.root / "configs" / c) for c in ("train_segmentation.json", "slow.json")]
        args = ["-m", "monai.bundle", "run", "--bundle_root", str(self.root),
                "--config_file", str(configs), "--meta_file", str(self.root / "configs" / "metadata.json"),
                "--datalist", str(self.datalist)]
        for k, v in TRAIN.items():
            args += [f"--{k}", str(v)]
        return args

    def test_killed_training_resumes_to_the_same_weights(self):
        resume_dir = self.root / "models" / "fold0" / "resume"
        log = self.tmp / "killed.log"
        started = SERVERS.start(self._train_command(), self.tmp, log)
        while started.running() and not (resume_dir / "checkpoint_epoch=2.pt").exists():
            time.sleep(0.01)
        os.killpg(started.pid, signal.SIGKILL)
        self.assertEqual(started.wait(), -signal.SIGKILL, log.read_text()[-3000:])
        self.assertFalse((self.root / "models" / "fold0" / "model.pt").exists())
        newest = latest_checkpoint(resume_dir)
        done = int(Path(newest).stem.split("=")[1])
        self.assertTrue(2 <= done < EPOCHS, newest)
        self.assertFalse([p for p in resume_dir.iterdir() if p.name.endswith(".tmp")])  # nothing half-written

        code, output = SERVERS.run(self._train_command(), self.tmp)
        self.assertEqual(code, 0, output[-3000:])
        epochs = [int(line.split()[-1]) for line in output.splitlines() if line.startswith("finished epoch")]
        self.assertEqual(epochs, list(range(done + 1, EPOCHS + 1)))  # resumed, not retrained
        resumed = torch.load(self.root / "models" / "fold0" / "model.pt", weights_only=True)
        reference = torch.load(self.ref_models / "fold0" / "model.pt", weights_only=True)
        torch.testing.assert_close(resumed, reference, rtol=0, atol=0)
        self.assertFalse(resume_dir.exists())  # a completed run leaves only its final model

    def test_sampling_skips_written_cases(self):
        common = {"datalist": str(self.datalist), "ckpt_dir": str(self.ref_models), "fold": 0, "num_folds": 2,
                  "num_samples": 2, "batch_size": 1, "device": "cpu"}
        full, rerun = self.tmp / "sample_full", self.tmp / "sample_rerun"
        workflow(["inference.json", "sample.json"], self.root, output_dir=str(full), **common)
        shutil.copytree(full, rerun)
        # fold 0 holds out c0, c1, c2; as if killed while writing c1: c0 complete, c1's maps written but not its
        # sidecar, c2 not started
        for name in ("quality.csv", "stage2_datalist.json", "c1/c1_quality.json"):
            (rerun / name).unlink()
        shutil.rmtree(rerun / "c2")
        untouched = {p: p.stat().st_mtime_ns for p in (rerun / "c0").iterdir()}
        skip = {"dataset#data": "$segq_monai.data.outputs.pending_items(@items, @output_dir, @map_keys)",
                "segq#writer#items": "@items"}

        wf = workflow(["inference.json", "sample.json"], self.root, output_dir=str(rerun), **common, **skip)
        self.assertEqual(wf.parser.get_parsed_content("evaluator").state.iteration, 2)  # c1 and c2 only
        self.assertEqual({p: p.stat().st_mtime_ns for p in (rerun / "c0").iterdir()}, untouched)
        self.assertEqual(read_csv(rerun / "quality.csv"), read_csv(full / "quality.csv"))
        self.assertEqual(json.loads((rerun / "stage2_datalist.json").read_text()),
                         json.loads((full / "stage2_datalist.json").read_text()))

        # every case written: the last is computed again, so that the run completes and writes quality.csv
        (rerun / "quality.csv").unlink()
        wf = workflow(["inference.json", "sample.json"], self.root, output_dir=str(rerun), **common, **skip)
        self.assertEqual(wf.parser.get_parsed_content("evaluator").state.iteration, 1)
        self.assertEqual(read_csv(rerun / "quality.csv"), read_csv(full / "quality.csv"))
        self.assertFalse(list(rerun.glob("**/*.tmp*")))

    def test_missing_case_without_sidecar_is_an_error(self):
        out = self.tmp / "sample_partial"
        common = {"datalist": str(self.datalist), "ckpt_dir": str(self.ref_models), "fold": 0, "num_folds": 2,
                  "num_samples": 1, "device": "cpu", "output_dir": str(out)}
        with self.assertRaises(Exception) as ctx:
            workflow(["inference.json", "sample.json"], self.root, **common,
                     **{"dataset#data": "$@items[1:]", "segq#writer#items": "@items"})
        self.assertRegex("".join(map(str, causes(ctx.exception))), r"'c0' .* has no result")
        self.assertFalse((out / "quality.csv").exists())

    @parameterized.expand([("monai_checkpoint_loader",), ("resume_checkpoint",)])
    def test_checkpoint_with_pickled_object_is_refused(self, loader):
        net = UNet(2, 1, 2, channels=(4, 8), strides=(2,))
        path = self.tmp / "resume_evil" / "checkpoint_epoch=1.pt"
        path.parent.mkdir(exist_ok=True)
        torch.save({"model": net.state_dict(), "trainer": {"epoch": 1}, "extra": Pickled()}, path)
        engine = Engine(lambda e, b: None)
        engine.state.max_epochs = 2
        handler = (CheckpointLoader(str(path), {"model": net}) if loader == "monai_checkpoint_loader"
                   else ResumeCheckpoint(path.parent, {"model": net}))
        with self.assertRaisesRegex(pickle.UnpicklingError, "Weights only load failed"):
            handler(engine) if loader == "monai_checkpoint_loader" else handler.load(engine)



class TestHelpers(unittest.TestCase):
    def test_latest_checkpoint(self):
        with tempfile.TemporaryDirectory() as tmp:
            self.assertIsNone(latest_checkpoint(Path(tmp) / "missing"))
            for name in ("checkpoint_epoch=2.pt", "checkpoint_epoch=10.pt", ".checkpoint_epoch=11.pt.ab.tmp",
                         "checkpoint_final.pt", "model.pt"):
                (Path(tmp) / name).write_bytes(b"")
            self.assertEqual(latest_checkpoint(tmp), os.path.join(tmp, "checkpoint_epoch=10.pt"))

    def test_resume_checkpoint_files(self):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "resume"
            folder.mkdir()
            for stale in ("checkpoint_epoch=9.pt", ".checkpoint_epoch=10.pt.0123.tmp"):  # an abandoned run's
                (folder / stale).write_bytes(b"")
            net = torch.nn.Linear(2, 1)
            opt = torch.optim.SGD(net.parameters(), lr=0.1)

            def trainer(resume: bool, keep: bool) -> tuple[Engine, list, list]:
                engine = Engine(lambda e, b: (opt.zero_grad(), net(torch.ones(1, 2)).sum().backward(), opt.step()))
                ResumeCheckpoint(folder, {"model": net, "optimizer": opt}, resume=resume, keep=keep).attach(engine)
                seen, epochs = [], []
                engine.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs.append(e.state.epoch))
                engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: seen.append(sorted(os.listdir(folder))))
                return engine, seen, epochs

            engine, seen, _ = trainer(resume=False, keep=True)
            engine.run([0, 1], max_epochs=3)
            self.assertEqual(seen[-1], ["checkpoint_epoch=2.pt", "checkpoint_epoch=3.pt"])  # stale files gone
            weights = net.weight.detach().clone()
            engine, _, epochs = trainer(resume=True, keep=False)
            engine.run([0, 1], max_epochs=4)
            self.assertEqual(epochs, [4])  # resumed after epoch 3
            self.assertEqual(engine.state.iteration, 8)
            self.assertFalse(torch.equal(net.weight, weights))
            self.assertFalse(folder.exists())  # completed: removed

    def test_epoch_seed(self):
        self.assertEqual(epoch_seed(7, 3), 10)
        self.assertEqual(epoch_seed(7, 3, rank=2), 10 + 2 * 100003)
        self.assertEqual(epoch_seed(2**32 - 1, 1), 0)
        self.assertEqual(EpochSeed(5).seed, 5)

    @parameterized.expand([
        ("none_done", [], 1, 1, ["a", "b", "c"]),
        ("some_done", ["a", "c"], 1, 1, ["b"]),
        ("all_done", ["a", "b", "c"], 1, 1, ["c"]),  # the last is computed again so that the run completes
        ("all_done_two_ranks", ["a", "b", "c"], 2, 1, ["b", "c"]),
        ("maps_without_sidecar", ["a:seg,entropy"], 1, 1, ["a", "b", "c"]),
        ("sidecar_one_map_missing", ["a:seg,quality.json", "b"], 1, 1, ["a", "c"]),
        # batches of 2, [a, b] and [c]: a batch is skipped whole or computed whole, as an uninterrupted run batched it
        ("batch_half_done", ["a"], 1, 2, ["a", "b", "c"]),
        ("batch_done", ["a", "b"], 1, 2, ["c"]),
        ("last_batch_done", ["a", "c"], 1, 2, ["a", "b"]),
        ("all_batches_done", ["a", "b", "c"], 1, 2, ["c"]),
        ("all_batches_done_two_ranks", ["a", "b", "c"], 2, 2, ["a", "b", "c"]),  # [c] alone is 1 case
    ])
    def test_pending_items(self, _, done, min_items, batch_size, expected):
        """``done``: cases written in full, or ``case:files`` to write only those files of the case."""
        with tempfile.TemporaryDirectory() as tmp:
            items = [{"image": f"/data/{c}.nii.gz"} for c in "abc"]
            for spec in done:
                case, _, files = spec.partition(":")
                (Path(tmp) / case).mkdir()
                for suffix in (files or "seg,entropy,quality.json").split(","):
                    name = f"{case}_{suffix}" + ("" if suffix.endswith(".json") else ".nii.gz")
                    (Path(tmp) / case / name).write_bytes(b"")
            pending = pending_items(items, tmp, ["seg", "entropy"], min_items=min_items, batch_size=batch_size)
            self.assertEqual([Path(i["image"]).name[0] for i in pending], expected)


if __name__ == "__main__":
    unittest.main()
