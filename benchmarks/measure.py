"""Time and peak memory of a callable, measured in this process (CPU: resident set size; CUDA: the allocator)."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Measurement:
    seconds: float
    peak_mib: float  # peak memory above what was in use when the call started, MiB


def exact_cpu_memory() -> None:
    """Re-run this process with glibc's mmap threshold fixed at 64 KiB, unless it already is.

    By default glibc raises its mmap threshold after large frees and keeps freed blocks in its heap, so the
    resident set size stops tracking the tensors alive. With a fixed threshold every tensor over 64 KiB gets its
    own mapping, returned to the system when freed, and the resident set size follows live memory.
    """
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") != "65536":
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _RSSPeak:
    """Polls the resident set size every millisecond in a thread and keeps the maximum."""

    def __enter__(self) -> _RSSPeak:
        self.start = self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def measure(fn: Callable[[], object], device: torch.device, repeats: int = 1, warmup: bool = True) -> Measurement:
    """Best wall time of ``repeats`` calls of ``fn`` and its peak extra memory; ``warmup``: one uncounted call first
    (allocator caches, lazy initialisation)."""
    if warmup:
        fn()
    best = float("inf")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated(device) - base
        return Measurement(best, peak / 2**20)
    peak = 0
    for _ in range(repeats):
        with _RSSPeak() as rss:
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        peak = max(peak, rss.peak - rss.start)
    return Measurement(best, peak / 2**20)


def compare(
    baseline: Callable[[], object], candidate: Callable[[], object], device: torch.device, rounds: int = 3
) -> tuple[Measurement, Measurement, float]:
    """Measure ``baseline`` and ``candidate`` in alternation, ``rounds`` times each.

    Returns each one's best time and largest peak, and the median over rounds of the time ratio
    candidate / baseline: alternating keeps a load that drifts during the run (other jobs on the machine) from
    favouring either side.
    """
    ratios, a_runs, b_runs = [], [], []
    for _ in range(rounds):
        a_runs.append(measure(baseline, device))
        b_runs.append(measure(candidate, device))
        ratios.append(b_runs[-1].seconds / a_runs[-1].seconds)

    def best(runs: list[Measurement]) -> Measurement:
        return Measurement(min(r.seconds for r in runs), max(r.peak_mib for r in runs))

    return best(a_runs), best(b_runs), sorted(ratios)[len(ratios) // 2]
