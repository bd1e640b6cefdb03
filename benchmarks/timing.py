"""Timing shared by the benchmarks: interleaved rounds, best of each, device-synchronised."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fns: dict[str, Callable[[], object]], device: torch.device, repeats: int, *,
          warmup: int = 1) -> dict[str, float]:
    """Best (least) seconds of each function over ``repeats`` rounds after ``warmup`` rounds.

    The functions take turns within each round, so a busy machine slows them alike and their
    ratios hold better than their absolute times.
    """
    for _ in range(warmup):  # allocator caches, thread pools, first-touch pages
        for fn in fns.values():
            fn()
    return {name: min(ts) for name, ts in rounds(fns, device, repeats).items()}


def rounds(fns: dict[str, Callable[[], object]], device: torch.device,
           repeats: int) -> dict[str, list[float]]:
    """Seconds of each function in each of ``repeats`` interleaved rounds (no warm-up)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times
