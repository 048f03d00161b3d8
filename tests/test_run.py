"""`orch run` for real: embedded Dask, Ray, an existing Dask cluster; failures, resume, runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import clusters
from tests.cli import interruptible, orch

DATA = Path(__file__).parent / "data"
SMALL = DATA / "every_op_small.yaml"


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return orch("run", *args, "--format", "json", env=env, timeout=timeout)


def test_every_op_on_embedded_dask(measured_profile):
    result = _run(str(SMALL), "--profile", str(measured_profile))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["backend"] == "dask" and report["run_id"]
    assert len(report["jobs"]) == 17
    for job in report["jobs"]:
        assert job["status"] == "ok", job
        assert job["measured_s"] > 0 and job["predicted_s"] > 0 and job["attempts"] == 1
        assert job["workers"] and job["workers"][0].startswith("tcp://127.0.0.1:")
        assert job["error"] is None and job["placement"] == "cpu"
    runs = json.loads(orch("runs", "--format", "json").stdout)
    assert runs[0]["run_id"] == report["run_id"] and runs[0]["status"] == "done"
    assert (runs[0]["done"], runs[0]["total"]) == (17, 17)


def test_every_op_on_ray(measured_profile):
    pytest.importorskip("ray")
    result = _run(str(SMALL), "--profile", str(measured_profile), "--backend", "ray")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["backend"] == "ray"
    assert [job["status"] for job in report["jobs"]] == ["ok"] * 17
    assert all(job["workers"][0].startswith("ray://") for job in report["jobs"])
    assert "Token authentication is enabled" in result.stderr


def test_a_failing_job_fails_alone_then_resume_finishes_it(measured_profile):
    env = {"ORCH_FAIL_JOBS": "solve,fft"}
    first = _run(str(SMALL), "--profile", str(measured_profile), env=env)
    assert first.returncode == 1, first.stderr
    report = json.loads(first.stdout)
    by_name = {job["name"]: job for job in report["jobs"]}
    assert by_name["solve"]["status"] == "failed" and "ORCH_FAIL_JOBS" in by_name["solve"]["error"]
    assert sum(job["status"] == "ok" for job in report["jobs"]) == 15
    runs = json.loads(orch("runs", "--format", "json").stdout)
    assert runs[0]["status"] == "failed"

    again = _run(str(SMALL), "--profile", str(measured_profile), "--resume", report["run_id"])
    assert again.returncode == 0, again.stderr
    resumed = {job["name"]: job for job in json.loads(again.stdout)["jobs"]}
    assert json.loads(again.stdout)["run_id"] == report["run_id"]
    assert resumed["solve"]["status"] == "ok" and resumed["solve"]["attempts"] == 2
    assert resumed["dot"]["attempts"] == 1, "finished jobs are not executed again"
    assert resumed["dot"]["measured_s"] == by_name["dot"]["measured_s"]


def test_resume_refuses_a_changed_workload(measured_profile, tmp_path):
    workload = tmp_path / "w.yaml"
    workload.write_text("version: 1\nname: w\njobs:\n  - {name: a, op: dot, n: 1000}\n")
    report = json.loads(_run(str(workload), "--profile", str(measured_profile)).stdout)
    workload.write_text("version: 1\nname: w\njobs:\n  - {name: a, op: dot, n: 2000}\n  - {name: b, op: sum, n: 10}\n")
    refused = _run(str(workload), "--profile", str(measured_profile), "--resume", report["run_id"])
    assert refused.returncode == 2 and "changed since the run started: changed a; added b" in refused.stderr


def test_forced_gpu_without_gpu_fails_fast(measured_profile):
    started = time.perf_counter()
    result = _run(str(SMALL), "--profile", str(measured_profile), "--placement", "gpu")
    assert result.returncode == 3
    assert "GPU" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert time.perf_counter() - started < 15
    assert json.loads(orch("runs", "--format", "json").stdout) == []


def test_gpu_jobs_route_to_gpu_workers_with_cpu_stand_ins():
    """A GPU profile with two CPU stand-ins for GPUs: GPU jobs go to the GPU worker (Dask
    resources), gpu:2 runs the split kernels."""
    workload = DATA / "gpu_standin.yaml"
    result = _run(str(workload), "--profile", "h100-sxm-8", env={"ORCH_FAKE_GPUS": "2"})
    assert result.returncode == 0, result.stderr
    jobs = {job["name"]: job for job in json.loads(result.stdout)["jobs"]}
    assert jobs["big-matmul"]["placement"] == "gpu:2"
    assert jobs["tiny-dot"]["placement"] == "cpu"
    assert jobs["big-matmul"]["workers"] != jobs["tiny-dot"]["workers"]  # GPU worker vs CPU worker
    assert "the cluster serves 2" in result.stderr


@pytest.fixture
def dask_cluster(tmp_path):
    """A real `dask scheduler` and two `dask worker` processes on 127.0.0.1."""
    with clusters.dask_cluster(tmp_path, workers=2) as found:
        yield found


def test_existing_dask_cluster_uses_both_workers_and_stays_up(measured_profile, dask_cluster, tmp_path):
    from distributed import Client

    address, procs = dask_cluster
    with Client(address, timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
    workload = tmp_path / "spread.yaml"
    workload.write_text("version: 1\nname: spread\njobs:\n  - name: m\n    op: matmul\n    m: 512\n    n: 512\n"
                        "    k: 512\n    repeats: 5\n    sweep: {seed: [0, 1, 2, 3, 4, 5, 6, 7]}\n")
    result = _run(str(workload), "--profile", str(measured_profile), "--address", address)
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)["jobs"]
    assert all(job["status"] == "ok" for job in jobs)
    assert len({job["workers"][0] for job in jobs}) == 2, "both workers took jobs"
    assert all(proc.poll() is None for proc in procs), "orch left the cluster running"
    with Client(address, timeout=30) as client:
        assert len(client.scheduler_info()["workers"]) == 2


@pytest.mark.parametrize("backend", ["dask", "ray"])
def test_half_precisions_and_long_vectors_end_to_end(measured_profile, backend):
    if backend == "ray":
        pytest.importorskip("ray")
    result = _run(str(DATA / "half_and_long.yaml"), "--profile", str(measured_profile), "--backend", backend,
                  "--no-learn")
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)["jobs"]
    assert len(jobs) == 15 and all(job["status"] == "ok" for job in jobs), [j for j in jobs if j["status"] != "ok"]


def test_unreachable_scheduler_is_exit_3(measured_profile):
    result = _run(str(SMALL), "--profile", str(measured_profile), "--address", "tcp://127.0.0.1:9")
    assert result.returncode == 3 and "unreachable" in result.stderr


def test_uncalibrated_prediction_within_35_percent_at_the_median(measured_profile):
    """Every op, milliseconds to about a second, on the embedded cluster, at sizes outside the
    profile's op reference sizes (tests/data/every_op.yaml names them)."""
    result = _run(str(DATA / "every_op.yaml"), "--profile", str(measured_profile), timeout=600)
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)["jobs"]
    assert {job["op"] for job in jobs} >= {"dot", "python_dot", "axpy", "sum", "fft", "matmul", "batched_matmul",
                                            "solve", "cholesky", "qr", "svd", "eigh", "lstsq", "kmeans",
                                            "train_linear", "train_mlp"}
    errors = [abs(job["predicted_s"] - job["measured_s"]) / job["measured_s"] for job in jobs]
    assert statistics.median(errors) <= 0.35, sorted(zip(errors, [j["name"] for j in jobs]))


