"""glibc malloc's thresholds for a process that times kernels, so a kernel's temporaries cost
the same in every process and at every point of its life.

Left to itself glibc serves an allocation above its mmap threshold with fresh pages from the
kernel (zeroed, faulted in one by one) and gives them back on free; the threshold starts at
128 KiB and rises to the largest such block freed so far, and the heap's top is trimmed past
twice that. A kernel's multi-megabyte temporaries therefore come from fresh pages or from the
heap depending on what the process ran before: k-means of 70,000 x 32 float32 took 48-58 ms
in one process and 98-134 ms in another (2-core VM), and a Dask worker given
MALLOC_TRIM_THRESHOLD_=65536 (distributed's default for its nannies) ran it at 170 ms, a
batched float64 GEMM 2.4x and an MLP's training 1.6x slower than the profile measured them.

`steady()` fixes the mmap threshold at glibc's largest (32 MiB on 64-bit: larger blocks still
come from the kernel each time, where the page faults are small next to the work) and keeps up
to `TRIM_THRESHOLD` of freed heap for reuse. The profiler and every process that runs a job
call it before timing anything, so the profile and the jobs see one allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's ceiling for it on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 256 * 2**20


@functools.cache
def steady() -> bool:
    """Set this process's malloc thresholds (once); False where the C library is not glibc."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
