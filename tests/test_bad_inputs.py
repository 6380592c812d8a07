"""Bad input ends on the project's own words: named bad inputs, each run through the real command in its own process.

Each row of :data:`ROWS` names one bad input, the command it is given to (``bundle``: the segq bundle's
``python -m monai.bundle run``; ``fit``: ``python -m segq_monai fit``; ``deploy``: ``python -m monai.bundle run`` on a
fitted host with ``configs/segq_overlay.json``; ``segq``: another ``python -m segq_monai`` command), what the
message says and the fix it names. The test runs the command line as a user would (stdout and stderr in one stream,
as a terminal shows them; in a process forked from a :class:`command_server.CommandServer`, which paid the imports
once) and checks that it exits non-zero and that its last lines, after the header of :mod:`segq_monai.utils.errors`,
name the file or id and hold the message and the fix; segq's own commands print no traceback. ``docs/refusals.md`` is this table (``SEGQ_WRITE_DOCS=1`` rewrites it).

A new row needs its name, command, a ``make(ctx)`` that builds the input and returns the extra command-line
arguments and the file or id the message must name, and the message and fix excerpts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import unittest
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import nibabel as nib
import numpy as np
import pytest
import torch
from command_server import SERVERS
from segq_testing import REPO, copy_bundle, make_host, untrained_weights, write_cases, write_labelled_cases
from test_fit import TINY, run_fit

from segq_monai.data import load_datalist, write_datalist

OVERLAY = REPO / "configs" / "segq_overlay.json"
DOC = REPO / "docs" / "refusals.md"
#: the headers after which the project's message follows: segq's commands, and monai.bundle run (the excepthook)
HEADERS = ("stopped on bad input (--debug", "segq_monai: the run stopped on bad input")
SHAPE_3D = (16, 16, 12)
#: commands run at once: one per command server
WORKERS = SERVERS.n


class Row(NamedTuple):
    """One named bad input: ``make(ctx)`` builds it and returns (extra arguments, the file or id to be named)."""

    name: str
    command: str
    make: Callable[[Any], tuple[list[str], str]]
    message: str
    fix: str


def _nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> str:
    nib.save(nib.Nifti1Image(array, np.diag([1.5, 1.5, 1.5, 1.0]) if affine is None else affine), path)
    return str(path)


def _datalist(ctx, name: str, content: Any) -> list[str]:
    path = ctx.tmp / f"{name}.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return ["--datalist", str(path)]


def _image_case(name: str, array_of: Callable[[Any], np.ndarray]) -> Callable[[Any], tuple[list[str], str]]:
    """A bundle row: one image made by ``array_of(ctx)`` (2D grid of the good cases) in a ``testing`` datalist."""

    def make(ctx) -> tuple[list[str], str]:
        image = _nifti(ctx.tmp / f"{name}.nii.gz", array_of(ctx))
        return _datalist(ctx, name, {"testing": [{"image": image}]}), image

    return make


def _raw_image(name: str, content: bytes) -> Callable[[Any], tuple[list[str], str]]:
    def make(ctx) -> tuple[list[str], str]:
        image = ctx.tmp / f"{name}.nii.gz"
        image.write_bytes(content)
        return _datalist(ctx, name, {"testing": [{"image": str(image)}]}), str(image)

    return make


def _label_case(name: str, label_of: Callable[[Any], np.ndarray], same_grid: bool = True):
    """A bundle ``evaluate`` row: a good image with the label made by ``label_of(ctx)``."""

    def make(ctx) -> tuple[list[str], str]:
        good = ctx.items[0]
        affine = nib.load(good["label"]).affine if same_grid else np.eye(4)
        label = _nifti(ctx.tmp / f"{name}_label.nii.gz", label_of(ctx), affine)
        args = _datalist(ctx, name, {"testing": [{"image": good["image"], "label": label}]})
        return args + ["--config_file", ctx.configs("inference.json", "evaluate.json")], label

    return make


def _bad_value_label(ctx) -> np.ndarray:
    label = np.asarray(nib.load(ctx.items[0]["label"]).dataobj).copy()
    label[0, 0] = 7
    return label


def _unwritable(ctx) -> tuple[list[str], str]:
    blocker = ctx.tmp / "a_file"
    blocker.write_text("not a folder")
    return ["--output_dir", str(blocker / "out")], str(blocker / "out")


def _full_disk(ctx) -> tuple[list[str], str]:
    disk = ctx.tiny_disk()
    return ["--output_dir", str(disk / "out")], str(disk)


def _fit_datalist_edit(edit: Callable[[Any, dict], str]):
    """A fit row: the good fit datalist, edited by ``edit(ctx, sections)`` (returns the file or id to name)."""

    def make(ctx) -> tuple[list[str], str]:
        sections = {key: load_datalist(ctx.datalist, key) for key in ("validation", "calibration")}
        named = edit(ctx, sections)
        return ["--datalist", str(write_datalist(ctx.tmp / "edited.json", sections))], named

    return make


def _swap_label(ctx, sections: dict, array: np.ndarray, affine: np.ndarray | None = None) -> str:
    label = ctx.tmp / f"label_{array.shape}_{int(array.max())}.nii.gz"
    _nifti(label, array, affine)
    sections["calibration"][1]["label"] = str(label)
    return str(label)


def _rename_image_key(ctx, sections: dict) -> str:
    sections["validation"][0]["img"] = sections["validation"][0].pop("image")
    return "'image'"


def _corrupt_fit_image(ctx, sections: dict) -> str:
    image = ctx.tmp / "corrupt_case.nii.gz"
    image.write_bytes(b"not a nifti file" * 8)
    sections["validation"][0]["image"] = str(image)
    return str(image)


def _host_without_inferer(ctx) -> tuple[list[str], str]:
    host = ctx.tmp / "host_without_inferer"
    shutil.copytree(ctx.host, host)
    config = host / "configs" / "inference.json"
    content = json.loads(config.read_text())
    content["evaluator"]["inferer"] = content.pop("inferer")
    config.write_text(json.dumps(content))
    return ["--host_bundle", str(host)], "'inferer'"


def _fit_copy(ctx, edit: Callable[[Path], None]) -> tuple[list[str], str]:
    fit = ctx.tmp / f"fit_{len(list(ctx.tmp.glob('fit_*')))}"
    shutil.copytree(ctx.fit, fit)
    edit(fit)
    return ["--segq#fit_dir", str(fit)], str(fit)


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    content = json.loads(path.read_text())
    edit(content)
    path.write_text(json.dumps(content))


def _other_head(fit: Path) -> None:
    torch.save({"model": {"weight": torch.zeros(3)}}, fit / "quality_head.pt")


def _truncated_head(fit: Path) -> None:
    head = fit / "quality_head.pt"
    head.write_bytes(head.read_bytes()[:2000])


def _retrained_host(ctx) -> tuple[list[str], str]:
    """The host's weights as after a retraining: a perturbed copy of its checkpoint, loaded in its place."""
    weights = ctx.tmp / "retrained_model.pt"
    state = torch.load(ctx.host / "models" / "model.pt", weights_only=True)
    torch.save({k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}, weights)
    return ["--handlers#0#load_path", str(weights)], str(weights)