def test_no_process_left_behind(measured_profile):
    before = _orch_processes()
    assert _run(str(SMALL), "--profile", str(measured_profile)).returncode == 0
    time.sleep(1)
    assert _orch_processes() - before == set()


def test_shutil_which_dask_cli_exists():
    assert shutil.which("dask", path=str(Path(sys.executable).parent))


def _long_workload(folder: Path) -> Path:
    """Six 2048^3 matmuls of ~2 s each on one core: a batch that is always mid-job when hit."""
    path = folder / "long.yaml"
    path.write_text("version: 1\nname: long\njobs:\n  - name: m\n    op: matmul\n    m: 2048\n    n: 2048\n"
                    "    k: 2048\n    repeats: 20\n    sweep: {seed: [0, 1, 2, 3, 4, 5]}\n")
    return path


def executing_worker(client, timeout: float = 120, settled_s: float = 0.5) -> str:
    """A worker that has been running the same task for `settled_s` (its attempt is logged), not
    one with tasks only queued or one whose task starts this very moment."""
    seen: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # a lambda travels by value (the workers cannot import this test module)
        running = client.run(lambda dask_worker: [str(ts.key) for ts in dask_worker.state.executing])
        now = time.monotonic()
        current = {(addr, key) for addr, keys in running.items() for key in keys}
        seen = {pair: seen.get(pair, now) for pair in current}
        settled = [pair for pair, since in seen.items() if now - since >= settled_s]
        if settled:
            return settled[0][0]
        time.sleep(0.1)
    raise AssertionError("no worker ran a job long enough")


