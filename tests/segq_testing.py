"""Shared test helpers: tiny random NIfTI cases, running bundle workflows, reading outputs."""

from __future__ import annotations

import csv
import shutil
import socket
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.bundle import ConfigParser, ConfigWorkflow

from segq_monai.utils.errors import causes

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundle"


def _affine(spacing: float, dims: int) -> np.ndarray:
    affine = np.diag([spacing] * 3 + [1.0])
    affine[:3, 3] = [-10.0, 5.0, 2.0]
    return affine


def write_cases(folder: Path, names: list[str], shape: tuple[int, ...], seed: int = 0) -> list[dict]:
    """Random images holding a bright disc (the label) of random radius, with noise: learnable in one epoch."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    grids = np.meshgrid(*[np.arange(s) - s / 2 for s in shape], indexing="ij")
    radius = np.sqrt(sum(g**2 for g in grids))
    items = []
    for name in names:
        label = (radius < rng.uniform(0.2, 0.4) * min(shape)).astype(np.uint8)
        image = (label * 100 + rng.normal(0, 20, shape)).astype(np.float32)
        affine = _affine(1.5, len(shape))
        nib.save(nib.Nifti1Image(image, affine), folder / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), folder / f"{name}_label.nii.gz")
        items.append({"image": str(folder / f"{name}.nii.gz"), "label": str(folder / f"{name}_label.nii.gz")})
    return items


def copy_bundle(folder: Path) -> Path:
    """A scratch copy of the bundle's configs at ``folder / "bundle"`` (weights and outputs land there); returns it."""
    root = folder / "bundle"
    shutil.copytree(BUNDLE / "configs", root / "configs")
    return root


def untrained_weights(config: Path, ckpt_dir: Path) -> None:
    """Seeded, untrained weights of both networks of ``config``, saved as the training writes them."""
    parser = ConfigParser()
    parser.read_config(str(config))
    parser["device"] = "cpu"
    for key, folder in (("network_def", "fold0"), ("segq#quality_network_def", "quality_image_seg_entropy")):
        torch.manual_seed(0)
        (ckpt_dir / folder).mkdir(parents=True)
        torch.save({"model": parser.get_parsed_content(key).state_dict()}, ckpt_dir / folder / "model.pt")


