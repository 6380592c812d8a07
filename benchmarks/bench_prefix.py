"""Benchmark: shared-prefix MC dropout against full passes, when dropout sits late in the network.

Two placements of dropout in three MONAI U-Nets: ``small`` (``UNet``, channels 16, 32, 64, 128, one residual unit
per level), ``spleen`` (the model-zoo spleen_ct_segmentation ``UNet``: channels 16, 32, 64, 128, 256, two residual
units per level, batch norm) and ``dynunet`` (``DynUNet``, the nnU-Net architecture: filters 32, 64, 128, 256, 320,
full-resolution first level, instance norm):

- ``last layer``: a UNet without dropout that outputs ``--features`` channels at full resolution, then
  dropout (p = 0.5; ``nn.Dropout``, or ``nn.Dropout2d/3d`` for whole channels) and a 1×1 convolution to 2
  classes ("last-layer MC dropout");
- ``decoder x2``: ``nn.Dropout(0.1)`` in the last two decoder stages only (``UNet``: ``model.1.submodule.2``,
  ``model.2``; ``DynUNet``: ``upsamples.2``, ``upsamples.3``).

For each, on one input ``[1, 1, *size]``: one deterministic pass of the network (eval mode, no maps), and
``UncertaintyInferer(MCDropoutSampler(T, chunk_size=1, shared_prefix=...))`` with full passes and with the shared
prefix (all maps, same seed: the same maps). The shared-prefix sampler keeps its split between calls; the time
to make it (torch.fx trace and check, paid on the first call for a network) is its own column. Times are
measured with the default allocator; ``--memory`` also reports peak memory, under settings that slow allocation.
Per-sample costs that no split removes are printed below the table: the dropout mask draws at the dropout
modules' resolution (PyTorch's kernel, and the uniform masks MC sampling draws on CPUs: ``mc_dropout_masks``) and
the fold of each sample into the maps (``StreamingUncertainty.update``).

    python -m benchmarks.bench_prefix             # 2D 256², 3D 96³, T = 20 (about 5 min on 2 CPU cores)
    python -m benchmarks.bench_prefix --quick     # 2D 128², 3D 48³, a smoke run
    python -m benchmarks.bench_prefix --dims 2    # 2D only (on a shared machine: run each part when it is idle)
    python -m benchmarks.bench_prefix --bodies spleen  # one UNet only
    python -m benchmarks.bench_prefix --memory    # with peak memory: slower allocation, so times are not comparable
    python -m benchmarks.bench_prefix --device cuda
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import torch
from monai.networks.nets import DynUNet, UNet
from torch import nn

from benchmarks.measure import exact_cpu_memory, measure
from segq_monai import MCDropoutSampler, UncertaintyInferer
from segq_monai.inferers.modes import mc_dropout_masks
from segq_monai.inferers.shared_prefix import split_at_dropout
from segq_monai.inferers.streaming import StreamingUncertainty


class LastLayerDropout(nn.Module):
    """A MONAI UNet without dropout, then dropout and a 1×1 convolution on its full-resolution features.

    ``channel_dropout``: ``nn.Dropout2d`` / ``nn.Dropout3d`` (whole channels dropped: C random draws) instead of
    ``nn.Dropout`` (every element: C * H * W[ * D] draws).
    """

    def __init__(
        self, dims: int, body: str, features: int = 16, p: float = 0.5, channel_dropout: bool = False
    ) -> None:
        super().__init__()
        self.body = unet(dims, body, features)
        self.drop = (nn.Dropout2d if dims == 2 else nn.Dropout3d)(p) if channel_dropout else nn.Dropout(p)
        self.head = (nn.Conv2d if dims == 2 else nn.Conv3d)(features, 2, 1)

    def forward(self, x):
        return self.head(self.drop(self.body(x)))


def _monai_unet(channels: tuple[int, ...], num_res_units: int, **kwargs):
    def build(dims: int, out_channels: int, dropout: float) -> nn.Module:
        strides = (2,) * (len(channels) - 1)
        return UNet(dims, 1, out_channels, channels, strides, num_res_units=num_res_units, dropout=dropout, **kwargs)

    return build


def _dynunet(dims: int, out_channels: int, dropout: float) -> nn.Module:
    kernels, strides = [[3] * dims] * 5, [[1] * dims] + [[2] * dims] * 4
    return DynUNet(dims, 1, out_channels, kernels, strides, strides[1:], filters=(32, 64, 128, 256, 320),
                   norm_name="instance", dropout=dropout)


#: name: (builder(dims, out_channels, dropout), module-name prefixes of the last two decoder stages)
BODIES = {
    "small": (_monai_unet((16, 32, 64, 128), 1), ("model.2.", "model.1.submodule.2.")),
    "spleen": (_monai_unet((16, 32, 64, 128, 256), 2, norm="batch"), ("model.2.", "model.1.submodule.2.")),
    "dynunet": (_dynunet, ("upsamples.2.", "upsamples.3.")),
}


def unet(dims: int, body: str, out_channels: int, dropout: float = 0.0) -> nn.Module:
    """The U-Net named ``body`` (see :data:`BODIES`), one input channel."""
    return BODIES[body][0](dims, out_channels, dropout)


def decoder_dropout(dims: int, body: str, p: float = 0.1) -> nn.Module:
    """The U-Net ``body`` with dropout in its last two decoder stages only."""
    net = unet(dims, body, 2, dropout=p)
    for name, m in net.named_modules():
        if isinstance(m, nn.Dropout) and not name.startswith(BODIES[body][1]):
            m.p = 0.0
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small inputs (2D 128², 3D 48³)")
    parser.add_argument("--samples", type=int, default=20, help="T")
    parser.add_argument("--features", type=int, default=16, help="channels before the last-layer dropout")
    parser.add_argument("--memory", action="store_true",
                        help="also report peak memory (CPU: glibc's mmap threshold fixed, which slows allocation)")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3], help="2 and/or 3")
    parser.add_argument("--bodies", nargs="+", default=list(BODIES), choices=list(BODIES), help="the U-Nets")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (best is kept)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.memory and device.type == "cpu":
        exact_cpu_memory()
    sizes = {2: (128, 128), 3: (48, 48, 48)} if args.quick else {2: (256, 256), 3: (96, 96, 96)}
    sizes = {dims: sizes[dims] for dims in args.dims}
    t = args.samples
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, T = {t}, "
          f"load average {os.getloadavg()[0]:.2f}")
    memory = " full: peak MiB | shared: peak MiB |" if args.memory else ""
    print("| input | UNet | dropout | one pass: ms | full passes: ms | shared prefix: ms | shared / one pass "
          f"| speed-up vs full | split: ms |{memory}")
    print("|---" * (9 + 2 * args.memory) + "|")
    for (dims, size), body in itertools.product(sizes.items(), args.bodies):
        x = torch.rand(1, 1, *size, device=device)
        variants = [
            ("last layer, Dropout", lambda: LastLayerDropout(dims, body, args.features)),
            (f"last layer, Dropout{dims}d", lambda: LastLayerDropout(dims, body, args.features, channel_dropout=True)),
            ("decoder x2, Dropout", lambda: decoder_dropout(dims, body)),
        ]
        for label, build in variants:
            torch.manual_seed(0)
            net = build().to(device).eval()

            def one_pass():
                with torch.no_grad():
                    return net(x)

            single = measure(one_pass, device, repeats=3 * args.repeats)
            full_inferer = UncertaintyInferer(MCDropoutSampler(t, shared_prefix=False))
            full = measure(lambda: full_inferer(x, net), device, repeats=args.repeats)
            shared_inferer = UncertaintyInferer(MCDropoutSampler(t, shared_prefix=True))
            shared = measure(lambda: shared_inferer(x, net), device, repeats=args.repeats)
            split_s = float("inf")
            for _ in range(2):  # the best of two: the first call of a process also pays one-time set-up
                start = time.perf_counter()
                split_at_dropout(net, x)
                split_s = min(split_s, time.perf_counter() - start)
            print(f"| {'×'.join(map(str, size))} | {body} | {label} | {single.seconds * 1e3:.1f} | {full.seconds * 1e3:.0f} | "
                  f"{shared.seconds * 1e3:.0f} | {shared.seconds / single.seconds:.2f} | "
                  f"{full.seconds / shared.seconds:.2f} | {split_s * 1e3:.0f} |" + (f" {full.peak_mib:.0f} | {shared.peak_mib:.0f} |" if args.memory else ""))
    print(f"\nPer-sample work no split removes ({args.features} feature channels before the last-layer dropout):")
    print("| input | UNet | one pass: ms | nn.Dropout on the features (PyTorch's mask): ms "
          "| the same in MC sampling (uniform mask): ms | map update: ms | (MC dropout + update) / one pass |")
    print("|---|---|---|---|---|---|---|")
    for (dims, size), body in itertools.product(sizes.items(), args.bodies):
        torch.manual_seed(0)
        net = LastLayerDropout(dims, body, args.features).to(device).eval()
        x = torch.rand(1, 1, *size, device=device)
        with torch.no_grad():
            single = measure(lambda: net(x), device, repeats=5).seconds
            features = torch.rand(1, args.features, *size, device=device)
            drop = nn.Dropout(0.5).train()
            torch_mask = measure(lambda: drop(features), device, repeats=5).seconds
            with mc_dropout_masks([drop]):
                mask = measure(lambda: drop(features), device, repeats=5).seconds
            prob = torch.softmax(torch.randn(1, 2, *size, device=device), 1)
            acc = StreamingUncertainty()
            update = measure(lambda: acc.update(prob), device, repeats=5).seconds
        print(f"| {'×'.join(map(str, size))} | {body} | {single * 1e3:.1f} | {torch_mask * 1e3:.1f} | "
              f"{mask * 1e3:.1f} | {update * 1e3:.1f} | {(mask + update) / single:.2f} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
