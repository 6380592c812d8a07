"""Fixtures shared by the test modules; plain helpers live in ``segq_testing``.

``orthanc``: a real Orthanc PACS with its DICOMweb plugin on 127.0.0.1 (Debian's ``orthanc`` and
``orthanc-dicomweb``, installed by ``.ci/run``), with its storage in pytest's temporary folder, started once per test
run and stopped after; without it the tests that use it are skipped, except under CI (``CI=true``), where they fail.

The bundle trained at toy size (:func:`segq_testing.train_bundle`) is built once per test run and read by the
bundle's, the multi-GPU overlays' and MONAI Label's tests. A test class that writes (weights, outputs, files beside
the data) takes its own copy with ``@pytest.mark.usefixtures("trained_bundle_copy")``.

:data:`command_server.SERVERS`: two processes that paid the imports once and fork a command line each (``python -m
monai.bundle run ...`` in a second instead of six), stopped after the test run.

Files a test makes with ``tempfile`` land in pytest's temporary folder (pruned by pytest), not in ``/tmp``.

``example3d_run``: ``python -m segq_monai example3d`` at toy size, run once per test run, one thread; read by
``test_example3d`` and, as the uninterrupted reference, by ``test_kill_resume``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from command_server import SERVERS
from segq_testing import EXAMPLE3D_TOY, free_port, train_bundle

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
#: the test PACS refuses SEG objects of the first patient and SR objects of the second, as a PACS refuses what it does
#: not accept (a rejected STOW)
REJECTING_PATIENT, REJECTING_SR_PATIENT = "SEGQ_REJECT_SEG", "SEGQ_REJECT_SR"
_FILTER = f"""function ReceivedInstanceFilter(dicom, origin, info)
  if dicom.Modality == 'SEG' and dicom.PatientID == '{REJECTING_PATIENT}' then
    return false
  end
  if dicom.Modality == 'SR' and dicom.PatientID == '{REJECTING_SR_PATIENT}' then
    return false
  end
  return true
end
"""


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The root of the bundle trained at toy size (its folder's ``data/`` beside it), once per test run; read only."""
    return train_bundle(tmp_path_factory.mktemp("trained_bundle"))


@pytest.fixture(scope="class")
def trained_bundle_copy(request: pytest.FixtureRequest, trained_bundle: Path,
                        tmp_path_factory: pytest.TempPathFactory) -> None:  # fmt: skip
    """A test class's own copy of the trained bundle's folder, set on the class as ``tmp`` (the folder), ``root``
    (its bundle root) and ``datalist`` (its ``data/datalist.json``)."""
    tmp = tmp_path_factory.mktemp(request.cls.__name__)
    shutil.copytree(trained_bundle.parent, tmp, dirs_exist_ok=True)
    request.cls.tmp, request.cls.root, request.cls.datalist = tmp, tmp / "bundle", tmp / "data" / "datalist.json"


@pytest.fixture(autouse=True, scope="session")
def _temporary_files_in_pytests_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``tempfile``'s folders and files (``mkdtemp`` in a test's ``setUp``) go into pytest's temporary folder, which
    pytest prunes (it keeps the last three runs'), not into ``/tmp``, where a test without clean-up would leave them."""
    tempfile.tempdir = str(tmp_path_factory.mktemp("tempfile"))
    yield
    tempfile.tempdir = None


@pytest.fixture(autouse=True, scope="session")
def _stop_command_servers() -> Iterator[None]:
    """:data:`command_server.SERVERS` stop after the test run."""
    yield
    SERVERS.close()


@pytest.fixture(scope="session")
def example3d_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[int, str], Path]:
    """``python -m segq_monai example3d`` (:data:`segq_testing.EXAMPLE3D_TOY`) through its real command line (forked
    from :data:`command_server.SERVERS`), in a folder of its own, one thread: ((exit code, output), its
    ``--output_dir``); read only."""
    tmp = tmp_path_factory.mktemp("example3d")
    out = tmp / "out"
    result = SERVERS.run(["-m", "segq_monai", "example3d", "--output_dir", str(out), *EXAMPLE3D_TOY], tmp,
                         OMP_NUM_THREADS="1")  # fmt: skip
    return result, out


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A running Orthanc on 127.0.0.1 for the test run: ``{"url": its DICOMweb root, "rest": its REST root}``; SEG
    objects of the patient :data:`REJECTING_PATIENT` and SR objects of :data:`REJECTING_SR_PATIENT` are rejected (a Lua
    ``ReceivedInstanceFilter``)."""
    if not (ORTHANC.is_file() and DICOMWEB_PLUGIN.is_file()):
        if os.environ.get("CI", "").lower() == "true":
            raise AssertionError("Orthanc or its DICOMweb plugin is missing under CI; .ci/run installs them "
                                 "(apt-get install orthanc orthanc-dicomweb).")  # fmt: skip
        pytest.skip("Orthanc with its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)")
    folder = tmp_path_factory.mktemp("orthanc")
    http, dicom = free_port(), free_port()
    (folder / "filter.lua").write_text(_FILTER)
    config = {
        "Name": "segq-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
        "HttpPort": http, "DicomPort": dicom, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "Plugins": [str(DICOMWEB_PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "LuaScripts": [str(folder / "filter.lua")],
    }  # fmt: skip
    (folder / "orthanc.json").write_text(json.dumps(config, indent=1))
    log = open(folder / "orthanc.log", "w")
    server = subprocess.Popen([str(ORTHANC), str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    rest = f"http://127.0.0.1:{http}"
    try:
        for _ in range(300):
            try:
                if requests.get(f"{rest}/system", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None:
                raise AssertionError(f"Orthanc stopped on start: {(folder / 'orthanc.log').read_text()[-2000:]}")
            time.sleep(0.1)
        else:
            raise AssertionError("Orthanc did not answer within 30 s")
        yield {"url": f"{rest}/dicom-web", "rest": rest}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
