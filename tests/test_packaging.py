"""segq-monai as an installed package: the wheel, a fresh virtual environment, the shipped files, the CLI.

``TestWheel`` builds the wheel from a copy of the source tree, installs it with ``--no-deps`` into a fresh
virtual environment whose dependencies come from this one (a ``.pth`` file: nothing is downloaded), and runs
the installed commands from a folder outside the checkout, without ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
import unittest
import zipfile
from pathlib import Path

import pytest
from segq_testing import REPO, read_csv, untrained_weights

# What a user runs, by its path in the wheel and in the repository (the one source).
SHIPPED = {
    "segq_monai/_bundle/configs/inference.json": "bundle/configs/inference.json",
    "segq_monai/_bundle/configs/train_segmentation.json": "bundle/configs/train_segmentation.json",
    "segq_monai/_bundle/configs/metadata.json": "bundle/configs/metadata.json",
    "segq_monai/_bundle/configs/logging.conf": "bundle/configs/logging.conf",
    "segq_monai/_bundle/docs/README.md": "bundle/docs/README.md",
    "segq_monai/_bundle/docs/data_license.txt": "bundle/docs/data_license.txt",
    "segq_monai/_bundle/LICENSE": "LICENSE",
    "segq_monai/_configs/segq_overlay.json": "configs/segq_overlay.json",
    "segq_monai/_configs/fit_sample.json": "configs/fit_sample.json",
    "segq_monai/_bundle/configs/aleatoric_network.json": "bundle/configs/aleatoric_network.json",
    "segq_monai/_configs/schema/meta_schema.json": "configs/schema/meta_schema.json",
    "segq_monai/demo_data/dataset.json": "segq_monai/demo_data/dataset.json",
    "segq_monai/demo_data/mni152/dataset.json": "segq_monai/demo_data/mni152/dataset.json",
    "segq_monai/evaluation/templates/cohort.html.j2": "segq_monai/evaluation/templates/cohort.html.j2",
    "segq_monai/monailabel/app/main.py": "segq_monai/monailabel/app/main.py",
}
OVERLAYS = sorted(p.stem for p in (REPO / "configs").glob("*.json"))
PATH_NAMES = ["package", "bundle_root", "bundle_configs", *OVERLAYS, "schema", "demo_datalist", "monailabel_app"]


pytestmark = pytest.mark.slow


def _source_copy(dest: Path) -> Path:
    """The files a wheel is built from, copied (symbolic links kept) to ``dest``, plus a stray weight file."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "segq_monai", dest / "segq_monai", symlinks=True, ignore=ignore)
    shutil.copytree(REPO / "configs", dest / "configs", symlinks=True, ignore=ignore)
    shutil.copytree(REPO / "bundle", dest / "bundle", symlinks=True,
                    ignore=shutil.ignore_patterns("models", "eval", "stage2_data"))  # fmt: skip
    stray = dest / "bundle" / "models" / "fold0" / "model.pt"  # trained weights must not become package data
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"weights")
    return dest


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time (ns)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}  # fmt: skip


class TestWheel(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp())
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        (cls.tmp / "src").mkdir()
        src = _source_copy(cls.tmp / "src")
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(cls.tmp / "dist"),
                        str(src)], check=True, capture_output=True)  # fmt: skip
        (cls.wheel,) = (cls.tmp / "dist").glob("segq_monai-*.whl")
        venv = cls.tmp / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        cls.python = venv / "bin" / "python"
        purelib = subprocess.run([str(cls.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
        cls.site = Path(purelib)
        cls.env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run([*pip, "--python", str(cls.python), "install", "--no-deps", "--no-index", str(cls.wheel)],
                       check=True, capture_output=True, env=cls.env)  # fmt: skip
        # then this environment's packages (torch, MONAI, ...) as plain path entries, after the fresh site-packages:
        # their .pth files are not run, so the checkout's editable segq_monai stays unseen
        deps = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
        (cls.site / "_segq_test_deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
        cls.cli = venv / "bin" / "segq-monai"
        cls.cwd = cls.tmp / "elsewhere"
        cls.cwd.mkdir()
        cls.paths = subprocess.run([str(cls.cli), "paths", "--json"], capture_output=True, text=True, cwd=cls.cwd,
                                   env=cls.env)  # fmt: skip

    def _run(self, *command: str) -> subprocess.CompletedProcess:
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.cwd, env=self.env)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        return result

    def test_wheel_holds_what_a_user_runs_and_no_weights(self):
        names = set(zipfile.ZipFile(self.wheel).namelist())
        for inside, source in SHIPPED.items():
            self.assertIn(inside, names)
            self.assertEqual(zipfile.ZipFile(self.wheel).read(inside), (REPO / source).read_bytes(), inside)
        bundle_configs = {p.name for p in (REPO / "bundle" / "configs").iterdir()}
        self.assertEqual({n.split("/")[-1] for n in names if n.startswith("segq_monai/_bundle/configs/")},
                         bundle_configs)  # fmt: skip
        self.assertEqual([n for n in names if n.endswith(".pt") or "/models/" in n], [])

    def test_installed_package_and_paths(self):
        self.assertEqual(self.paths.returncode, 0, self.paths.stderr[-3000:])
        found = json.loads(self.paths.stdout)
        self.assertEqual(list(found), PATH_NAMES)
        self.assertEqual(Path(found["package"]), self.site / "segq_monai")  # the wheel's copy, not the checkout
        for name, path in found.items():
            self.assertTrue(Path(path).is_relative_to(self.site / "segq_monai"), (name, path))
            self.assertTrue(Path(path).exists(), (name, path))
        self.assertFalse((self.site / "torch").exists() or (self.site / "monai").exists())  # nothing downloaded

    def test_inference_with_the_shipped_bundle(self):
        """``python -m monai.bundle run`` on the shipped bundle (its paths from ``segq-monai paths``), 2 demo cases,
        T = 2, seeded untrained weights; nothing is written into the installed package."""
        found = json.loads(self.paths.stdout)
        root, configs = Path(found["bundle_root"]), Path(found["bundle_configs"])
        models, out = self.tmp / "models", self.tmp / "inference"
        untrained_weights(configs / "inference.json", models)
        demo = json.loads(Path(found["demo_datalist"]).read_text())
        base = Path(found["demo_datalist"]).parent
        datalist = self.tmp / "two_cases.json"
        datalist.write_text(json.dumps({"testing": [{"image": str(base / c["image"])} for c in demo["training"][:2]]}))
        before = _tree(self.site / "segq_monai")
        self._run(str(self.python), "-m", "monai.bundle", "run", "--bundle_root", str(root),
                  "--config_file", str(configs / "inference.json"), "--meta_file", str(configs / "metadata.json"),
                  "--logging_file", str(configs / "logging.conf"), "--ckpt_dir", str(models),
                  "--datalist", str(datalist), "--output_dir", str(out), "--num_samples", "2",
                  "--device", "cpu")  # fmt: skip
        rows = read_csv(out / "quality.csv")
        self.assertEqual([r["image"] for r in rows], [str(base / c["image"]) for c in demo["training"][:2]])
        for r in rows:
            self.assertTrue(0.0 <= float(r["pred_dice"]) <= 1.0, r)
        case = Path(demo["training"][0]["image"]).name.removesuffix(".nii.gz")
        self.assertTrue((out / case / f"{case}_entropy.nii.gz").is_file())
        self.assertEqual(_tree(self.site / "segq_monai"), before)  # the installed package is only read


if __name__ == "__main__":
    unittest.main()
