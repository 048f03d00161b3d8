"""Execute one job on the worker it landed on and time it by the contract's `measured_s`:
warm-up first, then the median of `repeats` executions; each starts with the inputs where
`data` says (host memory or the device) and ends when the result is complete and, for
`data: host`, back in host memory. Making the inputs is not timed.
"""

from __future__ import annotations

import functools
import math
import os
import socket
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from orchestrator import ops
from orchestrator.execute import allocator, sentinel
from orchestrator.execute.task import JobResult, Task
from orchestrator.placement import Placement
from orchestrator.workload.model import AUTO


TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
                "float64": torch.float64}


def to_device(x: Any, device: torch.device) -> Any:
    """Move a tensor, or a dict/tuple/list of tensors, to `device` (a no-op where it is)."""
    if isinstance(x, torch.Tensor):
        return x if x.device == device else x.to(device)  # .to() costs ~1 us even where it stays
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(to_device(v, device) for v in x)
    return x  # lists (python_dot's inputs), floats


def _sync(devices: list[torch.device]) -> None:
    for device in devices:
        sentinel.sync(device)


def _set_threads(threads: int | None) -> None:
    """Size torch's thread pools, and the OpenMP runtime its MKL runs on, to the cores this job
    owns (no oversubscription). NumPy's OpenBLAS pool stays at the worker's one thread: no kernel
    uses it, and enlarging it starts a thread that spins for about 0.1 s, which made the first
    job on a fresh 2-core worker run 5-7x slow (8.0 ms against 1.2-1.5 ms for a 512³ matmul)."""
    if not threads or getattr(_SIZED, "threads", None) == threads:
        return  # this thread's pools already have that size (resizing costs 0.1-0.7 ms a job)
    torch.set_num_threads(threads)
    _openmp().limit(limits=threads, user_api="openmp")
    _SIZED.threads = threads


_SIZED = threading.local()  # OpenMP's thread count is per calling thread


