"""Hostile inputs and states, as a hostile user or environment would try them: each is one line
on stderr, the contract's exit code, no traceback, and nothing written where it was not asked."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.cli import interruptible, orch

ROOT = Path(__file__).resolve().parent.parent
TINY = "version: 1\nname: tiny\njobs:\n  - {name: d, op: dot, n: 1000}\n"


def _one_line(result: subprocess.CompletedProcess, code: int, *words: str) -> str:
    err = result.stderr
    assert result.returncode == code, (result.returncode, err)
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err and "\x1b" not in err
    for word in words:
        assert word in err, (word, err)
    return err


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture
def silent_listener():
    """A TCP port that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


@pytest.fixture
def http_server():
    process = subprocess.Popen([sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N ..."
    yield int(line.split(" port ")[1].split()[0])
    process.terminate()
    process.wait(timeout=10)


# ---- addresses ----------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["plan", "run"])
def test_a_silent_listener_is_not_a_dask_scheduler(command, tiny, silent_listener):
    """The default 10 s connect timeout: one line well inside 40 s (it hung until killed)."""
    started = time.monotonic()
    result = orch(command, str(tiny), "--profile", "cpu-c7i-8xlarge", "--address", f"tcp://127.0.0.1:{silent_listener}",
                  timeout=60)
    assert time.monotonic() - started < 40
    _one_line(result, 3, "not a Dask scheduler", f"127.0.0.1:{silent_listener}", "sent nothing")


def test_an_http_server_is_not_a_dask_scheduler_nor_a_ray_cluster(tiny, http_server):
    fast = {"ORCH_CONNECT_TIMEOUT_S": "3"}
    _one_line(orch("run", str(tiny), "--profile", "cpu-c7i-8xlarge", "--address", f"tcp://127.0.0.1:{http_server}",
                   env=fast), 3, "not a Dask scheduler")
    _one_line(orch("profile", "--address", f"tcp://127.0.0.1:{http_server}", env=fast), 3, "not a Dask scheduler")
    pytest.importorskip("ray")
    err = _one_line(orch("run", str(tiny), "--profile", "cpu-c7i-8xlarge", "--backend", "ray", "--address",
                         f"127.0.0.1:{http_server}", env=fast, timeout=60), 3, "not a Ray cluster")
    assert "HTTP" in err or "DOCTYPE" in err  # what answered


@pytest.mark.parametrize(("address", "code", "words"), [
    ("garbage", 2, ("not an address", "tcp://host:8786")),
    ("tcp://127.0.0.1:99999", 2, ("not an address",)),
    ("http://127.0.0.1:8786", 2, ("not an address",)),
    ("tcp://no-such-host.invalid:8786", 3, ("cannot resolve",)),
    ("tcp://127.0.0.1:9", 3, ("unreachable",)),
])
def test_bad_addresses(address, code, words, tiny):
    started = time.monotonic()
    _one_line(orch("plan", str(tiny), "--profile", "cpu-c7i-8xlarge", "--address", address), code, *words)
    assert time.monotonic() - started < 15  # a garbage address took 21 s and a Client.__del__ traceback


def test_the_connect_timeout_is_checked():
    _one_line(orch("plan", "workloads/demo.yaml", "--profile", "h100-sxm", "--address", "tcp://127.0.0.1:9",
                   env={"ORCH_CONNECT_TIMEOUT_S": "soon"}), 2, "ORCH_CONNECT_TIMEOUT_S")


# ---- what the user typed, printed as text ---------------------------------------------------------

@pytest.mark.parametrize(("args", "shown"), [
    (("report", "[/x]"), "no run '[/x]'"),
    (("report", "[bold]x"), "no run '[bold]x'"),
    (("plan", "workloads/demo.yaml", "--profile", "h100-sxm", "--explain", "d[/seed]"), "no job 'd[/seed]'"),
    (("plan", "workloads/demo.yaml", "--profile", "h100-sxm", "--explain", "d[seed=99]"), "no job 'd[seed=99]'"),
    (("run", "workloads/demo.yaml", "--profile", "h100-sxm", "--resume", "[/x]"), "no run '[/x]'"),
    (("report", "\x1b]0;owned\x07"), "no run '\\x1b]0;owned\\x07'"),
])
def test_markup_and_escapes_in_arguments_are_printed_as_text(args, shown):
    _one_line(orch(*args), 2, shown)


def test_markup_in_a_workload_name_is_refused_by_name(tmp_path):
    workload = tmp_path / "w.yaml"
    workload.write_text('version: 1\nname: "[/red]"\njobs:\n  - {name: d, op: dot, n: 1000}\n')
    _one_line(orch("plan", str(workload), "--profile", "h100-sxm"), 2, "name:", "[/red]")


def _profile(tmp_path: Path, name: str, edit) -> Path:
    text = (ROOT / "profiles" / "cpu-c7i-8xlarge.yaml").read_text()
    path = tmp_path / name
    path.write_text(edit(text))
    return path


def test_escape_codes_in_a_profile_are_refused(tmp_path):
    path = _profile(tmp_path, "esc.yaml", lambda t: t.replace("description:", 'description: "\\e]0;pwned\\a\\e[31mred" #'))
    _one_line(orch("profile", "show", str(path)), 2, "description", "control characters")


@pytest.mark.parametrize("value", [".inf", ".nan", "-.inf"])
def test_infinite_rates_are_refused(tmp_path, value):
    import re

    path = _profile(tmp_path, "inf.yaml", lambda t: re.sub(r"(\n  memory_bandwidth:) \S+", rf"\1 {value}", t, count=1))
    _one_line(orch("plan", "workloads/demo.yaml", "--profile", str(path), "--format", "json"), 2,
              "memory_bandwidth", "finite")


def test_infinite_calibration_factors_are_refused(orch_home):
    folder = orch_home / "calibration"
    folder.mkdir(parents=True)
    (folder / "h100-sxm.yaml").write_text(
        "profile: h100-sxm\nfitted: now\nruns: 1\ngroups:\n- {op: dot, device: cpu, dtype: '*', samples: 3, sizes: 3,"
        " overhead: .inf, work: 1.0, median_error_before: 0, median_error_after: 0}\n")
    _one_line(orch("plan", "workloads/demo.yaml", "--profile", "h100-sxm"), 2, "overhead", "finite")


@pytest.mark.parametrize("quoted", [False, True])
def test_a_size_of_5000_digits(tmp_path, quoted):
    digits = "9" * 5000
    workload = tmp_path / "big.yaml"
    workload.write_text(f"version: 1\nname: big\njobs:\n  - {{name: d, op: dot, n: {repr(digits) if quoted else digits}}}\n")
    err = _one_line(orch("plan", str(workload), "--profile", "h100-sxm"), 2, "jobs[0].n", "larger than 10^15")
    assert len(err) < 300


# ---- files orch writes -------------------------------------------------------------------------

def test_a_profile_named_to_climb_out_of_orch_home_writes_nothing_outside(tmp_path, orch_home, tiny):
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("../../outside/x", "/tmp/x", ".hidden", "a/b"):
        path = _profile(tmp_path, "climb.yaml", lambda t, name=name: t.replace("name: cpu-c7i-8xlarge", f"name: '{name}'"))
        _one_line(orch("run", str(tiny), "--profile", str(path)), 2, "name:")
    assert list(outside.iterdir()) == []
    assert not Path("/tmp/x.yaml").exists()


def test_report_writes_only_where_asked(tmp_path, tiny):
    assert orch("run", str(tiny), "--profile", "cpu-c7i-8xlarge").returncode == 0
    _one_line(orch("report", "--latest", "--output", str(tmp_path / "no" / "such" / "x.html")), 2, "does not exist")
    readme = tmp_path / "README.md"
    readme.write_text("mine")
    elsewhere = tmp_path / "elsewhere.html"
    link = tmp_path / "link.html"
    link.symlink_to(elsewhere)
    _one_line(orch("report", "--latest", "--output", str(link)), 2, "symbolic link")
    assert not elsewhere.exists()
    done = orch("report", "--latest", "--output", str(tmp_path / "README.html"))
    assert done.returncode == 0 and "README.summary.md" in done.stderr
    assert readme.read_text() == "mine" and (tmp_path / "README.summary.md").exists()


def test_profile_output_that_cannot_be_written_fails_before_measuring(tmp_path):
    for target, words in ((tmp_path, ("must end in .yaml",)), (tmp_path / "d.yaml", ("is a folder",)),
                          (tmp_path / "no" / "p.yaml", ("does not exist",))):
        if target.name == "d.yaml":
            target.mkdir()
        started = time.monotonic()
        _one_line(orch("profile", "--quick", "--output", str(target)), 2, *words)
        assert time.monotonic() - started < 10  # it profiled for 20 s first
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "orch-home") == ["d.yaml"]  # no temporary file left


def test_concurrent_calibration_saves_never_collide(orch_home):
    """Every save goes through its own temporary file (a fixed `<profile>.tmp` made 10 of 72
    parallel `orch calibrate` calls fail)."""
    from orchestrator.cost.calibration import Calibration, calibration_path, load, save

    errors = []

    def writer(i: int) -> None:
        try:
            for _ in range(20):
                save(Calibration(profile="p", fitted=str(i), runs=i, groups=[]))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and load("p").profile == "p"
    assert [p.name for p in calibration_path("p").parent.iterdir()] == ["p.yaml"]


# ---- the store ---------------------------------------------------------------------------------

def test_orch_home_that_is_a_file(tmp_path, tiny):
    home = tmp_path / "home-file"
    home.write_text("not a folder")
    for args in (("runs",), ("run", str(tiny), "--profile", "cpu-c7i-8xlarge"), ("profile", "list")):
        _one_line(orch(*args, env={"ORCH_HOME": str(home)}), 3, str(home), "is a file")


def test_a_corrupt_store(orch_home, tiny):
    orch_home.mkdir(parents=True, exist_ok=True)
    (orch_home / "results.db").write_bytes(b"garbage, not SQLite" * 100)
    for args in (("runs",), ("report", "--latest"), ("run", str(tiny), "--profile", "cpu-c7i-8xlarge")):
        _one_line(orch(*args), 3, str(orch_home / "results.db"), "not a readable orch result store")


def test_a_read_only_store_can_still_be_read(orch_home, tiny, monkeypatch):
    """`orch runs` and `orch report` read a store in a folder they cannot write (as root, the
    folder's mode does not stop writes, so the test takes the permission away where orch asks)."""
    assert orch("run", str(tiny), "--profile", "cpu-c7i-8xlarge").returncode == 0
    from orchestrator.results import store as store_module

    real = os.access
    monkeypatch.setattr(store_module.os, "access", lambda path, mode: False if mode == os.W_OK else real(path, mode))
    with store_module.ResultStore(read_only=True) as read:
        assert [r.status for r in read.runs()] == ["done"]
    with pytest.raises(store_module.EnvironmentUnavailable, match="cannot write"):
        store_module.ResultStore()


def test_a_full_disk_names_the_store_and_the_cause(orch_home):
    from orchestrator.errors import EnvironmentUnavailable
    from orchestrator.results.store import ResultStore

    store = ResultStore()
    real = store._db

    class Full:
        def __getattr__(self, name):
            return getattr(real, name)

        def execute(self, sql, *args):
            if sql.startswith("INSERT"):
                raise sqlite3.OperationalError("database or disk is full")
            return real.execute(sql, *args)

    store._db = Full()
    with pytest.raises(EnvironmentUnavailable, match="results.db: cannot write the result store .database or disk is full"):
        store.start_run("r", workload="w", path="w.yaml", sha256="0", profile="p", backend="dask", address=None,
                        jobs=[], versions={})
    assert not real.in_transaction


# ---- live runs and interrupts ------------------------------------------------------------------

def _long(tmp_path: Path, jobs: int, size: int = 1536) -> Path:
    path = tmp_path / "long.yaml"
    path.write_text("version: 1\nname: long\njobs:\n" + "".join(
        f"  - {{name: m{i}, op: matmul, m: {size}, n: {size}, k: {size}, repeats: 2}}\n" for i in range(jobs)))
    return path


def _start(*args: str, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_COLOR": "1", "TERM": "dumb", **(env or {})}, **popen)


def _wait_running(timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = json.loads(orch("runs", "--format", "json").stdout)
        if runs and runs[0]["status"] == "running" and runs[0]["done"] >= 2:
            return runs[0]["run_id"]
        time.sleep(0.3)
    raise AssertionError("the run never got going")


def test_a_live_run_is_never_resumed_by_a_second_process(tmp_path):
    workload = _long(tmp_path, 60)  # ~12 s here: the second process checks ~3 s in
    live = _start("run", str(workload), "--profile", "cpu-c7i-8xlarge", "--no-learn", "--format", "json")
    run_id = _wait_running()
    second = orch("run", str(workload), "--profile", "cpu-c7i-8xlarge", "--resume", run_id)
    _one_line(second, 3, f"run {run_id} is still live in process {live.pid}")
    out, err = live.communicate(timeout=600)
    assert live.returncode == 0, err
    jobs = json.loads(out)["jobs"]
    assert len(jobs) == 60 and {j["status"] for j in jobs} == {"ok"} and {j["attempts"] for j in jobs} == {1}


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c to the process group"])
def test_an_interrupted_run_says_how_to_resume_and_leaves_nothing(tmp_path, how):
    """SIGTERM ends a run as Ctrl-C does; Ctrl-C in a terminal reaches every process of the
    group, the embedded workers too, which used to print 30-line tracebacks."""
    import psutil

    workload = _long(tmp_path, 60)
    run = _start("run", str(workload), "--profile", "cpu-c7i-8xlarge", start_new_session=True,
                 preexec_fn=interruptible)
    run_id = _wait_running()
    children = psutil.Process(run.pid).children(recursive=True)
    if how == "sigterm":
        run.send_signal(signal.SIGTERM)
    else:
        os.killpg(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert any(line.startswith("error: interrupted") and f"--resume {run_id}" in line for line in err.splitlines()), err
    assert json.loads(orch("runs", "--format", "json").stdout)[0]["status"] == "interrupted"
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert alive == []


def test_two_runs_at_once_each_say_so_and_neither_is_learnt_from(tmp_path, orch_home):
    workload = _long(tmp_path, 30)  # ~10 s here: the second run starts 3 s into the first
    other_home = tmp_path / "other-home"
    first = _start("run", str(workload), "--profile", "cpu-c7i-8xlarge", "--format", "json",
                   env={"ORCH_HOME": str(other_home)})
    active = Path(tempfile.gettempdir()) / f"orch-{os.getuid()}" / "active"
    deadline = time.monotonic() + 120
    while not any(active.glob("*.lock")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)
    second = orch("run", str(workload), "--profile", "cpu-c7i-8xlarge", "--format", "json", timeout=300)
    out, _ = first.communicate(timeout=300)
    for result in (json.loads(out), json.loads(second.stdout)):
        assert any("another orch run is active on this machine" in w for w in result["warnings"]), result["warnings"]
    assert not (orch_home / "calibration" / "cpu-c7i-8xlarge.yaml").exists()
    assert not (other_home / "calibration" / "cpu-c7i-8xlarge.yaml").exists()


def test_a_store_of_an_older_orch_is_migrated_and_a_newer_one_refused(orch_home):
    """Versioned migrations (PRAGMA user_version): a store as the first orch wrote it (no learn,
    hardware or makespan columns, no version) keeps its rows and gains the columns; a store from
    a newer orch is refused in one line."""
    import sqlite3

    from orchestrator.errors import EnvironmentUnavailable
    from orchestrator.results.store import SCHEMA_V1, SCHEMA_VERSION, ResultStore

    orch_home.mkdir(parents=True, exist_ok=True)
    path = orch_home / "results.db"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA_V1)
    old.execute("INSERT INTO runs (run_id, workload, status, total, started) VALUES ('r1', 'w', 'done', 0, 'then')")
    old.commit()
    old.close()
    with ResultStore() as store:
        assert store.run("r1")["learn"] == 1 and store.run("r1")["makespan_s"] is None
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    with ResultStore() as store:  # opening again changes nothing
        assert [r.run_id for r in store.runs()] == ["r1"]
    newer = sqlite3.connect(path)
    newer.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    newer.commit()
    newer.close()
    with pytest.raises(EnvironmentUnavailable, match="written by a newer orch"):
        ResultStore()