def _busy_worker_group(address: str, procs: list[subprocess.Popen], timeout: float = 120) -> int:
    """The process group of a `dask worker` that is running a task."""
    from distributed import Client

    groups = {proc.pid for proc in procs[1:]}
    with Client(address, timeout=30) as client:
        busy = executing_worker(client, timeout)
        pid = client.run(os.getpid, workers=[busy])[busy]
    group = os.getpgid(pid)
    assert group in groups
    return group


def test_killed_worker_jobs_rerun_elsewhere(measured_profile, dask_cluster, tmp_path):
    """SIGKILL one of two workers mid-batch: the scheduler re-runs its job on the other, every
    job ends ok, and the re-run job reports two attempts."""
    from distributed import Client

    address, procs = dask_cluster
    with Client(address, timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
    workload = _long_workload(tmp_path)
    env = {**os.environ, "COLUMNS": "100"}
    run = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", str(workload), "--profile", str(measured_profile),
                            "--address", address, "--format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=env)
    victim = _busy_worker_group(address, procs)
    os.killpg(victim, signal.SIGKILL)
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    jobs = json.loads(out)["jobs"]
    assert [job["status"] for job in jobs] == ["ok"] * 6
    assert max(job["attempts"] for job in jobs) == 2, [(j["name"], j["attempts"], j["workers"], j["failures"]) for j in jobs]


def _orch_processes() -> set[int]:
    found = set()
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "distributed" in cmd or "dask" in cmd or "orchestrator" in cmd:
            found.add(int(pid))
    return found


def test_ctrl_c_interrupts_cleanly(measured_profile, tmp_path):
    """SIGINT mid-batch: exit 130, the run is `interrupted`, no process of orch or its cluster left."""
    before = _orch_processes()
    workload = _long_workload(tmp_path)
    run = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", str(workload), "--profile", str(measured_profile),
                            "--format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=interruptible)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # interrupt once the run is recorded and jobs are out
        runs = json.loads(orch("runs", "--format", "json").stdout)
        if runs and runs[0]["status"] == "running":
            break
        time.sleep(0.5)
    time.sleep(2)
    run.send_signal(signal.SIGINT)
    run.communicate(timeout=120)
    assert run.returncode == 130
    assert json.loads(orch("runs", "--format", "json").stdout)[0]["status"] == "interrupted"
    time.sleep(2)
    assert _orch_processes() - before == set()


def test_embedded_dask_listens_on_loopback_only():
    """Scheduler, its dashboard, nanny, worker and worker dashboard: every socket on 127.0.0.1."""
    import psutil

    from orchestrator.backends.dask import DaskBackend

    backend = DaskBackend(None)
    backend.start(cores=1, gpus=0)
    try:
        family = {os.getpid(), *(child.pid for child in psutil.Process().children(recursive=True))}
        listening = [c.laddr for c in psutil.net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN and c.pid in family]
        assert len(listening) >= 4
        assert {address.ip for address in listening} == {"127.0.0.1"}
    finally:
        backend.close()


def test_a_job_sizes_openmp_to_its_cores_and_leaves_numpys_blas_pool_alone():
    """A CPU job gets its cores in torch and OpenMP (what torch's MKL runs on); numpy's OpenBLAS
    pool stays at the worker's one thread. Enlarging it started a thread that spun for ~0.1 s and
    made the first job on a fresh 2-core worker 5-7x slow (docs/benchmarks.md, section 2)."""
    code = ("import json, torch; from threadpoolctl import threadpool_info; "
            "from orchestrator.execute.harness import _set_threads; _set_threads(2); "
            "print(json.dumps({'torch': torch.get_num_threads(), "
            "'pools': {i['internal_api']: i['num_threads'] for i in threadpool_info()}}))")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", f"import numpy; {code}"], capture_output=True, text=True, env=env,
                          timeout=120, check=True)
    found = json.loads(done.stdout)
    assert found["torch"] == 2 and found["pools"]["openmp"] == 2
    assert found["pools"].get("openblas", 1) == 1, found


def test_the_run_table_keeps_one_line_a_job_at_80_columns():
    import io

    from rich.console import Console

    from orchestrator.run.render import print_table
    from orchestrator.run.runner import RunReport

    def job(name, worker):
        return {"name": name, "placement": "cpu", "predicted_s": 0.0012, "measured_s": 0.0013, "error_pct": -7.7,
                "status": "ok", "error": None, "workers": [worker]}

    for workers in (["tcp://127.0.0.1:34101"], ["tcp://127.0.0.2:40001", "tcp://127.0.0.3:40002"]):
        report = RunReport("20261127-121704-ba36", "demo", "dask", "vm",
                           jobs=[job(f"gemm-sweep[m={m}]", workers[i % len(workers)])
                                 for i, m in enumerate((512, 1024, 2048))])
        out = io.StringIO()
        print_table(report, Console(file=out, width=80))
        lines = out.getvalue().splitlines()
        assert all(len(line) <= 80 for line in lines)
        rows = [line for line in lines if "gemm-sweep" in line]
        assert len(rows) == 3, out.getvalue()  # no job wraps onto a second line
        assert all(worker in out.getvalue() for worker in workers)  # spelled out beneath the table


