"""What a process that times jobs runs with: glibc's allocator as execute/allocator.py sets it
(a kernel's multi-MiB temporaries come from the reused heap, not from fresh pages, whatever the
process was told by its parent: Dask's nanny exports MALLOC_TRIM_THRESHOLD_=65536, which pins
glibc's mmap threshold at 128 KiB), and, on the embedded cluster, no Dask sampling profiler."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

GLIBC = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")

PROBE = textwrap.dedent("""
    import ctypes, ctypes.util, json, sys
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
    if not hasattr(libc, "mallinfo2"):
        print(json.dumps(None)); sys.exit()
    libc.mallinfo2.restype = Info
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    SIZE = 4 * 2**20  # a k-means distance matrix of 70,000 x 16 float32

    def block():
        before = libc.mallinfo2()
        pointer = libc.malloc(SIZE)
        held = libc.mallinfo2()
        libc.free(pointer)
        after = libc.mallinfo2()
        return {"mapped": held.hblkhd - before.hblkhd, "heap_kept": after.arena}

    first = block()
    if sys.argv[1] == "steady":
        from orchestrator.execute import allocator
        assert allocator.steady()
    print(json.dumps({"before": first, "after": block()}))
""")


def _blocks(mode: str) -> dict:
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True)
    import json

    found = json.loads(out.stdout)
    if found is None:
        pytest.skip("glibc without mallinfo2 (< 2.33)")
    return found


@GLIBC
def test_a_worker_told_to_trim_serves_every_large_block_from_fresh_pages():
    found = _blocks("as-told")
    assert found["before"]["mapped"] >= 4 * 2**20
    assert found["after"]["mapped"] >= 4 * 2**20  # every time: the threshold never rises


@GLIBC
def test_steady_serves_large_blocks_from_the_heap_and_keeps_it_for_the_next():
    found = _blocks("steady")
    assert found["before"]["mapped"] >= 4 * 2**20  # as the parent left it
    assert found["after"]["mapped"] == 0
    assert found["after"]["heap_kept"] >= 4 * 2**20  # freed, and not trimmed back to the kernel


def _worker_settings() -> dict:
    import dask

    from orchestrator.backends.dask import QUIET

    return {"profiler": dask.config.get("distributed.worker.profile.enabled"),
            "trim": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
            "timers": {key: dask.config.get(key) for key in QUIET}}


def test_embedded_workers_time_jobs_without_dasks_sampling_profiler_or_its_malloc_trim(monkeypatch):
    """The embedded cluster's workers run with Dask's statistical profiler off (it woke every
    10 ms and slowed two-thread jobs ~3% on 2 cores) and its watchers' timers slowed, the
    nannies' look at memory too (`QUIET`: the held-out workload ran 5-9% faster); without the
    nanny's MALLOC_TRIM_THRESHOLD_ (execute/allocator.py); and this process keeps its own environment
    (the nannies set OMP_NUM_THREADS=1 and the rest in the process they run in: every process
    started after them here ran on one thread)."""
    from orchestrator.backends.dask import QUIET, WORKER_ENVIRON, DaskBackend

    for name in WORKER_ENVIRON:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    before = {name: os.environ.get(name) for name in [*WORKER_ENVIRON, "PYTHONHASHSEED"]}
    backend = DaskBackend(None)
    backend.start(cores=2, gpus=0)
    try:
        assert {name: os.environ.get(name) for name in before} == before
        found = backend.client.run(_worker_settings)
        assert len(found) == 2
        assert all(settings == {"profiler": False, "trim": None, "timers": QUIET} for settings in found.values()), found
        assert {nanny.memory_manager.memory_monitor_interval for nanny in backend.cluster.workers.values()} == {1.0}
    finally:
        backend.close()
    assert {name: os.environ.get(name) for name in before} == before
