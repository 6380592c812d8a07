#!/usr/bin/env bash
# The benchmark tables on a CUDA device (not run by CI; the first two in under 5 minutes on one H100-class GPU):
#   bash benchmarks/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python -m benchmarks.bench_sampler --device cuda --chunks 1 4 10 20
python -m benchmarks.bench_prefix --device cuda
# the real-size cost table with T = 20 measured, not projected
python -m benchmarks.bench_real_sizes --device cuda --samples 20
