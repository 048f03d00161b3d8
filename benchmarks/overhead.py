"""orch's own overhead: 200 small jobs through `orch run` (plan, SQLite records, progress)
against the same kernels submitted directly with `Client.submit` (and `ray.remote`), on the
same kind of embedded cluster, in one run. Goal: ratio <= 1.10.

    .venv/bin/python benchmarks/overhead.py [--jobs 200] [--ray]

Both sides are timed from the first submission to the last result (cluster start-up excluded),
and end to end (start-up included). The bare Dask cluster gets the same worker set-up as orch's
(preloaded kernels, no MALLOC_TRIM_THRESHOLD_), so the ratio is orchestration alone.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.hardware.cpu import discover_cpu  # noqa: E402
from orchestrator.plan.hardware import hardware_for  # noqa: E402
from orchestrator.profile import store as profiles  # noqa: E402
from orchestrator.run.runner import run_workload  # noqa: E402
from orchestrator.workload.loader import parse  # noqa: E402

JOB = {"op": "matmul", "params": {"m": 128, "n": 128, "k": 128}, "dtype": "float32", "repeats": 3, "warmup": 1,
       "data": "host", "placement": "cpu"}


def workload(jobs: int):
    return parse({"version": 1, "name": "overhead", "jobs": [
        {"name": "m", "op": "matmul", "m": 128, "n": 128, "k": 128, "sweep": {"seed": list(range(jobs))}}]},
        "overhead.yaml", "bench")


def through_orch(jobs: int, backend: str) -> tuple[float, float]:
    marks: dict[str, float] = {}

    def event(kind: str, details: dict) -> None:
        if kind == "submitting":
            marks["submit"] = time.perf_counter()
        elif kind == "job":
            marks["last"] = time.perf_counter()  # recorded in SQLite before it is reported

    started = time.perf_counter()
    report = run_workload(workload(jobs), hardware_for(profiles.resolve("cpu-c7i-8xlarge")), backend=backend,
                          on_event=event, learn=False)
    ended = time.perf_counter()
    assert all(job["status"] == "ok" for job in report.jobs)
    return marks["last"] - marks["submit"], ended - started


def direct_dask(jobs: int, threads: int) -> tuple[float, float]:
    import dask
    from distributed import Client, LocalCluster

    from orchestrator.backends.dask import PRELOAD, WORKER_ENVIRON
    from orchestrator.kernels.harness import execute

    started = time.perf_counter()
    with dask.config.set({"distributed.nanny.pre-spawn-environ": WORKER_ENVIRON}):
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL, preload=PRELOAD)
    client = Client(cluster)
    submit = time.perf_counter()
    futures = [client.submit(execute, {**JOB, "seed": seed, "threads": threads}, pure=False) for seed in range(jobs)]
    client.gather(futures)
    done = time.perf_counter()
    client.close()
    cluster.close()
    return done - submit, time.perf_counter() - started


def direct_ray(jobs: int, threads: int) -> tuple[float, float]:
    import ray

    from orchestrator.kernels.harness import execute

    started = time.perf_counter()
    ray.init(num_cpus=threads, include_dashboard=False, log_to_driver=False, configure_logging=False)
    remote = ray.remote(execute).options(num_cpus=threads)
    submit = time.perf_counter()
    ray.get([remote.remote({**JOB, "seed": seed, "threads": threads}) for seed in range(jobs)])
    done = time.perf_counter()
    ray.shutdown()
    return done - submit, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--ray", action="store_true", help="also compare with ray.remote")
    args = parser.parse_args()
    os.environ.setdefault("ORCH_HOME", tempfile.mkdtemp(prefix="orch-bench-"))
    threads = discover_cpu().cores_logical
    rows = [("dask", through_orch(args.jobs, "dask"), direct_dask(args.jobs, threads))]
    if args.ray:
        rows.append(("ray", through_orch(args.jobs, "ray"), direct_ray(args.jobs, threads)))
    print(f"{args.jobs} jobs of matmul 128^3 (1 warm-up + 3 timed executions each), {threads} cores")
    print("backend  orch submit->done  direct submit->done  ratio  | orch end-to-end  direct end-to-end  ratio")
    for name, (orch_run, orch_all), (bare_run, bare_all) in rows:
        print(f"{name:7}  {orch_run:15.2f} s  {bare_run:17.2f} s  {orch_run / bare_run:5.2f}  | "
              f"{orch_all:13.2f} s  {bare_all:15.2f} s  {orch_all / bare_all:5.2f}")


if __name__ == "__main__":
    main()
