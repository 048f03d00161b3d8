"""Issue 6 drills with real processes: workers SIGKILLed mid-batch, a job exhausting a worker's
memory, orch SIGKILLed at random points and resumed, retries, TLS and loopback-only listeners."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from orchestrator.execute.task import Task
from tests import clusters
from tests.cli import orch
from tests.test_run import executing_worker


def _start_orch(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", "run", *args, "--format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def _sweep(folder: Path, name: str, jobs: int, size: int, repeats: int, extra: str = "") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"version: 1\nname: {name}\njobs:\n  - name: m\n    op: matmul\n    m: {size}\n    n: {size}\n"
                    f"    k: {size}\n    repeats: {repeats}\n{extra}    sweep: {{seed: {list(range(jobs))}}}\n")
    return path


def _done(run_id: str | None = None) -> tuple[str, str, int] | None:
    """(run_id, status, jobs done) of the newest run, read from the store as `orch runs` does."""
    from orchestrator.results.store import ResultStore

    store = ResultStore()
    try:
        found = [r for r in store.runs() if run_id in (None, r.run_id)]
    finally:
        store.close()
    return (found[0].run_id, found[0].status, found[0].done) if found else None


def _wait_done(at_least: int, run: subprocess.Popen, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.poll() is not None:
            raise AssertionError(f"orch ended early ({run.returncode}): {run.communicate()[1]}")
        state = _done()
        if state and state[2] >= at_least:
            return state[0]
        time.sleep(0.1)
    raise AssertionError(f"fewer than {at_least} jobs done after {timeout} s")


def test_sixty_jobs_on_three_workers_one_sigkilled(measured_profile, tmp_path):
    """The must-show: 60 jobs, an existing 3-worker cluster, one worker process SIGKILLed
    mid-run (its nanny restarts it): 60/60 ok; the job it held re-ran elsewhere and says why."""
    from distributed import Client

    workload = _sweep(tmp_path, "sixty", 60, 1024, 4)
    with clusters.dask_cluster(tmp_path, workers=3) as (address, _procs):
        clusters.wait_for_workers(address, 3)
        run = _start_orch(str(workload), "--profile", str(measured_profile), "--address", address)
        _wait_done(8, run)
        with Client(address, timeout=30) as client:
            busy = [executing_worker(client, settled_s=0.1)]  # its jobs take ~0.3 s
            pid = client.run(os.getpid, workers=busy)[busy[0]]
        os.kill(pid, signal.SIGKILL)
        out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err
    jobs = json.loads(out)["jobs"]
    assert len(jobs) == 60 and [job["status"] for job in jobs] == ["ok"] * 60
    rerun = [job for job in jobs if job["attempts"] > 1]
    assert rerun, "the killed worker's job was re-run"
    failure = rerun[0]["failures"][0]
    assert failure["error_type"] == "WorkerDied" and failure["worker"] == busy[0]
    assert "killed by signal 9 (SIGKILL)" in failure["error"]
    assert _done()[1:] == ("done", 60)


def test_job_exhausting_worker_memory_fails_with_the_cause(measured_profile, tmp_path):
    """A job that outgrows its worker's memory limit kills a worker on every attempt: it is marked
    failed with the signal, the memory at death and the worker; the rest of the batch finishes."""
    workload = tmp_path / "hog.yaml"
    workload.write_text("version: 1\nname: hog\njobs:\n  - {name: hog, op: matmul, m: 12000, n: 12000, k: 12000}\n"
                        "  - {name: small, op: matmul, m: 64, n: 64, k: 64}\n")
    env = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
    with clusters.dask_cluster(tmp_path, workers=2, worker_args=("--memory-limit", "700MiB"), env=env) as (address, _):
        clusters.wait_for_workers(address, 2)
        result = orch("run", str(workload), "--profile", str(measured_profile), "--address", address,
                      "--format", "json", timeout=300)
    assert result.returncode == 1, result.stderr
    jobs = {job["name"]: job for job in json.loads(result.stdout)["jobs"]}
    assert jobs["small"]["status"] == "ok"
    hog = jobs["hog"]
    assert hog["status"] == "failed" and hog["attempts"] == 2
    assert hog["error"].startswith("KilledWorker: its worker died on each of 2 attempts")
    assert all(f["error_type"] == "WorkerDied" for f in hog["failures"]) and len(hog["failures"]) == 2
    assert "700 MiB memory limit" in hog["error"] and "terminated by the nanny" in hog["error"], hog["error"]
    assert hog["failures"][-1]["worker"] in hog["error"]


def test_job_errors_retry_only_when_the_workload_opts_in(tmp_path):
    workload = tmp_path / "flaky.yaml"
    workload.write_text("version: 1\nname: flaky\njobs:\n"
                        "  - {name: flaky, op: dot, n: 1000, retries_on_error: 2}\n"
                        "  - {name: broken, op: dot, n: 1000}\n")
    result = orch("run", str(workload), "--profile", "cpu-c7i-8xlarge", "--format", "json",
                  env={"ORCH_FAIL_JOBS": "flaky:1,broken:1"})
    assert result.returncode == 1, result.stderr
    jobs = {job["name"]: job for job in json.loads(result.stdout)["jobs"]}
    assert jobs["flaky"]["status"] == "ok" and jobs["flaky"]["attempts"] == 2
    assert [f["error_type"] for f in jobs["flaky"]["failures"]] == ["InjectedFailure"]
    assert jobs["broken"]["status"] == "failed" and jobs["broken"]["attempts"] == 1
    assert jobs["broken"]["error"].startswith("InjectedFailure: job broken failed on purpose")


def test_orch_sigkilled_at_random_points_then_resumed(measured_profile, tmp_path):
    """kill -9 of orch at random points of a batch, three times over: each time `orch runs` says
    interrupted with the jobs done so far; --resume finishes the rest and never re-executes a
    finished job (its timings are the ones recorded before the kill)."""
    workload = _sweep(tmp_path, "resumable", 20, 1536, 5)  # ~0.3 s a job
    rng = random.Random(int(os.environ.get("ORCH_TEST_SEED", "6")))
    run_id = None
    finished_before: dict[str, list[float]] = {}
    for attempt in range(3):
        args = [str(workload), "--profile", str(measured_profile)] + (["--resume", run_id] if run_id else [])
        run = _start_orch(*args)
        done_at_start = _done(run_id)[2] if run_id else 0
        if attempt < 2:  # the last kill may land while the resumed run is still starting
            run_id = _wait_done(done_at_start + 1, run)
        time.sleep(rng.uniform(0.0, 1.0))  # a random point: between commits, mid-job, mid-commit
        children = psutil.Process(run.pid).children(recursive=True)
        run.kill()
        run.wait(timeout=30)
        _, status, done = _done(run_id)
        assert status == "interrupted", f"kill {attempt}: {status}"
        rows = _rows(run_id)
        assert done == sum(row.status == "ok" for row in rows)
        for row in rows:  # a finished job is never executed again
            if row.name in finished_before:
                assert row.times_s == finished_before[row.name] and row.attempts == 1
            elif row.status == "ok":
                finished_before[row.name] = row.times_s
        _wait_gone(children)
    result = orch("run", str(workload), "--profile", str(measured_profile), "--resume", run_id, "--format", "json",
                  timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["run_id"] == run_id and [job["status"] for job in report["jobs"]] == ["ok"] * 20
    by_name = {job["name"]: job for job in report["jobs"]}
    for name, times in finished_before.items():
        assert by_name[name]["times_s"] == times and by_name[name]["attempts"] == 1
    assert _done(run_id)[1:] == ("done", 20)


def _rows(run_id: str) -> list:
    from orchestrator.results.store import ResultStore

    store = ResultStore()
    try:
        return store.jobs(run_id)
    finally:
        store.close()


def _wait_gone(children: list[psutil.Process], timeout: float = 60) -> None:
    """The embedded cluster of a SIGKILLed orch goes away by itself (its workers lose the
    scheduler and exit); wait for it so the next round starts clean."""
    gone, alive = psutil.wait_procs(children, timeout=timeout)
    assert not alive, f"processes left behind by the killed orch: {[p.pid for p in alive]}"


def _listening(family: set[int]) -> list:
    return [c.laddr for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in family]


def _family() -> set[int]:
    return {os.getpid(), *(child.pid for child in psutil.Process().children(recursive=True))}


def test_embedded_ray_listens_on_loopback_only():
    """GCS, raylet, agents and a worker that ran a task: every socket on loopback."""
    pytest.importorskip("ray")
    from orchestrator.backends.ray import RayBackend

    auth_mode = os.environ.get("RAY_AUTH_MODE")  # ray.init sets it in this process

    backend = RayBackend(None)
    backend.start(cores=1, gpus=0)
    try:
        backend.submit("probe", Task("probe", "dot", {"n": 1000}, repeats=1, warmup=0, threads=1), cores=1, gpus=0)
        assert [o.result is not None for batch in backend.results() for o in batch] == [True]
        listening = _listening(_family())
        assert len(listening) >= 5
        assert all(ipaddress.ip_address(a.ip).is_loopback or a.ip == "::ffff:127.0.0.1" for a in listening), listening
    finally:
        backend.close()
        if auth_mode is None:  # keep it from leaking into later tests' subprocesses
            os.environ.pop("RAY_AUTH_MODE", None)


def test_embedded_dask_takes_the_retry_limit():
    from orchestrator.backends.dask import DaskBackend, _allowed_failures

    backend = DaskBackend(None, retries=1)
    backend.start(cores=1, gpus=0)
    try:
        assert backend.client.run_on_scheduler(_allowed_failures) == 1
    finally:
        backend.close()


def _non_loopback_ip() -> str | None:
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family.name == "AF_INET" and not ipaddress.ip_address(address.address).is_loopback:
                return address.address
    return None


def test_non_loopback_tcp_scheduler_warns(measured_profile, tmp_path):
    """The warning comes before connecting (here the connection is refused: exit 3)."""
    ip = _non_loopback_ip()
    if ip is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    workload = _sweep(tmp_path, "one", 1, 64, 1)
    result = orch("run", str(workload), "--profile", str(measured_profile), "--address", f"tcp://{ip}:9")
    assert result.returncode == 3
    assert f"warning: --address tcp://{ip}:9: tcp:// is unauthenticated and unencrypted" in result.stderr
    loopback = orch("run", str(workload), "--profile", str(measured_profile), "--address", "tcp://127.0.0.1:9")
    assert "warning" not in loopback.stderr


def _certificates(folder: Path) -> dict[str, Path]:
    """A CA and one certificate for 127.0.0.1 signed by it (scheduler, workers and orch share it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("orch test CA")).issuer_name(name("orch test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False).sign(ca_key, hashes.SHA256()))
    files = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    files["key"].chmod(0o600)
    return files


def test_tls_scheduler_end_to_end(measured_profile, tmp_path):
    """A tls:// scheduler and workers with certificates: orch runs with --tls-*, and without
    them it refuses before connecting (exit 2)."""
    from distributed.security import Security

    files = _certificates(tmp_path)
    tls = ("--tls-ca-file", str(files["ca"]), "--tls-cert", str(files["cert"]), "--tls-key", str(files["key"]))
    workload = _sweep(tmp_path, "secure", 4, 128, 2)
    with clusters.dask_cluster(tmp_path, workers=2, scheduler_args=("--protocol", "tls", *tls),
                               worker_args=tls) as (address, _):
        assert address.startswith("tls://127.0.0.1:")
        security = Security(tls_ca_file=str(files["ca"]), tls_client_cert=str(files["cert"]),
                            tls_client_key=str(files["key"]), require_encryption=True)
        clusters.wait_for_workers(address, 2, security=security)
        refused = orch("run", str(workload), "--profile", str(measured_profile), "--address", address)
        result = orch("run", str(workload), "--profile", str(measured_profile), "--address", address, *tls,
                      "--format", "json")
    assert refused.returncode == 2 and "--tls-ca-file, --tls-cert and --tls-key" in refused.stderr
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)["jobs"]
    assert [job["status"] for job in jobs] == ["ok"] * 4
    assert all(job["workers"][0].startswith("tls://127.0.0.1:") for job in jobs)
