"""MONAI Label integration, against a real ``monailabel start_server`` on a loopback port.

A class fixture takes a copy of the bundle trained at toy size (``trained_bundle``, ``tests/conftest.py``), writes a
datastore of three images and one truncated file, starts the server in a subprocess with the app in
``segq_monai/monailabel/app`` and scores the datastore over HTTP. The server is stopped (terminate, then kill) by a
class cleanup, which runs even when the class's set-up fails.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from parameterized import parameterized
from segq_testing import REPO, free_port, read_csv

try:
    import monailabel  # noqa: F401

    HAS_MONAILABEL = True
except ImportError:
    HAS_MONAILABEL = False

APP = REPO / "segq_monai" / "monailabel" / "app"
HOST = "127.0.0.1"
REASON = "MONAI Label is not installed (pip install 'segq-monai[monailabel]')"

# datastore images: name -> (shape, affine offset); shapes not divisible by 16, so padding must be undone
IMAGES = {
    "case_a": ((40, 36), (-10.0, 5.0, 2.0)),
    "case_b": ((32, 44), (3.0, -7.0, 0.0)),
    "case_c": ((36, 30), (0.0, 0.0, 4.0)),
}


def write_disc(path: Path, shape: tuple[int, ...], offset=(0.0, 0.0, 0.0), seed: int = 0) -> None:
    """A 2D image holding a bright disc of random radius, with noise; its label beside it when asked."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(s) - s / 2 for s in shape], indexing="ij")
    label = (np.sqrt(sum(g**2 for g in grids)) < rng.uniform(0.2, 0.4) * min(shape)).astype(np.uint8)
    image = (label * 100 + rng.normal(0, 20, shape)).astype(np.float32)
    affine = np.diag([1.5, 1.2, 2.0, 1.0])
    affine[:3, 3] = offset
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image, affine), path)
    nib.save(nib.Nifti1Image(label, affine), path.with_name(path.name.replace(".nii.gz", "_label.nii.gz")))


def monailabel_command() -> list[str]:
    """MONAI Label's entry point in this interpreter. (Its ``monailabel`` launcher puts the folder above the venv first
    on ``PYTHONPATH``, which would shadow the code under test when the venv belongs to another checkout.)"""
    return [sys.executable, "-m", "monailabel.main"]


def parse_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
        for part in message.iter_parts()
    }


