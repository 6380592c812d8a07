"""Benchmark: which quality-head recipe holds up on the shift split (issue #12 item 3).

Reads the saved outputs of a demo run (``python -m segq_monai demo --output_dir RUN``): the out-of-fold stage-2
cases (``RUN/stage2_data/fold*/``, image + segmentation + entropy + true Dice + the scalar baselines) to train on,
and the test and shift splits' saved maps (``RUN/report/``, ``RUN/report/shift_split/``) to score on. Each recipe
trains a ``QualityRegressor`` (the bundle's: channels 16-128, strides 2, dropout 0.2; input image + one-hot
segmentation + entropy) in this process with the optimiser and loss of ``train_quality.json`` (AdamW, lr 1e-3,
weight decay 1e-4, batch 16, MSE), then prints MAE, Pearson, Spearman and AURC of its predicted Dice on both
splits, per seed, and the mean ± sd over seeds. Options (combine freely):

- ``--augment flip|shipped|narrow``: flips only (the head before issue #12), the random rotations and zooms of
  ``train_quality.json`` (``train#random_transforms``, read from the shipped bundle: any angle, zoom 0.6-1.4), or
  the same at ±45° and zoom 0.8-1.2 (a range that excludes the shift split's 90°, 2/3 and 4/3);
- ``--plain_only``: leave out the turned and zoomed development copies (``--geometric_variants``; files
  ``<slice>_g<k>``), i.e. the stage-2 data before issue #12;
- ``--extra_train RUN2``: also train on the stage-2 cases of another run;
- ``--scalars``: the five scalar baselines (standardised) join the pooled features before the head's first layer;
- ``--rank W``: adds W × a pairwise logistic ranking loss to the MSE.

The shipped head is trained by ``train_quality.json``; this script re-implements only its loop, so that recipes
the bundle has no option for (``--scalars``, ``--rank``) are compared under the same conditions.

    python -m benchmarks.head_choice --run segq_output --augment shipped --seeds 0 1 2   # about 2 min per seed
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose, ScaleIntensity
from torch import nn

from segq_monai import QualityRegressor
from segq_monai.metrics import regression
from segq_monai.metrics.baselines import BASELINES
from segq_monai.transforms.quality import QualityInput
from segq_monai.utils.resources import bundle_root

_SCALE = ScaleIntensity()  # min-max to [0, 1], as train_quality.json's ScaleIntensityd
_QUALITY_INPUT = QualityInput(num_classes=2)


def _load(path: str) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj, dtype=np.float32)[None]


def _cases(folder: Path, plain_only: bool = False) -> list[dict]:
    """Every case ``folder/*/*_quality.json`` names (``plain_only``: not the turned copies ``<slice>_g<k>``): image
    (min-max scaled), seg, entropy ``[1, H, W]``, true Dice, the scalar baselines ``[5]``."""
    cases = []
    for path in sorted(folder.glob("*/*_quality.json")):
        if plain_only and re.fullmatch(r".*_g\d+", path.parent.name):
            continue
        saved = json.loads(path.read_text())
        entry, row = saved["entry"], saved["row"]
        cases.append({"image": _SCALE(_load(entry["image"])), "seg": _load(entry["seg"]), "entropy": _load(entry["entropy"]),
                      "dice": float(row["true_dice"]),
                      "scalars": np.array([float(row[f"baseline_{b}"]) for b in BASELINES], np.float32)})  # fmt: skip
    if not cases:
        raise FileNotFoundError(f"no saved cases (*/*_quality.json) under {folder}; run the demo first.")
    return cases


def _augmentation(kind: str) -> Compose:
    parser = ConfigParser()
    parser.read_config(str(bundle_root() / "configs" / "train_quality.json"))
    parser["loaded_keys"] = ["image", "seg", "entropy"]
    if kind == "narrow":
        parser["augment_rotate"], parser["augment_scale"] = math.pi / 4, 0.2
    transforms = parser.get_parsed_content("train#random_transforms")
    return Compose(transforms if kind != "flip" else transforms[:2])