def _deploy(edit: Callable[[Path], None], named: str = "fit") -> Callable[[Any], tuple[list[str], str]]:
    def make(ctx) -> tuple[list[str], str]:
        args, fit = _fit_copy(ctx, edit)
        return args, str(Path(fit) / named) if named != "fit" else fit

    return make


ROWS = [
    # the segq bundle: python -m monai.bundle run --config_file bundle/configs/inference.json
    Row("missing image file", "bundle",
        lambda ctx: (_datalist(ctx, "missing", {"testing": [{"image": "nowhere.nii.gz"}]}),
                     str(ctx.tmp / "nowhere.nii.gz")),
        "does not exist", "fix the path, restore the file, or remove the item"),
    Row("corrupt image file", "bundle", _raw_image("corrupt", b"garbage" * 20), "Cannot read",
        "re-export it, or remove it from the datalist"),
    Row("empty image file (0 bytes)", "bundle", _raw_image("empty", b""), "Empty file",
        "re-export it, or remove it from the datalist"),
    Row("NaN image", "bundle", _image_case("nan", lambda ctx: np.full((32, 32), np.nan, np.float32)),
        "holds 1024 NaN/Inf values", "repair the file or remove it from the datalist"),
    Row("5D array", "bundle", _image_case("five_d", lambda ctx: np.ones((4, 4, 4, 2, 2), np.float32)),
        "spatial dimensions", "use 2D images"),
    Row("all-zero image", "bundle", _image_case("zeros", lambda ctx: np.zeros((32, 32), np.float32)),
        "holds only zeros", "re-export it from the original, or remove it from the datalist"),
    Row("label on another grid", "bundle", _label_case("grid", lambda ctx: np.zeros((24, 32), np.uint8), False),
        "does not lie on the grid of its image", "Resample the label onto the image"),
    Row("label values that are not classes", "bundle", _label_case("values", _bad_value_label),
        "values [0, 1, 7]) is not in the host network's classes", "Remap the label values"),
    Row("datalist that is not JSON", "bundle", lambda ctx: (_datalist(ctx, "not_json", "{testing: oops"),
                                                            str(ctx.tmp / "not_json.json")),
        "is not valid JSON", "fix the file or write it with write_datalist"),
    Row("datalist item with a wrong key", "bundle",
        lambda ctx: (_datalist(ctx, "wrong_key", {"testing": [{"img": ctx.items[0]["image"]}]}), "'image'"),
        "has no 'image' (its keys: ['img'])", "name each case's files under ['image']"),
    Row("datalist without the section asked for", "bundle",
        lambda ctx: (["--datalist_key", "validation"], "'validation'"),
        "has no section 'validation'", "Pass one as `key`"),
    Row("two images of one case name", "bundle",
        lambda ctx: (_datalist(ctx, "twice", {"testing": [{"image": ctx.items[0]["image"]},
                                                          {"image": _nifti(ctx.tmp / "a.nii.gz", np.ones((32, 32)))}]}),
                     "'a'"),
        "share the case name", "Give the images distinct file names"),
    Row("unwritable output folder", "bundle", _unwritable, "Cannot write to the output folder",
        "pass a writable --output_dir"),
    Row("full disk", "bundle", _full_disk, "No space left on the disk", "free space there or write to another disk"),
    # python -m segq_monai fit
    Row("fit: datalist that is not JSON", "fit",
        lambda ctx: (_datalist(ctx, "fit_not_json", "[1, 2"), str(ctx.tmp / "fit_not_json.json")),
        "is not valid JSON", "fix the file or write it with write_datalist"),
    Row("fit: datalist without the section asked for", "fit",
        lambda ctx: (["--datalist_key", "testing"], "'testing'"), "has no section 'testing'", "Pass one as `key`"),
    Row("fit: datalist item with a wrong key", "fit",
        _fit_datalist_edit(_rename_image_key),
        "has no 'image'", "name each case's files under ['image']"),
    Row("fit: corrupt image file", "fit", _fit_datalist_edit(_corrupt_fit_image), "Cannot read",
        "re-export it, or remove it from the datalist"),
    Row("fit: label on another grid", "fit",
        _fit_datalist_edit(lambda ctx, s: _swap_label(ctx, s, np.zeros((16, 16, 10), np.uint8))),
        "does not lie on the grid of its image", "ResampleToMatch"),
    Row("fit: an id the overlays need missing from the host (an override it lacks)", "fit", _host_without_inferer,
        "has no id 'inferer'", "--host_override 'inferer="),
    Row("fit: unwritable output folder", "fit", _unwritable, "Cannot write to the output folder",
        "pass a writable --output_dir"),
    # python -m monai.bundle run --config_file "['HOST/configs/inference.json','configs/segq_overlay.json']"
    Row("deploy: fit folder that does not exist", "deploy",
        lambda ctx: (["--segq#fit_dir", str(ctx.tmp / "no_fit")], str(ctx.tmp / "no_fit")),
        "is not a fit folder", "pass that folder as segq#fit_dir"),
    Row("deploy: fit folder of an older format", "deploy",
        _deploy(lambda fit: _edit_json(fit / "fit.json", lambda c: c.pop("host_network"))),
        "of an older or another format (no 'host_network')", "Fit again with python -m segq_monai fit"),
    Row("deploy: quality head checkpoint of another head", "deploy", _deploy(_other_head, "quality_head.pt"),
        "holds the weights of another head", "point segq#fit_dir at the fit folder it belongs to, or refit"),
    Row("deploy: truncated quality head checkpoint", "deploy", _deploy(_truncated_head, "quality_head.pt"),
        "cannot be read", "rerun the fit step that writes it"),
    Row("deploy: calibration file of another fit", "deploy",
        _deploy(lambda fit: _edit_json(fit / "quality_calibration.json",
                                       lambda c: c.update(head_fingerprint="0" * 64)), "quality_calibration.json"),
        "was made for the quality head 0000000000000000", "--recalibrate"),
    Row("deploy: unwritable output folder", "deploy", _unwritable, "Cannot write to the output folder",
        "pass a writable --output_dir"),
    Row("deploy: full disk", "deploy", _full_disk, "No space left on the disk",
        "free space there or write to another disk"),
    Row("deploy: a host whose weights changed since the fit", "deploy", _retrained_host,
        "is not the one the quality head", "--segq#allow_host_change true"),
    # python -m segq_monai demo / example3d / export
    Row("demo: unwritable output folder", "segq", lambda ctx: (["demo", *_unwritable(ctx)[0]], str(ctx.tmp / "a_file" / "out")),
        "Cannot write to the output folder", "pass a writable --output_dir"),
    Row("example3d: unwritable output folder", "segq",
        lambda ctx: (["example3d", *_unwritable(ctx)[0]], str(ctx.tmp / "a_file" / "out")),
        "Cannot write to the output folder", "pass a writable --output_dir"),
    Row("export: a models folder that does not exist", "segq",
        lambda ctx: (["export", "--models_dir", str(ctx.tmp / "no_models"), "--output_dir", str(ctx.tmp / "dist")],
                     str(ctx.tmp / "no_models")),
        "is not a folder", "pass the folder the training wrote"),
]  # fmt: skip


