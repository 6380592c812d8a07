"""Benchmark: what stage 1 costs on a real case, against one pass of the host, in this process.

Two model-zoo hosts at their real sizes, with their own networks and inferers (configs read at model-zoo commit
dfae206; random weights: the cost does not depend on them):

- ``spleen``: spleen_ct_segmentation's ``UNet`` (3D, 1 -> 2 classes, channels 16-256, four stride-2 levels, two
  residual units, batch norm) through its ``SlidingWindowInferer`` (96³ windows, ``sw_batch_size`` 4, overlap 0.5)
  on a 512 x 512 x 120 input: 200 windows a pass. Its ``Spacingd`` (1.5 x 1.5 x 2 mm) shrinks a 0.78 mm CT to about
  270 x 270 x 150 first, so this is the top of the range. The model-zoo network has no dropout (the fit refuses MC
  dropout on it): the MC-dropout row runs the same UNet built with ``dropout=0.1``, i.e. a host retrained with it.
- ``brats``: brats_mri_segmentation's ``SegResNet`` (4 -> 3 labels, sigmoid, ``dropout_prob`` 0.2) through its
  ``SlidingWindowInferer`` (240 x 240 x 160, one window) on a 240 x 240 x 155 four-channel input.

Rows, each measured once after a warm-up on one window: the host pass (eval mode, activation, argmax); MC dropout,
TTA and the foreground band (:class:`segq_monai.ForegroundBandSampler` around TTA, margin ``--margin``), all through
:class:`segq_monai.UncertaintyInferer` at T = ``--samples`` (default 2), then projected to T = 20: each sample is
one pass plus its fold into the maps, so ``time(20) = 20 * time(T) / T``; the band is one full pass plus T passes
over the box, so it is also run at 2 T and ``time(20) = time(T) + (20 - T) * (time(2 T) - time(T)) / T``.
``--samples 20`` measures T = 20 itself.

The shared prefix (MC dropout computes the part before dropout once) does not apply to either host: it needs a
``SimpleInferer`` (a sliding window cuts other inputs for the network each window), and SegResNet's dropout follows
its first convolution, so there would be nothing to share.

The band needs a foreground where an organ would be: the input is standard normal noise (clipped to ±3) with a box
of value 10 the size of the structure (spleen: 140 x 90 x 48 voxels, 11 x 7 x 12 cm at 0.78 x 0.78 x 2.5 mm;
tumour: 60 x 60 x 50), and the host's output is forced there (``ForcedForeground``: foreground logits +20 where the input's first channel
exceeds 5, -20 elsewhere; an element-wise step on each window's output, a negligible cost).

    python -m benchmarks.bench_real_sizes                  # both hosts, T = 2 measured (about 15 min on 2 CPU cores)
    python -m benchmarks.bench_real_sizes --hosts brats    # one host
    python -m benchmarks.bench_real_sizes --quick          # quarter-size inputs, a smoke run
    python -m benchmarks.bench_real_sizes --samplers band --margin 16   # the band only, another margin
    python -m benchmarks.bench_real_sizes --device cuda --samples 20
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from monai.inferers import SlidingWindowInferer
from monai.networks.nets import SegResNet, UNet
from torch import nn

from benchmarks.measure import exact_cpu_memory, measure
from segq_monai import ForegroundBandSampler, MCDropoutSampler, TTASampler, UncertaintyInferer
from segq_monai.inferers.foreground import foreground_box

PROJECTED_T = 20


class ForcedForeground(nn.Module):
    """``network``'s logits with the foreground forced: +20 where the input's channel 0 exceeds 5, -20 elsewhere
    (softmax: channel 1 against channel 0; sigmoid: every label)."""

    def __init__(self, network: nn.Module, activation: str) -> None:
        super().__init__()
        self.network = network
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.network(x)
        force = torch.where(x[:, :1] > 5, 20.0, -20.0)
        if self.activation == "softmax":
            return torch.cat([logits[:, :1], logits[:, 1:] + force], dim=1)
        return logits + force


@dataclass
class Host:
    name: str
    shape: tuple[int, ...]  # [C, H, W, D]
    organ: tuple[int, int, int]  # the structure's box, voxels
    activation: str
    network: Callable[[float], nn.Module]  # dropout -> network
    inferer: SlidingWindowInferer


def hosts(quick: bool) -> dict[str, Host]:
    scale = 2 if quick else 1
    return {
        "spleen": Host(
            "spleen", (1, 512 // scale, 512 // scale, 120), (140 // scale, 90 // scale, 48), "softmax",
            lambda p: UNet(3, 1, 2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2,
                           norm="batch", dropout=p),
            SlidingWindowInferer((96, 96, 96), sw_batch_size=4, overlap=0.5),
        ),
        "brats": Host(
            "brats", (4, 240 // scale, 240 // scale, 155 // scale), (60 // scale, 60 // scale, 50 // scale), "sigmoid",
            lambda p: SegResNet(blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1), init_filters=16, in_channels=4,
                                out_channels=3, dropout_prob=p or None),
            SlidingWindowInferer((240 // scale, 240 // scale, 160 // scale), sw_batch_size=1, overlap=0.5),
        ),
    }  # fmt: skip


def make_input(host: Host, device: torch.device) -> torch.Tensor:
    """Standard normal noise ``[1, *host.shape]`` clipped to ±3, with the structure's box (centred) at 10."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, *host.shape, generator=generator).clamp_(-3, 3)
    box = tuple(slice((n - k) // 2, (n - k) // 2 + k) for n, k in zip(host.shape[1:], host.organ))
    x[(..., *box)] = 10.0
    return x.to(device)


def host_pass(x: torch.Tensor, network: nn.Module, host: Host) -> tuple[torch.Tensor, torch.Tensor]:
    """What the host does without segq: one pass in eval mode, the activation, the segmentation."""
    network.eval()
    with torch.no_grad():
        logits = host.inferer(x, network)
    prob = torch.softmax(logits, 1) if host.activation == "softmax" else torch.sigmoid(logits)
    return prob, prob.argmax(1) if host.activation == "softmax" else prob > 0.5


def run_host(host: Host, device: torch.device, samples: int, margin: int, which: list[str]) -> list[dict]:
    torch.manual_seed(0)
    plain = ForcedForeground(host.network(0.0), host.activation).to(device).eval()
    torch.manual_seed(0)
    dropout = ForcedForeground(host.network(0.1 if host.name == "spleen" else 0.2), host.activation).to(device)
    x = make_input(host, device)
    window = x[(..., *(slice(0, min(n, r)) for n, r in zip(x.shape[2:], host.inferer.roi_size)))]
    host_pass(window, plain, host)  # warm-up: one window
    print(f"== {host.name}: input {list(x.shape)}, windows {len(host.inferer.roi_size)}D {host.inferer.roi_size}",
          flush=True)  # fmt: skip
    result: list[torch.Tensor] = []
    single = measure(lambda: result.extend(host_pass(x, plain, host)), device, repeats=2, warmup=False)
    print(f"   host pass: {single.seconds:.1f} s", flush=True)
    box = foreground_box(result[0], host.activation, margin)
    del result
    box_fraction = math.prod((s.stop - s.start) / n for s, n in zip(box, x.shape[2:]))
    rows = [{"host": host.name, "sampler": "host pass", "T": 1, "seconds": single.seconds, "peak_mib": single.peak_mib,
             "seconds_t20": None, "box_fraction": None}]  # fmt: skip
    samplers = {
        "mc_dropout": ("MC dropout", MCDropoutSampler(samples), dropout),
        "tta": ("TTA", TTASampler(samples), plain),
        "band": (f"TTA in the foreground band (margin {margin})", ForegroundBandSampler(TTASampler(samples), margin),
                 plain),
    }  # fmt: skip
    for kind in which:
        name, sampler, network = samplers[kind]
        inferer = UncertaintyInferer(sampler, host.inferer, maps=("prob", "seg", "entropy", "mutual_information"))
        m = measure(lambda: inferer(x, network), device, warmup=False)
        if kind == "band":  # pass + T box samples: the slope from T and 2 T
            twice = UncertaintyInferer(ForegroundBandSampler(TTASampler(2 * samples), margin), host.inferer,
                                       maps=inferer.maps)  # fmt: skip
            per_sample = (measure(lambda: twice(x, network), device, warmup=False).seconds - m.seconds) / samples
            t20 = m.seconds + (PROJECTED_T - samples) * per_sample
        else:
            t20 = PROJECTED_T * m.seconds / samples
        rows.append({"host": host.name, "sampler": name, "T": samples, "seconds": m.seconds, "peak_mib": m.peak_mib,
                     "seconds_t20": t20, "box_fraction": box_fraction if kind == "band" else None})  # fmt: skip
        print(f"   {name}: T = {samples} {m.seconds:.1f} s, T = 20 about {t20:.0f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--hosts", nargs="+", default=["spleen", "brats"], choices=["spleen", "brats"])
    parser.add_argument("--samples", type=int, default=2, help="T measured (projected to 20)")
    parser.add_argument("--margin", type=int, default=48, help="band margin in voxels (48: half a 96³ window)")
    kinds = ["mc_dropout", "tta", "band"]
    parser.add_argument("--samplers", nargs="+", default=kinds, choices=kinds)
    parser.add_argument("--quick", action="store_true", help="inputs halved in-plane, a smoke run")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        exact_cpu_memory()
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{time.strftime('%Y-%m-%d')}", flush=True)  # fmt: skip
    rows = []
    for name in args.hosts:
        rows += run_host(hosts(args.quick)[name], device, args.samples, args.margin, args.samplers)
    print("\n| host | sampler | T measured | seconds | / host pass | peak MiB | T = 20: seconds "
          "| T = 20: / host pass |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    passes = {r["host"]: r["seconds"] for r in rows if r["sampler"] == "host pass"}
    for r in rows:
        ref = passes[r["host"]]
        t20 = "" if r["seconds_t20"] is None else f"{r['seconds_t20']:.0f} | {r['seconds_t20'] / ref:.1f}"
        print(f"| {r['host']} | {r['sampler']} | {r['T']} | {r['seconds']:.1f} | {r['seconds'] / ref:.2f} | "
              f"{r['peak_mib']:.0f} | {t20 or ' | '} |")  # fmt: skip
    for r in rows:
        if r["box_fraction"] is not None:
            print(f"{r['host']}: the band's box is {100 * r['box_fraction']:.1f} % of the input's voxels")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
