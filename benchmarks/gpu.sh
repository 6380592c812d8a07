#!/usr/bin/env bash
# The benchmark tables on a CUDA device, in under 5 minutes on one H100-class GPU (not run by CI):
#   bash benchmarks/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python -m benchmarks.bench_sampler --device cuda --chunks 1 4 10 20
python -m benchmarks.bench_prefix --device cuda