class _Head(nn.Module):
    """The bundle's ``QualityRegressor``, with ``n_scalars`` inputs joined to its pooled features."""

    def __init__(self, n_scalars: int) -> None:
        super().__init__()
        self.net = QualityRegressor(2, 4, 1, dropout=0.2)
        self.n_scalars = n_scalars
        self.head = nn.Sequential(nn.Linear(128 + n_scalars, 128), nn.PReLU(), nn.Dropout(0.2), nn.Linear(128, 1),
                                  nn.Sigmoid())  # fmt: skip

    def forward(self, x: torch.Tensor, scalars: torch.Tensor) -> torch.Tensor:
        features = self.net.pool(self.net.encoder(x)).flatten(1)
        return self.head(torch.cat([features, scalars], 1) if self.n_scalars else features)[:, 0]


def _stack(case: dict) -> torch.Tensor:
    """``[4, H, W]``: image, one-hot segmentation (2), entropy (the bundle's ``QualityInputd`` stack)."""
    return _QUALITY_INPUT(case["image"], case["seg"], case["entropy"])


def _rank_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Pairwise logistic loss over the batch's pairs whose true Dice differ by more than 0.02."""
    dp, dt = pred[:, None] - pred[None, :], true[:, None] - true[None, :]
    pairs = (dt.abs() > 0.02).float()
    return (nn.functional.softplus(-10 * dp * torch.sign(dt)) * pairs).sum() / pairs.sum().clamp(min=1) / 10


def _train(cases: list[dict], args: argparse.Namespace, seed: int, norm: tuple[torch.Tensor, torch.Tensor]) -> _Head:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = _Head(len(BASELINES) if args.scalars else 0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    augment = _augmentation(args.augment)
    augment.set_random_state(seed)
    for _ in range(args.epochs):
        model.train()
        order = rng.permutation(len(cases))
        for start in range(0, len(order), 16):
            batch = [cases[i] for i in order[start : start + 16]]
            x = torch.stack([_stack(augment({k: c[k] for k in ("image", "seg", "entropy")})) for c in batch])
            scalars = (torch.as_tensor(np.stack([c["scalars"] for c in batch])) - norm[0]) / norm[1]
            true = torch.tensor([c["dice"] for c in batch])
            pred = model(x, scalars)
            loss = nn.functional.mse_loss(pred, true) + (args.rank * _rank_loss(pred, true) if args.rank else 0)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def _scores(model: _Head, cases: list[dict], norm: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    with torch.no_grad():
        pred = np.array([float(model(_stack(c)[None], ((torch.as_tensor(c["scalars"]) - norm[0]) / norm[1])[None]))
                         for c in cases])  # fmt: skip
    true = np.array([c["dice"] for c in cases])
    return {"mae": float(np.mean(np.abs(pred - true))), "pearson": float(regression.pearson_correlation(pred, true)),
            "spearman": float(regression.spearman_correlation(pred, true)),
            "aurc": float(regression.aurc(pred, 1 - true))}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="output_dir of a demo run")
    p.add_argument("--augment", choices=["flip", "shipped", "narrow"], default="shipped")
    p.add_argument("--plain_only", action="store_true", help="leave out the turned development copies")
    p.add_argument("--extra_train", nargs="*", default=[], help="further runs whose stage2_data to train on")
    p.add_argument("--scalars", action="store_true")
    p.add_argument("--rank", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = p.parse_args()
    run = Path(args.run)
    train = [c for r in [run, *map(Path, args.extra_train)] for f in sorted((r / "stage2_data").glob("fold*"))
             for c in _cases(f, args.plain_only)]  # fmt: skip
    splits = {"test": _cases(run / "report"), "shift": _cases(run / "report" / "shift_split")}
    scalars = torch.as_tensor(np.stack([c["scalars"] for c in train]))
    norm = (scalars.mean(0), scalars.std(0) + 1e-6)
    print(f"{len(train)} training cases; " + ", ".join(f"{k}: {len(v)}" for k, v in splits.items()))
    results = []
    for seed in args.seeds:
        start = time.perf_counter()
        model = _train(train, args, seed, norm)
        results.append({k: _scores(model, v, norm) for k, v in splits.items()})
        print(f"seed {seed} ({time.perf_counter() - start:.0f} s): {json.dumps(results[-1])}")
    for split in splits:
        cells = []
        for metric in ("mae", "pearson", "spearman", "aurc"):
            values = [r[split][metric] for r in results]
            sd = f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else ""
            cells.append(f"{metric} {np.mean(values):.3f}{sd}")
        print(f"{split}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
