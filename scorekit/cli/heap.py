"""Keep freed tensor memory in the process heap on glibc (a CPU speed setting for the CLI).

glibc serves allocations above its mmap threshold (128 KiB at start) with a fresh
``mmap`` and hands them back with ``munmap`` when freed, and it trims the heap top
when more than the trim threshold is free. Every large temporary tensor then
page-faults its memory in again on the next step. On the 2-core machine the
sampling pass of ``ncsn-digits`` (1,000 images, 48 x 8 x 8 activations) took 450 ms
with the defaults and 300-340 ms with freed blocks kept in the heap; a training step
gained up to 10 %. PyTorch's CPU tuning guides reach the same end by preloading
jemalloc or tcmalloc; this needs nothing installed.

The cost is the usual one of a caching allocator: the process keeps its peak heap
instead of returning it to the system. Only the ``scorekit`` command calls this;
importing scorekit changes nothing. ``SCOREKIT_MALLOC_TUNING=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: glibc's largest allowed mmap threshold on 64-bit systems; blocks above it are still mmapped
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; returns whether they were set.

    A no-op (``False``) off Linux, on a C library without ``mallopt`` (musl), or when
    the environment sets ``SCOREKIT_MALLOC_TUNING=0``.
    """
    if os.environ.get("SCOREKIT_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
