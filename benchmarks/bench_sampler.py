"""Benchmark: streaming MC-dropout sampling against the naive stacked baseline.

The baseline is what MONAI Label's epistemic scoring does: the whole network in train mode, T sequential
passes, every sample kept (``torch.stack``), the maps computed from the stack at the end. The sampler under
test is ``UncertaintyInferer(MCDropoutSampler(T, chunk_size))``, which reduces samples as they arrive. Both are
run in this process on the same network and input; the table reports time and peak extra memory as ratios.

    python -m benchmarks.bench_sampler              # 2D 256², 3D 96³, T in 5, 20, 50 (about 10 min on 2 CPU cores)
    python -m benchmarks.bench_sampler --quick      # smaller inputs, a smoke run
    python -m benchmarks.bench_sampler --device cuda
"""

from __future__ import annotations

import argparse

import torch
from monai.inferers import SimpleInferer
from monai.networks.nets import UNet

from benchmarks.measure import compare, exact_cpu_memory
from segq_monai import MCDropoutSampler, UncertaintyInferer
from segq_monai.inferers.streaming import entropy


def naive_stacked(x: torch.Tensor, network: torch.nn.Module, num_samples: int) -> dict[str, torch.Tensor]:
    """T passes in train mode, samples stacked, maps reduced from the stack."""
    network.train()
    with torch.no_grad():
        samples = torch.stack([torch.softmax(network(x), 1) for _ in range(num_samples)])
    network.eval()
    mean = samples.mean(0)
    seg = mean.argmax(1, keepdim=True)
    predictive = entropy(mean)
    expected = torch.stack([entropy(s) for s in samples]).mean(0)
    agreement = (samples.argmax(2, keepdim=True) == seg).float().mean(0)
    return {
        "prob": mean,
        "seg": seg,
        "entropy": predictive,
        "mutual_information": predictive - expected,
        "variance": samples.var(0, unbiased=False),
        "agreement": agreement,
    }


def _network(dims: int, device: torch.device) -> UNet:
    torch.manual_seed(0)
    net = UNet(dims, 1, 2, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=1, dropout=0.1)
    return net.to(device).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small inputs (2D 128², 3D 48³), T in 5, 20")
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 4, 10], help="chunk sizes to compare")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        exact_cpu_memory()
    sizes = {2: (128, 128), 3: (48, 48, 48)} if args.quick else {2: (256, 256), 3: (96, 96, 96)}
    samples = (5, 20) if args.quick else (5, 20, 50)
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("| input | T | naive: s | naive: peak MiB | segq (chunk 1): s | segq: peak MiB "
          "| time ratio segq/naive (median of 3 alternating rounds) | memory ratio segq/naive |")
    print("|---|---|---|---|---|---|---|---|")
    peaks: dict[tuple[int, int], float] = {}
    for dims, size in sizes.items():
        net = _network(dims, device)
        x = torch.rand(1, 1, *size, device=device)
        for t in samples:
            inferer = UncertaintyInferer(MCDropoutSampler(t, chunk_size=1), SimpleInferer())
            naive, segq, ratio = compare(lambda: naive_stacked(x, net, t), lambda: inferer(x, net), device)
            peaks[dims, t] = segq.peak_mib
            label = "×".join(map(str, size))
            print(f"| {label} | {t} | {naive.seconds:.2f} | {naive.peak_mib:.0f} | {segq.seconds:.2f} | "
                  f"{segq.peak_mib:.0f} | {ratio:.2f} | {segq.peak_mib / naive.peak_mib:.2f} |")
    for dims in sizes:
        lo, hi = peaks[dims, samples[0]], peaks[dims, samples[-1]]
        print(f"{dims}D: segq peak memory at T={samples[-1]} / T={samples[0]}: {hi / lo:.2f}")

    print("\n| input | T | chunk size | s | speed-up vs chunk 1 | peak MiB |")
    print("|---|---|---|---|---|---|")
    size, t = sizes[2], 20
    net, x = _network(2, device), torch.rand(1, 1, *sizes[2], device=device)
    single = UncertaintyInferer(MCDropoutSampler(t, chunk_size=1), SimpleInferer())
    for chunk in args.chunks:
        inferer = UncertaintyInferer(MCDropoutSampler(t, chunk_size=chunk), SimpleInferer())
        _, m, ratio = compare(lambda: single(x, net), lambda: inferer(x, net), device)
        print(f"| {'×'.join(map(str, size))} | {t} | {chunk} | {m.seconds:.2f} | {1 / ratio:.2f} | {m.peak_mib:.0f} |")


if __name__ == "__main__":
    main()