def _one_thread_profile(measured_profile, tmp_path, faster: dict[str, float]):
    """The measured profile with its ops' one-thread references at `faster[op]` times their
    all-core ones."""
    import yaml

    data = yaml.safe_load(measured_profile.read_text())
    for op, single in faster.items():
        benches = [b for b in data["cpu"]["op_benchmarks"][op] if b.get("threads") != 1]
        data["cpu"]["op_benchmarks"][op] = benches + [
            {**b, "threads": 1, "measured_s": b["measured_s"] * single} for b in benches if b.get("dtype") == "float32"]
    profile = tmp_path / "one-thread.yaml"
    profile.write_text(yaml.safe_dump(data))
    return profile


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="cores side by side need two")
def test_one_thread_jobs_run_side_by_side_each_on_its_own_core(measured_profile, tmp_path):
    """Jobs on one thread hold one core each and run beside each other (the plan puts them on
    different cores at once); a job on every core holds them all; `--exclusive` gives every
    job every core, one job at a time."""
    profile = _one_thread_profile(measured_profile, tmp_path, {"dot": 0.1, "matmul": 10.0})
    workload = tmp_path / "w.yaml"
    workload.write_text("version: 1\nname: w\ndefaults: {repeats: 30}\njobs:\n"
                        "  - {name: d, op: dot, n: 4M, sweep: {n: [4M, 5M, 6M, 7M]}}\n"
                        "  - {name: m, op: matmul, m: 256, n: 256, k: 256}\n")
    cores = os.cpu_count()
    plan = json.loads(orch("plan", str(workload), "--profile", str(profile), "-f", "json").stdout)
    slots = {job["name"]: (job["start_s"], job["devices"]) for job in plan["jobs"]}
    dots = [slots[name] for name in slots if name.startswith("d")]
    assert {tuple(devices) for _, devices in dots} == {("cpu:0",), ("cpu:1",)}
    assert len({start for start, _ in dots}) < len(dots)  # two start together
    assert slots["m"][1] == ["cpu"]
    exclusive = json.loads(orch("plan", str(workload), "--profile", str(profile), "--exclusive", "-f", "json").stdout)
    assert exclusive["makespan_s"] > plan["makespan_s"]
    assert all(job["devices"] == ["cpu"] for job in exclusive["jobs"])

    result = _run(str(workload), "--profile", str(profile), "--no-learn")
    assert result.returncode == 0, result.stderr
    held = {job["name"]: job["cores"] for job in json.loads(result.stdout)["jobs"]}
    assert held["m"] == list(range(cores))
    assert all(len(held[name]) == 1 for name in held if name.startswith("d"))
    assert len({held[name][0] for name in held if name.startswith("d")}) > 1  # both workers ran dots
    result = _run(str(workload), "--profile", str(profile), "--no-learn", "--exclusive")
    assert result.returncode == 0, result.stderr
    assert all(job["cores"] == list(range(cores)) for job in json.loads(result.stdout)["jobs"])


def test_a_job_faster_on_one_thread_runs_on_one(measured_profile, tmp_path):
    """A profile whose dot ran 10x faster on one thread than on all the cores, and whose matmul
    ran 10x slower so: the plan puts dot on one thread, the worker runs it so, and matmul on the
    cores it is given."""
    profile = _one_thread_profile(measured_profile, tmp_path, {"dot": 0.1, "matmul": 10.0})
    workload = tmp_path / "w.yaml"
    workload.write_text("version: 1\nname: w\njobs:\n  - {name: d, op: dot, n: 4M}\n"
                        "  - {name: m, op: matmul, m: 256, n: 256, k: 256}\n")
    plan = json.loads(orch("plan", str(workload), "--profile", str(profile), "-f", "json").stdout)
    assert {job["name"]: job["threads"] for job in plan["jobs"]} == {"d": 1, "m": None}
    result = _run(str(workload), "--profile", str(profile))
    assert result.returncode == 0, result.stderr
    threads = {job["name"]: job["threads"] for job in json.loads(result.stdout)["jobs"]}
    assert threads["d"] == 1 and threads["m"] == (os.cpu_count() or 1)