def workflow(configs: list[str], bundle_root: Path, **overrides) -> ConfigWorkflow:
    """Run one bundle workflow in this process and return it."""
    wf = ConfigWorkflow(
        config_file=[str(bundle_root / "configs" / c) for c in configs],
        meta_file=str(bundle_root / "configs" / "metadata.json"),
        logging_file=str(bundle_root / "configs" / "logging.conf"),
        workflow_type=None,
        bundle_root=str(bundle_root),
        **overrides,
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    return wf


def train_bundle(folder: Path) -> Path:
    """The bundle's two stages trained at toy size in ``folder``: stage 1 on 2 folds (1 epoch each) of 8 random
    32x48 discs (``folder / "data" / "case<i>.nii.gz"``), each fold's held-out cases sampled (T = 3) into
    ``stage2_data/fold<k>``, then the quality head (1 epoch); the datalist ``folder / "data" / "datalist.json"`` also
    holds 3 test cases of 40x36 (``test<i>``, padded to 48x48 by the inference). Returns the bundle root,
    ``folder / "bundle"``; every path it writes is relative, so a copy of ``folder`` is a trained bundle too."""
    from segq_monai.data import write_datalist

    root = copy_bundle(folder)
    train = write_cases(folder / "data", [f"case{i}" for i in range(8)], (32, 48))
    test = write_cases(folder / "data", [f"test{i}" for i in range(3)], (40, 36), seed=1)
    datalist = write_datalist(folder / "data" / "datalist.json", {"training": train, "testing": test})
    common = {"device": "cpu", "num_folds": 2}
    for fold in range(2):
        workflow(["train_segmentation.json"], root, datalist=str(datalist), fold=fold, epochs=1, **common)
        workflow(["inference.json", "sample.json"], root, datalist=str(datalist), fold=fold, num_samples=3, **common)
    workflow(["train_quality.json"], root, epochs=1, device="cpu")
    return root


def parse_bundle_command(command: str) -> dict:
    """The keyword arguments that ``python -m monai.bundle run ...`` (a shell command line, as ``fit`` prints it)
    passes to ``monai.bundle.run``: the line parsed by MONAI's own entry point (``monai.bundle.__main__``, Python
    Fire) with ``run`` replaced by a recorder; ``run_id`` among them."""
    import shlex

    import fire
    import monai.bundle.__main__ as entry

    argv = shlex.split(command)
    assert argv[:4] == ["python", "-m", "monai.bundle", "run"], command
    seen: dict = {}

    def record(run_id: str = "run", **kwargs):
        seen.update(kwargs, run_id=run_id)

    fire.Fire({**vars(entry), "run": record}, command=argv[3:])
    return seen


def chain(error: BaseException) -> str:
    """The messages of an exception and of what it was raised from, one per line (MONAI wraps a failing expression
    in a RuntimeError; :func:`segq_monai.utils.errors.causes` walks back to segq's message)."""
    return "\n".join(str(e) for e in causes(error))


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def noisy_half(g: torch.Generator, n: int = 8, size: int = 16, flip: float = 0.3):
    """A toy task with label noise in one half: inputs ``[n, 2, size, size]`` (intensity, noisy-region flag),
    labels ``x > 0`` ``[n, 1, ...]`` flipped with probability ``flip`` in the left half, and that region's mask."""
    x = torch.randn(n, 1, size, size, generator=g)
    region = torch.zeros(n, 1, size, size, dtype=torch.bool)
    region[..., : size // 2] = True
    y = (x > 0).long()
    flipped = (torch.rand(y.shape, generator=g) < flip) & region
    return torch.cat([x, region.float()], 1), torch.where(flipped, 1 - y, y), region


def train_on_noisy_half(net: torch.nn.Module, loss_fn, steps: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """Train ``net`` with ``loss_fn`` on :func:`noisy_half` batches (Adam, one thread); return a fresh batch's
    inputs and noisy-region mask."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: extra threads only contend with the rest of the suite
    try:
        opt = torch.optim.Adam(net.parameters(), 1e-2)
        g = torch.Generator().manual_seed(0)
        net.train()
        for _ in range(steps):
            x, y, _ = noisy_half(g)
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        x, _, noisy = noisy_half(g)
        return x, noisy
    finally:
        torch.set_num_threads(threads)


#: ``python -m segq_monai example3d`` at toy size: cases of 24³ voxels; 4 host-training, 6 validation (fit), 4
#: calibration and 3 test cases; 1 epoch per network, T = 2; alpha = 0.9 (3 calibration cases suffice), coverage 0.6
EXAMPLE3D_TOY = ["--cases", "4", "6", "4", "3", "--spatial_size", "24", "24", "24", "--epochs", "1", "--epochs_quality",
                 "1", "--num_samples", "2", "--alpha", "0.9", "--coverage", "0.6", "--device", "cpu"]  # fmt: skip


HOSTS = REPO / "tests" / "testing_data" / "hosts"


def make_host(name: str, folder: Path, seed: int = 0, ensemble: int = 0) -> Path:
    """A host bundle ``folder / name`` from ``tests/testing_data/hosts/<name>/configs``, with random weights as a
    user has them: ``models/model.pt`` (a plain state dict, as model-zoo bundles save it) and, with ``ensemble``,
    ``models/fold<k>/model.pt`` members."""
    from monai.bundle import ConfigParser

    root = folder / name
    shutil.copytree(HOSTS / name / "configs", root / "configs")
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    torch.manual_seed(seed)
    (root / "models").mkdir()
    torch.save(parser.get_parsed_content("network_def").state_dict(), root / "models" / "model.pt")
    for k in range(ensemble):
        (root / "models" / f"fold{k}").mkdir()
        torch.save(parser.get_parsed_content("network_def", lazy=False).state_dict(), root / "models" / f"fold{k}" / "model.pt")
    return root


def write_labelled_cases(
    folder: Path,
    names: list[str],
    shape: tuple[int, ...],
    label_values: tuple[int, ...] = (0, 1),
    files: int = 1,
    affine: np.ndarray | None = None,
    seed: int = 0,
    label_folder: Path | None = None,
    image_format: str = "nifti",
) -> list[dict]:
    """Random images of concentric shells, one per label value (the outermost shell is ``label_values[1]``), with
    noise; ``files`` image files per case (one per "modality"); labels in ``label_folder`` (default: beside).
    ``image_format="jpeg"``: 2D RGB JPEG images (``files`` ignored) and PNG labels, as endoscopy bundles read them
    (``shape`` is MONAI's ``PILReader`` order ``(W, H)``: the arrays are written transposed). Returns Decathlon
    items (absolute paths)."""
    rng = np.random.default_rng(seed)
    label_folder = folder if label_folder is None else label_folder
    for f in (folder, label_folder):
        f.mkdir(parents=True, exist_ok=True)
    affine = np.diag([1.5] * 3 + [1.0]) if affine is None else affine
    grids = np.meshgrid(*[np.arange(s) - s / 2 for s in shape], indexing="ij")
    radius = np.sqrt(sum(g**2 for g in grids)) / (min(shape) / 2)
    items = []
    for name in names:
        edges = np.sort(rng.uniform(0.15, 0.8, len(label_values) - 1))[::-1]
        label = np.zeros(shape, np.uint8)
        for value, edge in zip(label_values[1:], edges):
            label[radius < edge] = value
        if image_format == "jpeg":
            from PIL import Image

            rgb = np.stack([label * (60.0 + 30 * c) + rng.normal(40, 20, shape) for c in range(3)], -1)
            Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8).transpose(1, 0, 2)).save(folder / f"{name}.jpg")
            Image.fromarray(label.T).save(label_folder / f"{name}_label.png")
            items.append({"image": str(folder / f"{name}.jpg"), "label": str(label_folder / f"{name}_label.png")})
            continue
        images = []
        for f in range(files):
            image = (label * (40.0 + 10 * f) + rng.normal(0, 20, shape)).astype(np.float32)
            path = folder / f"{name}_{f}.nii.gz" if files > 1 else folder / f"{name}.nii.gz"
            nib.save(nib.Nifti1Image(image, affine), path)
            images.append(str(path))
        nib.save(nib.Nifti1Image(label, affine), label_folder / f"{name}_label.nii.gz")
        items.append({"image": images if files > 1 else images[0], "label": str(label_folder / f"{name}_label.nii.gz")})
    return items


def isotonic_reference(x: np.ndarray, y: np.ndarray):
    """An independent reference of segq's isotonic recalibration ``g`` fitted on ``(x, y)``: scikit-learn's isotonic
    fit (clipped to [0, 1]), its knots (``X_thresholds_``, ``y_thresholds_``) evaluated by segq's ``recalibrate``,
    whose rule beyond the end knots (the head's slope, clipped) ``test_recalibration.TestRecalibrate`` pins with
    hand-computed numbers; no copy of that rule here. Returns ``g``, a function of an array of raw predictions."""
    from sklearn.isotonic import IsotonicRegression

    from segq_monai.calibration.maps import recalibrate

    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(x, y)
    return lambda raw: recalibrate(raw, iso.X_thresholds_, iso.y_thresholds_)


def evidence_uids(sr, kind: str) -> set[str]:
    """The SOP instance UIDs of an SR's ``CurrentRequestedProcedureEvidenceSequence`` (``kind="Current"``: what its
    content references) or ``PertinentOtherEvidenceSequence`` (``"Other"``)."""
    name = "CurrentRequestedProcedureEvidenceSequence" if kind == "Current" else "PertinentOtherEvidenceSequence"
    return {ref.ReferencedSOPInstanceUID for study in sr.get(name, [])
            for series in study.ReferencedSeriesSequence for ref in series.ReferencedSOPSequence}  # fmt: skip