@functools.cache
def _openmp() -> Any:
    """threadpoolctl's view of the loaded OpenMP runtimes (torch loads its own at import)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def devices_for(placement: Placement, gpu_ids: list[int] | None = None) -> list[torch.device]:
    """torch devices for a placement on this worker; `gpu_ids` are the CUDA ordinals it owns.
    ORCH_FAKE_GPUS=N (tests only) stands N CPU devices in for GPUs."""
    if placement.device == "cpu":
        return [torch.device("cpu")]
    fake = int(os.environ.get("ORCH_FAKE_GPUS", "0"))
    if fake:
        return [torch.device("cpu")] * placement.gpus
    if not torch.cuda.is_available():
        raise RuntimeError("placement needs a CUDA GPU but this worker's torch sees none")
    ids = gpu_ids if gpu_ids is not None else list(range(placement.gpus))
    if len(ids) < placement.gpus or torch.cuda.device_count() < placement.gpus:
        raise RuntimeError(f"placement {placement} needs {placement.gpus} GPUs; this worker has {torch.cuda.device_count()}")
    return [torch.device("cuda", i) for i in ids[:placement.gpus]]


class InjectedFailure(RuntimeError):
    """Raised for jobs named in ORCH_FAIL_JOBS: fault injection for tests and drills."""


_INJECTED: dict[str, int] = {}  # failures injected so far in this process, per job


def _inject_failure(name: str | None) -> None:
    """ORCH_FAIL_JOBS=a,b:2 fails job a on every execution and job b on its first 2 in this process."""
    for entry in os.environ.get("ORCH_FAIL_JOBS", "").split(","):
        job, _, count = entry.rpartition(":") if entry.rpartition(":")[2].isdigit() else (entry, "", "")
        if job and job == name and (not count or _INJECTED.get(job, 0) < int(count)):
            _INJECTED[job] = _INJECTED.get(job, 0) + 1
            raise InjectedFailure(f"job {name} failed on purpose (ORCH_FAIL_JOBS)")


def _inject_crash(name: str | None) -> None:
    """ORCH_CRASH_JOBS=a,b kills this worker process (SIGKILL) on the first execution of job a or
    b on this machine (a marker file in ORCH_CRASH_MARKERS, default the temporary folder, makes it
    once), 0.2 s in, so what the worker already sent has left: worker deaths for tests and drills."""
    import signal
    import tempfile
    from pathlib import Path

    if not name or name not in os.environ.get("ORCH_CRASH_JOBS", "").split(","):
        return
    folder = Path(os.environ.get("ORCH_CRASH_MARKERS") or tempfile.gettempdir())
    try:
        (folder / f"orch-crashed-{name.encode().hex()}").open("x").close()
    except FileExistsError:
        return
    time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGKILL)


def _clocked(once: Callable[[], Any]) -> Callable[[], tuple[Any, float]]:
    """One execution and its wall time, here."""
    def run() -> tuple[Any, float]:
        started = time.perf_counter()
        result = once()
        return result, time.perf_counter() - started

    return run


def timed(once: Callable[[], Any] | None, warmup: int, repeats: int | str, *, warm_until_warm: bool = False,
          clock: Callable[[], tuple[Any, float]] | None = None) -> tuple[Any, list[float]]:
    """`warmup` untimed calls, then `repeats` timed ones: the last result and every time.
    With `warm_until_warm` (every job with a warm-up, and every GPU job) or `repeats="auto"`
    the warm-up goes on until the executions stop getting faster (`_warm`); `repeats="auto"`
    then times until the median's 95% interval is within +-5% or the budget is spent
    (AutoRepeats). `clock` runs one execution and says its time (a gang's ranks all take rank
    0's, so that they stop together); default: `once`, timed here."""
    run = clock or _clocked(once)
    auto = repeats == "auto"
    warmed: list[float] = []
    for _ in range(warmup):  # a warm-up's result is dropped at once: never two held beside the next
        warmed.append(run()[1])
    if auto or warm_until_warm:
        _warm(run, warmed)
    result = None
    times: list[float] = []
    spent = 0.0
    while True:
        result, took = run()
        times.append(took)
        spent += times[-1]
        if not auto:
            if len(times) >= repeats:  # type: ignore[operator]
                break
        elif len(times) >= AUTO.most or (len(times) >= AUTO.least and (
                spent >= AUTO.budget_s or median_interval(times) <= AUTO.precision)):
            break
    return result, times


def warm(times: list[float]) -> bool:
    """Whether executions timed `times` (in order) have stopped getting faster: the last
    AUTO.warm_agree of them within AUTO.warm_within of each other. One agreeing pair is not
    enough: on the development VM a 64 MB sum ran 4.1, 4.0, 3.3, 2.4, 2.1, 1.6, 1.6, 1.5 ms
    over fresh memory, and every time again after a second idle (docs/running.md)."""
    last = times[-AUTO.warm_agree:]
    return len(last) == AUTO.warm_agree and max(last) <= (1 + AUTO.warm_within) * min(last)


def _warm(run: Callable[[], tuple[Any, float]], times: list[float]) -> None:
    """Untimed executions after the `times` already run, until they are `warm`: at most
    AUTO.warm_most more, or AUTO.warm_budget_s of them."""
    times = list(times)
    spent = 0.0
    for _ in range(AUTO.warm_most):
        if warm(times) or spent >= AUTO.warm_budget_s:
            break
        took = run()[1]
        times.append(took)
        spent += took


def median_interval(times: list[float]) -> float:
    """Half the width of the distribution-free 95% confidence interval of the median, relative
    to the median: the order statistics j = floor(n/2 - 0.98 sqrt(n)) and k = ceil(1 + n/2 +
    0.98 sqrt(n)) (1-based; the normal approximation to the binomial). inf below 8 samples,
    where no such interval exists."""
    n = len(times)
    low = math.floor(n / 2 - 0.98 * math.sqrt(n)) - 1
    high = math.ceil(1 + n / 2 + 0.98 * math.sqrt(n)) - 1
    if low < 0 or high > n - 1:
        return math.inf
    ordered = sorted(times)
    return (ordered[high] - ordered[low]) / 2 / statistics.median(ordered)


def execute(task: Task, gpu_ids: list[int] | None = None) -> JobResult:
    """Run one job; returns measured_s, every timing, the check and where it ran."""
    _inject_failure(task.name)
    _inject_crash(task.name)
    allocator.steady()  # the allocator the profile measured with, whatever the process ran before
    op = ops.get(task.op)
    p = task.params
    placement = task.placement
    devices = devices_for(placement, gpu_ids)
    if placement.device == "cpu":
        _set_threads(task.threads)
    compute = devices[0]
    on_device = task.data == "device"
    if not on_device:
        home = torch.device("cpu")
    elif placement.device == "gpu":
        home = compute
    elif torch.cuda.is_available() and not os.environ.get("ORCH_FAKE_GPUS"):
        home = torch.device("cuda", 0)  # a CPU job whose inputs sit on a GPU copies them back
    else:
        home = torch.device("cpu")  # data: device with no GPU: inputs start in host memory
    probes = [sentinel.latest(compute)]  # the machine's speed as this job starts
    gen = torch.Generator().manual_seed(task.seed)
    inputs = op.make_inputs(p, TORCH_DTYPES[task.dtype], gen, home)
    work = {k: v for k, v in inputs.items() if k not in op.check_only}  # what the kernel reads
    split = len(devices) > 1

    def once() -> Any:
        if split:
            result = op.run_split(work, p, devices, data_on_host=not on_device)
        else:
            result = op.run(to_device(work, compute), p)
        if not on_device:
            result = to_device(result, torch.device("cpu"))
        _sync(devices)
        return result

    result, times = timed(once, task.warmup, task.repeats, warm_until_warm=task.warmup > 0 or placement.device == "gpu")
    if sum(times) >= sentinel.EVERY_S:
        probes.append(sentinel.latest(compute, force=True))  # and as it ends, where it ran long
    check = op.check(inputs, result, p, task.dtype) if task.checked else None
    return JobResult(measured_s=statistics.median(times), times_s=times, check=check, devices=[str(d) for d in devices],
                     host=socket.gethostname(), threads=torch.get_num_threads(), pid=os.getpid(), sentinel=probes)
