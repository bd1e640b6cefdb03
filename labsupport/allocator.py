"""Keep freed tensor memory in the process on Linux, instead of handing it back every time.

glibc's ``malloc`` serves blocks above its mmap threshold (at most 32 MiB when it adapts
the threshold itself) with fresh ``mmap`` pages and unmaps them on ``free``. A PyTorch
forward pass on the CPU allocates and frees activations of tens of MiB at every batch, so
every batch pays for new zeroed pages from the kernel: measured on the course's 2-core
machine, a denoiser + classifier forward pass spent 40-50% of its time in the kernel and ran
at half speed (``benchmarks/RESULTS.md``, "Memory allocator"). Raising the mmap and trim
thresholds keeps those blocks in the heap for reuse; the cost is that the process's memory
stays at its peak instead of shrinking after it.

The same effect can be had before start-up with ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_``; this module does it at run time, so it also helps a notebook
kernel started by JupyterLab or Colab.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: Set to ``0`` to leave glibc's allocator as it is.
ENV = "LABSUPPORT_KEEP_FREED_MEMORY"
#: ``mallopt`` parameters (glibc's ``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks below this are served from the heap (1 GiB: every activation the labs allocate).
MMAP_THRESHOLD = 1 << 30
#: Free memory at the top of the heap is returned to the system only above this (2 GiB).
TRIM_THRESHOLD = (1 << 31) - 1

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True if they are raised.

    A no-op (False) off Linux, on a C library other than glibc, or with
    ``LABSUPPORT_KEEP_FREED_MEMORY=0``. Safe to call any number of times.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(ENV, "1").strip() == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
