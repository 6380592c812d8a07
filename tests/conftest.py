"""Fixtures shared by the test modules; plain helpers live in ``segq_testing``.

The bundle trained at toy size (:func:`segq_testing.train_bundle`) is built once per test run and read by the
bundle's, the multi-GPU overlays' and MONAI Label's tests. A test class that writes (weights, outputs, files beside
the data) takes its own copy with ``@pytest.mark.usefixtures("trained_bundle_copy")``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from segq_testing import train_bundle


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