class _ServerCase(unittest.TestCase):
    """A real MONAI Label server over ``cls.studies`` (started by ``start_server``) and HTTP helpers."""

    @classmethod
    def start_server(cls, conf: list[str], env: dict[str, str] | None = None) -> None:
        """``monailabel start_server`` on ``cls.studies`` with the app (``--conf`` pairs ``conf``, environment
        variables ``env`` besides), stopped by a class cleanup; returns when it answers."""
        # the app folder is copied: start_server writes bin/ lib/ logs/ model/ into it
        cls.app = cls.tmp / "app"
        shutil.copytree(APP, cls.app, ignore=shutil.ignore_patterns("__pycache__", "bin", "lib", "logs", "model"))
        cls.port = free_port()
        cls.url = f"http://{HOST}:{cls.port}"
        env = {
            **os.environ,
            "MONAILABEL_PYEXE": sys.executable,  # the launcher runs `python` from PATH otherwise
            "MONAI_LABEL_AUTO_UPDATE_SCORING": "false",  # scoring runs when the test asks for it
            "MONAI_LABEL_SESSION_PATH": str(cls.tmp / "sessions"),
            **(env or {}),
        }
        cls.log = open(cls.tmp / "server.log", "wb")  # noqa: SIM115 - closed by a class cleanup
        cls.addClassCleanup(cls.log.close)
        cls.server = subprocess.Popen(
            [
                *monailabel_command(),
                "start_server",
                "--app",
                str(cls.app),
                "--studies",
                str(cls.studies),
                *[x for key, value in zip(conf[::2], conf[1::2]) for x in ("--conf", key, value)],
                "--host",
                HOST,
                "--port",
                str(cls.port),
            ],
            stdout=cls.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cls.tmp,
            start_new_session=True,
        )
        cls.addClassCleanup(cls.stop_server)
        cls.wait_for_server(timeout=120)

    # ------------------------------------------------------------------------------------------------ helpers
    @classmethod
    def stop_server(cls):
        """SIGTERM to the server's process group (the server and any scoring subprocess), then SIGKILL."""
        if cls.server.poll() is None:
            os.killpg(cls.server.pid, signal.SIGTERM)
            try:
                cls.server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(cls.server.pid, signal.SIGKILL)
                cls.server.wait(timeout=20)
        try:  # children left behind (a scoring task) share the group
            os.killpg(cls.server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    @classmethod
    def server_log(cls) -> str:
        cls.log.flush()
        return (cls.tmp / "server.log").read_text(errors="replace")[-4000:]

    @classmethod
    def request(cls, method: str, path: str, timeout: float = 60) -> tuple[bytes, str]:
        data = b"" if method == "POST" else None
        req = urllib.request.Request(cls.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.read(), response.headers.get("Content-Type", "")

    @classmethod
    def get_json(cls, path: str):
        return json.loads(cls.request("GET", path)[0])

    @classmethod
    def post_json(cls, path: str):
        return json.loads(cls.request("POST", path)[0])

    @classmethod
    def wait_for_server(cls, timeout: float):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if cls.server.poll() is not None:
                raise RuntimeError(f"monailabel start_server exited with {cls.server.returncode}:\n{cls.server_log()}")
            try:
                cls.get_json("/info/")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise TimeoutError(f"the server did not answer /info/ within {timeout} s:\n{cls.server_log()}")

    @classmethod
    def run_scoring(cls, method: str, timeout: float) -> dict:
        """Scoring runs as a background task (a subprocess of the server): start it, poll /scoring/ until it ends."""
        task = cls.post_json(f"/scoring/{method}")
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = cls.get_json("/scoring/")
            if status["id"] == task["id"] and status["status"] not in ("SUBMITTED", "RUNNING"):
                return status
            time.sleep(0.5)
        raise TimeoutError(f"scoring did not finish within {timeout} s:\n{cls.server_log()}")

    @classmethod
    def wait_for_scores(cls, timeout: float) -> dict:
        """The server reloads the datastore file the scoring subprocess wrote (watchdog): wait until it has."""
        deadline = time.time() + timeout
        while True:
            objects = cls.get_json("/datastore/?output=all")["objects"]
            if all("segq_model_ts" in obj["image"]["info"] for obj in objects.values()) or time.time() > deadline:
                return objects
            time.sleep(0.5)

    def info(self, image_id: str) -> dict:
        return self.datastore[image_id]["image"]["info"]

    def assert_http_error(self, method: str, path: str):
        with self.assertRaises(urllib.error.HTTPError) as ctx:
            self.request(method, path)
        self.assertTrue(400 <= ctx.exception.code < 600, ctx.exception.code)
        self.assertEqual(self.get_json("/info/")["name"], "segq")  # the server still answers
        self.assertIsNone(self.server.poll())


@pytest.fixture(scope="class")
def scored_server(request: pytest.FixtureRequest, trained_bundle_copy: None) -> None:
    """A server with the trained bundle (``cls.root``) over a datastore of ``IMAGES`` and one truncated file, and the
    datastore scored (``cls.scoring``, ``cls.datastore``); the server is stopped by a class cleanup."""
    cls = request.cls
    cls.studies = cls.tmp / "studies"  # the datastore holds the images only (labels stay in source/)
    cls.studies.mkdir()
    for i, (name, (shape, offset)) in enumerate(IMAGES.items()):
        write_disc(cls.tmp / "source" / f"{name}.nii.gz", shape, offset, seed=i)
        shutil.copy(cls.tmp / "source" / f"{name}.nii.gz", cls.studies)
    good = (cls.studies / "case_a.nii.gz").read_bytes()
    (cls.studies / "broken.nii.gz").write_bytes(good[: len(good) // 2])  # truncated gzip

    cls.start_server(["bundle_root", str(cls.root), "num_samples", "3", "device", "cpu"])
    cls.scoring = cls.run_scoring("segq_quality", timeout=120)
    cls.datastore = cls.wait_for_scores(timeout=30)


@unittest.skipUnless(HAS_MONAILABEL, REASON)
@pytest.mark.slow
@pytest.mark.usefixtures("scored_server")
class TestMONAILabelServer(_ServerCase):
    """Scoring, active learning and inference through a real MONAI Label server."""

    # -------------------------------------------------------------------------------------------------- tests
    def test_info_lists_tasks(self):
        info = self.get_json("/info/")
        self.assertIn("segq", info["models"])
        self.assertEqual(info["models"]["segq"]["dimension"], 2)
        self.assertIn("segq_quality", info["scoring"])
        self.assertIn("lowest_quality", info["strategies"])
        self.assertEqual(info["labels"], {"foreground": 1})

    def test_scoring_stores_quality_and_skips_corrupt_image(self):
        self.assertEqual(self.scoring["status"], "DONE", self.server_log())
        self.assertEqual(set(self.datastore), {*IMAGES, "broken"})
        for name in IMAGES:
            info = self.info(name)
            self.assertIsNone(info["segq_error"], name)
            self.assertEqual(len(info["segq_pred_dice"]), 1, name)
            for value in (*info["segq_pred_dice"], info["segq_pred_dice_mean"]):
                self.assertTrue(0.0 <= value <= 1.0, (name, value))
            self.assertAlmostEqual(info["segq_pred_dice_mean"], float(np.mean(info["segq_pred_dice"])), places=6)
            self.assertTrue(0.0 <= info["segq_mean_entropy"] <= math.log(2) + 1e-6, name)
            self.assertEqual(info["segq_flagged"], info["segq_pred_dice_mean"] < 0.8, name)
        broken = self.info("broken")
        self.assertIsNone(broken["segq_pred_dice_mean"])
        self.assertRegex(broken["segq_error"], r"broken\.nii\.gz")
        self.assertTrue(any("skipping image broken" in line for line in self.scoring["details"]), self.scoring)

    def test_strategy_serves_lowest_quality_then_the_next(self):
        scores = {name: self.info(name)["segq_pred_dice_mean"] for name in IMAGES}
        ranked = sorted(scores, key=lambda name: (scores[name], name))
        first = self.post_json("/activelearning/lowest_quality")
        self.assertEqual(first["id"], ranked[0], scores)
        self.assertAlmostEqual(first["segq_pred_dice_mean"], scores[ranked[0]])
        self.assertEqual(Path(first["path"]).name, f"{ranked[0]}.nii.gz")
        # the image just served is passed over, as MONAI Label's strategies pass over recently served images
        second = self.post_json("/activelearning/lowest_quality")
        self.assertEqual(second["id"], ranked[1], scores)

    def test_infer_returns_label_on_input_grid(self):
        name = "case_a"
        body, content_type = self.request("POST", f"/infer/segq?image={name}")
        parts = parse_multipart(body, content_type)
        params = json.loads(parts["params"])
        self.assertTrue(0.0 <= params["pred_dice"][0] <= 1.0)
        self.assertAlmostEqual(params["pred_iou"][0], params["pred_dice"][0] / (2 - params["pred_dice"][0]), places=6)
        label_file = self.tmp / "returned_label.nii.gz"
        label_file.write_bytes(parts["image"])
        source = nib.load(self.tmp / "source" / f"{name}.nii.gz")
        label = nib.load(label_file)
        self.assertEqual(label.shape, source.shape)
        np.testing.assert_allclose(label.affine, source.affine, atol=1e-5)
        values = np.asarray(label.dataobj)
        self.assertTrue(np.issubdtype(values.dtype, np.integer), values.dtype)
        self.assertTrue(set(np.unique(values)) <= {0, 1}, np.unique(values))
        entropy = nib.load(params["maps"]["entropy"])  # written beside the segmentation
        self.assertEqual(Path(params["maps"]["entropy"]).name, f"{name}_entropy.nii.gz")
        self.assertEqual(entropy.shape, source.shape)
        np.testing.assert_allclose(entropy.affine, source.affine, atol=1e-5)
        e = np.asarray(entropy.dataobj)
        self.assertTrue(0.0 <= e.min() and e.max() <= math.log(2) + 1e-6)
        self.assertAlmostEqual(params["mean_entropy"], float(e.mean()), places=5)
        # the maps folder inside the studies folder adds no images to the datastore
        self.assertEqual(set(self.get_json("/datastore/?output=all")["objects"]), {*IMAGES, "broken"})

    def test_unknown_names_and_unreadable_image_give_http_errors(self):
        self.assert_http_error("POST", "/activelearning/no_such_strategy")
        self.assert_http_error("POST", "/infer/no_such_model?image=case_a")
        self.assert_http_error("POST", "/infer/segq?image=broken")


@unittest.skipUnless(HAS_MONAILABEL, REASON)
@pytest.mark.slow
class TestMONAILabelHostFit(_ServerCase):
    """The app with a user's own bundle and the head fitted to it (``--conf host_bundle``, ``--conf fit_dir``): the
    datastore is scored as the fit's deployment scores (its calibration run on the same images, then the fit's
    calibration file: recalibrated Dice, interval, calibrated flag) and ranked by the recalibrated Dice."""

    @classmethod
    def setUpClass(cls):
        from segq_testing import make_host, write_labelled_cases
        from test_fit import run_fit

        from segq_monai.data import write_datalist

        cls.tmp = Path(tempfile.mkdtemp(prefix="segq_monailabel_fit_"))
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        host = make_host("spleen_like", cls.tmp)
        train = write_labelled_cases(cls.tmp / "train", ["t0", "t1"], (16, 16, 12), seed=1)
        cls.studies = cls.tmp / "studies"  # the calibration images: their predicted Dice is in the fit's table
        cal = write_labelled_cases(cls.studies, ["k0", "k1", "k2"], (16, 16, 12), seed=2, label_folder=cls.tmp / "labels")
        datalist = write_datalist(cls.tmp / "datalist.json", {"validation": train, "calibration": cal})
        cls.fit_dir = cls.tmp / "FIT"
        run_fit(host, datalist, cls.fit_dir, "--tau", "0.0")
        cls.start_server(["host_bundle", str(host), "fit_dir", str(cls.fit_dir), "device", "cpu"])
        cls.scoring = cls.run_scoring("segq_quality", timeout=120)
        cls.datastore = cls.wait_for_scores(timeout=30)

    def test_scores_and_ranks_as_deployed(self):
        self.assertEqual(self.scoring["status"], "DONE", self.server_log())
        fit = json.loads((self.fit_dir / "fit.json").read_text())
        lam = fit["calibration"]["acceptance_threshold"]
        saved = json.loads((self.fit_dir / fit["calibration"]["file"]).read_text())["recalibration"]["foreground"]
        table = {Path(r["image"]).name.removesuffix(".nii.gz"): float(r["pred_dice"])
                 for r in read_csv(self.fit_dir / "calibration" / "quality.csv")}  # fmt: skip
        self.assertEqual(set(self.datastore), set(table))
        recalibrated = {}
        for name, raw in table.items():
            info = self.info(name)
            self.assertIsNone(info["segq_error"], name)
            g = float(np.interp(raw, saved["knots_x"], saved["knots_y"]))  # the fit's recalibration, stored whole
            recalibrated[name] = g
            self.assertAlmostEqual(info["segq_pred_dice_raw"][0], raw, places=5)
            self.assertAlmostEqual(info["segq_pred_dice_mean"], g, places=5)
            self.assertAlmostEqual(info["segq_pred_dice_lo"][0], max(0.0, g - saved["half_width"]), places=5)
            self.assertAlmostEqual(info["segq_pred_dice_hi"][0], min(1.0, g + saved["half_width"]), places=5)
            self.assertEqual(info["segq_flagged"], raw < lam, name)  # the calibrated flag, on the raw Dice
        first = self.post_json("/activelearning/lowest_quality")
        self.assertEqual(first["id"], min(recalibrated, key=lambda n: (recalibrated[n], n)))
        self.assertEqual(self.get_json("/info/")["labels"], {"spleen": 1})


@pytest.fixture(scope="class")
def dicomweb_server(request: pytest.FixtureRequest, orthanc: dict[str, str],
                    tmp_path_factory: pytest.TempPathFactory) -> None:  # fmt: skip
    """The app with a fitted host (``spleen_like``) over the real Orthanc (``--studies`` its DICOMweb root): two MR
    series of 16 x 16 x 12 (``cls.series``: SeriesInstanceUID -> the folder written), found by a QIDO filter on their
    patient; the datastore scored (``cls.scoring``, ``cls.datastore``)."""
    import pydicom
    from dicomweb_client.api import DICOMwebClient
    from segq_testing import make_host, write_labelled_cases
    from test_fit import run_fit

    from segq_monai.data import write_datalist
    from segq_monai.dicom.series import write_mr_series

    cls = request.cls
    cls.tmp = tmp_path_factory.mktemp("monailabel_dicomweb")
    cls.host = make_host("spleen_like", cls.tmp)
    train = write_labelled_cases(cls.tmp / "train", ["t0", "t1"], (16, 16, 12), seed=1)
    cal = write_labelled_cases(cls.tmp / "cal", ["k0", "k1", "k2"], (16, 16, 12), seed=2)
    cls.fit_dir = cls.tmp / "FIT"
    run_fit(cls.host, write_datalist(cls.tmp / "datalist.json", {"validation": train, "calibration": cal}),
            cls.fit_dir, "--tau", "0.0")  # fmt: skip
    client, cls.series = DICOMwebClient(url=orthanc["url"]), {}
    for item in write_labelled_cases(cls.tmp / "images", ["ml_a", "ml_b"], (16, 16, 12), seed=3):
        name = Path(item["image"]).name.removesuffix(".nii.gz")
        files = write_mr_series(item["image"], cls.tmp / "series" / name, patient=DICOMWEB_PATIENT, uid_salt=name)
        datasets = [pydicom.dcmread(f) for f in files]
        client.store_instances(datasets)
        cls.series[str(datasets[0].SeriesInstanceUID)] = cls.tmp / "series" / name
    cls.studies = orthanc["url"]
    search = json.dumps({"Modality": "MR", "PatientID": DICOMWEB_PATIENT})
    cls.start_server(["host_bundle", str(cls.host), "fit_dir", str(cls.fit_dir), "device", "cpu"],
                     env={"MONAI_LABEL_DICOMWEB_SEARCH_FILTER": search})  # fmt: skip
    cls.scoring = cls.run_scoring("segq_quality", timeout=240)
    cls.datastore = cls.wait_for_scores(timeout=60)
    from segq_monai.apps.fit import OVERLAYS
    from segq_monai.apps.workflows import run_workflow

    out = cls.tmp / "reference"  # the deploy overlay on the same series folders: the reference predicted Dice
    run_workflow(cls.host, [cls.host / "configs" / "inference.json", OVERLAYS / "segq_overlay.json"],
                 **{"segq#fit_dir": str(cls.fit_dir), "datalist": [str(p) for p in cls.series.values()],
                    "output_dir": str(out), "device": "$torch.device('cpu')"})  # fmt: skip
    cls.reference = {Path(r["image"]).name: float(r["pred_dice"]) for r in read_csv(out / "quality.csv")}


DICOMWEB_PATIENT = "SEGQ_MONAILABEL"


@unittest.skipUnless(HAS_MONAILABEL, REASON)
@pytest.mark.slow
@pytest.mark.usefixtures("dicomweb_server")
class TestMONAILabelOverDICOMweb(_ServerCase):
    """MONAI Label with ``--studies`` a PACS (Orthanc over DICOMweb): the series are scored as the deploy overlay
    scores the same series folders (the host, its fit), and the strategy serves the lowest predicted Dice."""

    def test_scores_equal_the_deployment_and_the_strategy_picks_the_lowest(self):
        self.assertEqual(self.scoring["status"], "DONE", self.server_log())
        self.assertEqual(set(self.datastore), set(self.series))
        scores = {}
        for uid, folder in self.series.items():
            info = self.info(uid)
            self.assertIsNone(info["segq_error"], uid)
            scores[uid] = info["segq_pred_dice_mean"]
            self.assertAlmostEqual(scores[uid], self.reference[folder.name], places=4)
        first = self.post_json("/activelearning/lowest_quality")
        self.assertEqual(first["id"], min(scores, key=lambda uid: (scores[uid], uid)))

    def test_infer_on_a_pacs_series(self):
        from segq_monai.dicom.series import check_series_folder, series_affine

        uid, folder = sorted(self.series.items())[0]
        body, content_type = self.request("POST", f"/infer/segq?image={uid}", timeout=120)
        parts = parse_multipart(body, content_type)
        params = json.loads(parts["params"])
        self.assertAlmostEqual(params["pred_dice"][0], self.reference[folder.name], places=4)
        label_file = self.tmp / "returned_label.nii.gz"
        label_file.write_bytes(parts["image"])
        label = nib.load(label_file)
        self.assertEqual(label.shape, (16, 16, 12))  # the series' grid: columns, rows, slices
        np.testing.assert_allclose(label.affine, series_affine(check_series_folder(folder)), atol=1e-4)
        self.assertTrue(set(np.unique(np.asarray(label.dataobj))) <= {0, 1})


@unittest.skipUnless(HAS_MONAILABEL, REASON)
@pytest.mark.slow
@pytest.mark.usefixtures("trained_bundle_copy")
class TestQualityScoringInProcess(unittest.TestCase):
    """``QualityScoring`` on a ``LocalDatastore`` in this process: rescoring skips images scored by the same model."""

    def test_rescoring_skips_scored_images(self):
        from monailabel.datastore.local import LocalDatastore

        from segq_monai.monailabel import QUALITY_KEY, QualityScoring, SegQPipeline

        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            for i, name in enumerate(("x", "y")):
                write_disc(tmp / "source" / f"{name}.nii.gz", (24, 20), seed=i)
            (tmp / "studies").mkdir()
            for name in ("x", "y"):
                shutil.copy(tmp / "source" / f"{name}.nii.gz", tmp / "studies")
            (tmp / "studies" / "z.nii.gz").write_bytes(b"not an image")
            datastore = LocalDatastore(str(tmp / "studies"), extensions=("*.nii.gz",))
            scoring = QualityScoring(SegQPipeline(self.root, device="cpu", overrides={"num_samples": 2}))
            first = scoring({}, datastore)
            self.assertEqual((first["total"], first["skipped"], first["executed"]), (3, 0, 2))
            self.assertEqual(set(first["failed"]), {"z"})
            second = scoring({}, datastore)  # same model: x and y skipped, z retried
            self.assertEqual((second["skipped"], second["executed"], set(second["failed"])), (2, 0, {"z"}))
            forced = scoring({"force": True, "max_samples": 1}, datastore)
            self.assertEqual(forced["executed"] + len(forced["failed"]), 1)
            self.assertIsNotNone(datastore.get_image_info("x")[QUALITY_KEY])


class _Datastore:
    """The two datastore calls a strategy makes, over a dict ``{image_id: info}``."""

    def __init__(self, infos: dict[str, dict]):
        self.infos = infos

    def get_unlabeled_images(self, label_tag=None, labels=None):
        return list(self.infos)

    def get_image_info(self, image_id):
        return dict(self.infos[image_id])


NOW = int(time.time())
K = "segq_pred_dice_mean"


@unittest.skipUnless(HAS_MONAILABEL, REASON)
class TestLowestQualityStrategy(unittest.TestCase):
    @parameterized.expand(
        [
            ("lowest_wins", {"a": {K: 0.9}, "b": {K: 0.2}, "c": {K: 0.5}}, "b"),
            ("tie_broken_by_id", {"b": {K: 0.3}, "a": {K: 0.3}, "c": {K: 0.7}}, "a"),
            ("recently_served_passed_over", {"a": {K: 0.1, "strategy": {"s": {"ts": NOW - 60}}}, "b": {K: 0.6}}, "b"),
            (
                "served_long_ago_counts_as_never",
                {"a": {K: 0.1, "strategy": {"s": {"ts": NOW - 2 * 86400}}}, "b": {K: 0.6}},
                "a",
            ),
            ("other_strategy_does_not_count", {"a": {K: 0.1, "strategy": {"other": {"ts": NOW}}}, "b": {K: 0.6}}, "a"),
            (
                "all_served_least_recent_first",
                {
                    "a": {K: 0.1, "strategy": {"s": {"ts": NOW - 10}}},
                    "b": {K: 0.6, "strategy": {"s": {"ts": NOW - 500}}},
                },
                "b",
            ),
            ("unscored_after_scored", {"a": {}, "b": {K: 0.95}}, "b"),
            ("unscored_when_nothing_scored", {"a": {}, "b": {}}, "a"),
            ("unreadable_never_served", {"a": {K: None, "segq_error": "ValueError: cannot read"}, "b": {K: 0.9}}, "b"),
            ("nothing_left", {}, None),
            ("only_unreadable", {"a": {"segq_error": "x"}}, None),
        ]
    )
    def test_selection(self, _, infos, expected):
        from segq_monai.monailabel import LowestQualityStrategy

        result = LowestQualityStrategy()({"strategy": "s"}, _Datastore(infos))
        self.assertEqual(result["id"] if result else None, expected)


if __name__ == "__main__":
    unittest.main()