def run_command(args: list[str], cwd: Path, **env: str) -> tuple[int, str]:
    """``python -m MODULE ...`` (``args``) as a user runs it (stdout and stderr in one stream), forked from one of
    the :data:`command_server.SERVERS` (this checkout first on the path)."""
    return SERVERS.run(args, cwd, **env)


def last_message(output: str) -> str | None:
    """What follows the last header of the project's message (the last lines printed); ``None`` without one."""
    at = max(output.rfind(h) for h in HEADERS)
    return None if at < 0 else output[at:].split("\n", 1)[1].strip() if "\n" in output[at:] else ""


class _Context:
    """The good inputs of one command's rows, built once per test class, and each row's scratch folder."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp
        self.tmp = tmp
        self.mounts: list[Path] = []

    def configs(self, *names: str) -> str:
        return "[" + ",".join(f"'{self.bundle / 'configs' / n}'" for n in names) + "]"

    def tiny_disk(self) -> Path:
        """A 16 KiB tmpfs (the test is skipped where none can be mounted)."""
        disk = self.tmp / "tiny_disk"
        disk.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(disk)], capture_output=True)
        if mounted.returncode:
            raise unittest.SkipTest(f"no tmpfs for a full disk here: {mounted.stderr.decode().strip()}")
        self.mounts.append(disk)
        return disk

    def unmount(self) -> None:
        for disk in self.mounts:
            subprocess.run(["umount", str(disk)], capture_output=True)
        self.mounts = []


class _BadInputs:
    """Runs the rows of :data:`ROWS` for ``command``: ``prefix()`` + ``defaults()`` (those a row does not set) + the
    row's arguments. A mixin: each command's ``unittest.TestCase`` names it first."""

    command = ""

    @classmethod
    def setUpClass(cls):
        cls.ctx = _Context(Path(tempfile.mkdtemp(prefix=f"segq_bad_{cls.command}_")))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.ctx.root, ignore_errors=True)

    def prefix(self) -> list[str]:
        return ["-m", "segq_monai"]

    def defaults(self) -> dict[str, str]:
        return {}

    def base(self, extra: list[str]) -> list[str]:
        keys = set(extra[::2])
        return self.prefix() + [x for k, v in self.defaults().items() if k not in keys for x in (k, v)] + extra

    def test_bad_inputs(self):
        rows = [r for r in ROWS if r.command == self.command]
        self.assertTrue(rows)
        runs = []
        try:
            with ThreadPoolExecutor(WORKERS) as pool:  # two command servers: two rows at a time
                for row in rows:
                    self.ctx.tmp = self.ctx.root / row.name.replace(" ", "_").replace(":", "")
                    self.ctx.tmp.mkdir()
                    extra, named = row.make(self.ctx)
                    runs.append((row, named, pool.submit(run_command, self.base(extra), self.ctx.tmp)))
        finally:
            self.ctx.unmount()
        for row, named, run in runs:
            with self.subTest(row.name):
                self.assert_refused(*run.result(), named, row)

    def assert_refused(self, code: int, output: str, named: str, row: Row) -> None:
        tail = "\n".join(output.strip().splitlines()[-12:])
        self.assertNotEqual(code, 0, tail)
        message = last_message(output)
        self.assertIsNotNone(message, f"no project message at the end:\n{tail}")
        for part in (named, row.message, row.fix):
            self.assertIn(part, message, f"{row.name}: the last lines do not say {part!r}:\n{tail}")
        if self.command in ("fit", "segq"):
            self.assertNotIn("Traceback", output)


def _spleen_fit_input(ctx) -> Path:
    """The spleen-like host (random weights) and a datalist of 2 + 2 labelled cases; returns the datalist."""
    ctx.host = make_host("spleen_like", ctx.root)
    data = ctx.root / "data"
    train = write_labelled_cases(data / "train", ["t0", "t1"], SHAPE_3D, seed=1)
    ctx.cases = data / "cal"
    cal = write_labelled_cases(ctx.cases, ["k0", "k1"], SHAPE_3D, seed=2)
    return write_datalist(data / "datalist.json", {"validation": train, "calibration": cal})


@pytest.mark.slow
class TestBundleBadInputs(_BadInputs, unittest.TestCase):
    command = "bundle"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        ctx = cls.ctx
        ctx.bundle = copy_bundle(ctx.root)
        untrained_weights(ctx.bundle / "configs" / "inference.json", ctx.bundle / "models")
        ctx.items = write_cases(ctx.root / "data", ["a", "b"], (32, 32))
        ctx.datalist = write_datalist(ctx.root / "data" / "datalist.json", {"testing": ctx.items})

    def prefix(self) -> list[str]:
        return ["-m", "monai.bundle", "run", "--bundle_root", str(self.ctx.bundle), "--num_samples", "2",
                "--quality_num_samples", "2", "--device", "cpu"]  # fmt: skip

    def defaults(self) -> dict[str, str]:
        return {"--config_file": self.ctx.configs("inference.json"), "--output_dir": str(self.ctx.tmp / "out"),
                "--datalist": str(self.ctx.datalist)}  # fmt: skip


@pytest.mark.slow
class TestFitBadInputs(_BadInputs, unittest.TestCase):
    command = "fit"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ctx.datalist = _spleen_fit_input(cls.ctx)

    def prefix(self) -> list[str]:
        return ["-m", "segq_monai", "fit", *TINY]

    def defaults(self) -> dict[str, str]:
        return {"--host_bundle": str(self.ctx.host), "--output_dir": str(self.ctx.tmp / "FIT"),
                "--datalist": str(self.ctx.datalist)}  # fmt: skip


@pytest.mark.slow
class TestDeployBadInputs(_BadInputs, unittest.TestCase):
    """Deployment of one real toy fit (spleen-like host, T = 2, one epoch), edited per row."""

    command = "deploy"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ctx.fit = cls.ctx.root / "FIT"
        datalist = _spleen_fit_input(cls.ctx)
        run_fit(cls.ctx.host, datalist, cls.ctx.fit, "--tau", "0.0")

    def prefix(self) -> list[str]:
        configs = f"['{self.ctx.host / 'configs' / 'inference.json'}','{OVERLAY}']"
        return ["-m", "monai.bundle", "run", "--bundle_root", str(self.ctx.host), "--config_file", configs,
                "--dataset_dir", str(self.ctx.cases)]  # fmt: skip

    def defaults(self) -> dict[str, str]:
        return {"--segq#fit_dir": str(self.ctx.fit), "--output_dir": str(self.ctx.tmp / "out")}


@pytest.mark.slow
class TestSegqCommands(_BadInputs, unittest.TestCase):
    """``python -m segq_monai demo / example3d / export``: one clean message, exit code 1; ``--debug`` and
    ``SEGQ_DEBUG=1`` show the traceback."""

    command = "segq"

    def test_debug_shows_the_traceback(self):
        args = ["export", "--models_dir", str(self.ctx.root / "no_models"), "--output_dir", str(self.ctx.root)]
        for prefix, env in ((["--debug"], {}), ([], {"SEGQ_DEBUG": "1"})):
            code, output = run_command(self.base(prefix + args), self.ctx.root, **env)
            self.assertEqual(code, 1)
            self.assertIn("Traceback", output)
            self.assertTrue(output.strip().endswith("pass the folder the training wrote."), output[-500:])
        code, output = run_command(self.base(["export", "--no_such_option"]), self.ctx.root)
        self.assertEqual(code, 2)  # usage errors keep argparse's code


def render_table() -> str:
    """``docs/refusals.md``'s table, from :data:`ROWS`."""
    commands = {"bundle": "segq bundle (`monai.bundle run`)", "fit": "`segq_monai fit`",
                "deploy": "deployment (host + overlay)"}  # fmt: skip
    lines = ["| bad input | command | the message says | the fix it names |", "| --- | --- | --- | --- |"]
    for row in ROWS:
        prefix, _, name = row.name.rpartition(": ")
        command = f"`segq_monai {prefix}`" if row.command == "segq" else commands[row.command]
        lines.append(f"| {name} | {command} | {row.message} | {row.fix} |")
    return "\n".join(lines) + "\n"


class TestRefusalsDoc(unittest.TestCase):
    def test_doc_is_the_table(self):
        text = DOC.read_text()
        start = text.index("<!-- table from tests/test_bad_inputs.py -->\n") + len("<!-- table from tests/test_bad_inputs.py -->\n")
        end = text.index("<!-- end of table -->")
        if os.environ.get("SEGQ_WRITE_DOCS"):
            DOC.write_text(text[:start] + render_table() + text[end:])
            text = DOC.read_text()
            end = text.index("<!-- end of table -->")
        self.assertEqual(text[start:end], render_table(), "run with SEGQ_WRITE_DOCS=1 to rewrite docs/refusals.md")


if __name__ == "__main__":
    unittest.main()
