"""`orch report`: a self-contained HTML file with the charts and every job, a Markdown summary,
and Chromium (headless) parsing and drawing it where Chromium is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli import orch

DATA = Path(__file__).parent / "data"
CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)),
                None)


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """One run of every op (on a bundled profile's predictions) and its report."""
    import os

    folder = tmp_path_factory.mktemp("report")
    env = {"ORCH_HOME": str(folder / "home")}
    ran = orch("run", str(DATA / "every_op_small.yaml"), "--profile", "cpu-c7i-8xlarge", "--no-learn", "-f", "json",
               env=env)
    assert ran.returncode == 0, ran.stderr
    out = folder / "report.html"
    made = orch("report", "--latest", "--output", str(out), "--compare", "h100-sxm", env=env)
    assert made.returncode == 0, made.stderr
    assert os.environ.get("ORCH_HOME") != env["ORCH_HOME"]
    return out, json.loads(ran.stdout)


def test_report_is_self_contained_with_charts_and_every_job(reported):
    path, run = reported
    page = path.read_text()
    assert page.count("<svg") == 2 + len({job["op"] for job in run["jobs"]})  # roofline, a crossover per op, accuracy
    for job in run["jobs"]:
        assert f">{job['name']}<" in page
    outside = re.findall(r"""(?:src|href)\s*=|url\(|@import|<script|<link|https?://(?!www\.w3\.org/2000/svg)""", page)
    assert outside == []
    assert "Roofline: cpu" in page and "Predicted against measured" in page and "h100-sxm gpu faster above" in page
    summary = path.with_suffix(".summary.md").read_text()
    assert all(job["name"] in summary for job in run["jobs"]) and "plan makespan" in summary


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(reported, tmp_path):
    path, run = reported
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chrome'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<svg") >= 3 and all(job["name"] in dom.stdout for job in run["jobs"])
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1200,3000", f"--screenshot={shot}", path.as_uri()],
                   capture_output=True, timeout=120, check=True)
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 50_000  # a blank page compresses to a few KB


def test_report_without_runs_is_exit_2():
    result = orch("report", "--latest")
    assert result.returncode == 2 and "no recorded runs" in result.stderr


def test_report_of_an_unknown_run_is_exit_2():
    assert orch("report", "20000101-000000-beef").returncode == 2


def test_crossover_names_this_machines_own_gpu_before_a_compared_one():
    """On a GPU machine the crossover is its own GPU's; `--compare` draws the other profile's
    beside it. On a CPU-only machine the compared GPU is the only alternative."""
    from orchestrator.plan.hardware import hardware_for
    from orchestrator.profile import store
    from orchestrator.report.build import crossover
    from orchestrator.results.rows import JobRow

    rows = [JobRow("r", f"mm{n}", "matmul", {"m": n, "n": n, "k": n}, "ok", dtype="float32", data="host",
                   placement="gpu", measured_s=1e-3) for n in (256, 4096)]
    l4, h100, cpu = (hardware_for(store.resolve(name)) for name in ("l4", "h100-sxm", "cpu-c7i-8xlarge"))
    on_gpu = crossover(l4, h100, rows).text
    assert "best alternative (gpu)" in on_gpu and "h100-sxm gpu" not in on_gpu, on_gpu
    assert "h100-sxm gpu" in crossover(cpu, h100, rows).text
