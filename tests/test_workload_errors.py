"""Malformed workload files: each one exits 2 with one short line naming the problem, no
traceback, and nothing runs (no profile is taken)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.errors import WorkloadError
from orchestrator.workload.loader import load
from tests.cli import orch

BAD = Path(__file__).parent / "data" / "bad_workloads"
CASES = [line.split("\t", 1) for line in (BAD / "expected.tsv").read_text().splitlines() if line]


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize(("name", "needle"), CASES, ids=[c[0] for c in CASES])
def test_loader_names_the_problem(name, needle):
    with pytest.raises(WorkloadError) as caught:
        load(BAD / name)
    message = caught.value.message
    assert needle in message
    assert message.startswith(str(BAD / name))
    assert "\n" not in message and len(message) < 300


@pytest.mark.parametrize(("name", "needle"), CASES, ids=[c[0] for c in CASES])
def test_cli_exit_2_one_line_no_traceback(name, needle, orch_home):
    result = orch("plan", str(BAD / name))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0] and lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not list((orch_home / "profiles").glob("*.yaml")) if (orch_home / "profiles").exists() else True


def test_missing_file_and_directory(tmp_path):
    missing = orch("plan", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    directory = orch("plan", str(tmp_path))
    assert directory.returncode == 2 and "is a directory" in directory.stderr


def test_oversized_file_rejected_fast(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("version: 1\nname: x\n# " + "x" * (5 << 20) + "\n")
    started = time.perf_counter()
    with pytest.raises(WorkloadError, match="over the .* byte limit"):
        load(big)
    assert time.perf_counter() - started < 0.5


def test_alias_bomb_rejected_fast():
    started = time.perf_counter()
    with pytest.raises(WorkloadError, match="aliases expand"):
        load(BAD / "44_alias_bomb.yaml")
    assert time.perf_counter() - started < 0.5


def test_python_tag_never_executes(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"version: 1\nname: !!python/object/apply:os.system ['touch {marker}']\njobs: []\n")
    with pytest.raises(WorkloadError):
        load(evil)
    assert not marker.exists()


def test_debug_shows_traceback():
    result = orch("plan", str(BAD / "19_negative_size.yaml"), "--debug")
    assert result.returncode == 2 and "Traceback" in result.stderr
