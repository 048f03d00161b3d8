from __future__ import annotations

import json
import time

import numpy as np
import psutil
import pytest

from tests.cli import golden_output, matches_golden, orch


def _numpy_fp32_peak() -> float:
    """A direct NumPy measurement beside orch's: best SGEMM FLOP/s at n=2048 and 4096."""
    best = 0.0
    for n in (2048, 4096):
        a = np.random.default_rng(0).random((n, n), dtype=np.float32)
        a @ a
        for _ in range(5):
            t0 = time.perf_counter()
            a @ a
            best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


def _numpy_copy_bandwidth() -> float:
    x = np.ones(128 << 20 >> 3 << 3)  # 1 GiB of float64
    y = np.zeros_like(x)
    best = 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        np.copyto(y, x)
        best = max(best, 2 * x.nbytes / (time.perf_counter() - t0))
    return best


def _within(measured: float, reference: float, rel: float) -> bool:
    return abs(measured - reference) <= rel * reference


def test_quick_profile_matches_the_os_and_numpy(first_plan):
    """The quick profile that a first `orch plan` made (the session's; `orch profile --quick`
    runs the same measurement) against the OS and a direct NumPy measurement."""
    assert "saved" in first_plan.result.stderr
    # about 105 s on the quiet 2-core VM since LAPACK's tall shapes are timed (73 s before),
    # 108 s in a CI run there; a full profile's sizes take several minutes
    assert first_plan.elapsed_s < 180
    result = orch("profile", "show", str(first_plan.profile), "--format", "json")
    # Two timings on a shared 2-core VM can disagree when a neighbour is busy: the pair is
    # measured again, with a fresh `orch profile --quick`, before the comparison counts as failed.
    for attempt in range(2):
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        flops, bandwidth = _numpy_fp32_peak(), _numpy_copy_bandwidth()
        close = (_within(data["cpu"]["peak_flops"]["float32"], flops, 0.25)
                 and _within(data["cpu"]["memory_bandwidth"], bandwidth, 0.25))
        if close:
            break
        result = orch("profile", "--quick", "--format", "json", timeout=300)
    assert close, (data["cpu"]["peak_flops"]["float32"], flops, data["cpu"]["memory_bandwidth"], bandwidth)
    assert data["gpus"] == []
    assert data["cpu"]["cores_logical"] == len(psutil.Process().cpu_affinity())
    assert data["cpu"]["memory_total_bytes"] == psutil.virtual_memory().total


def test_profile_show_bundled_h100_json_golden():
    result = golden_output("profile_show_h100-sxm.json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    gpu = data["gpus"][0]
    assert gpu["peak_flops"]["bfloat16"] == pytest.approx(989e12, rel=0.10)
    assert gpu["memory_bandwidth"] == pytest.approx(3.35e12, rel=0.10)
    assert gpu["memory_total_bytes"] >= 80e9
    assert matches_golden("profile_show_h100-sxm.json", result.stdout)


def test_profile_show_table_golden():
    result = golden_output("profile_show_h100-sxm.txt")
    assert result.returncode == 0, result.stderr
    assert matches_golden("profile_show_h100-sxm.txt", result.stdout)


def test_profile_show_by_path_and_yaml(tmp_path):
    result = orch("profile", "show", "profiles/t4.yaml", "--format", "yaml")
    assert result.returncode == 0, result.stderr
    assert "name: t4" in result.stdout and "Tesla T4" in result.stdout


def test_profile_list_has_the_reference_set():
    result = orch("profile", "list", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    for name in ("h100-sxm", "h100-sxm-8", "a100-80gb", "l4", "t4", "cpu-c7i-8xlarge"):
        assert rows[name]["kind"] == "reference", rows.get(name)
    assert rows["h100-sxm-8-x4"]["kind"] == "cluster"


def test_eight_gpu_profile_has_nvlink():
    data = json.loads(orch("profile", "show", "h100-sxm-8", "-f", "json").stdout)
    assert len(data["gpus"]) == 8
    assert all(gpu["nvlink_links"] == 18 for gpu in data["gpus"])


@pytest.mark.parametrize(("args", "needle"), [
    (["profile", "show", "h100-sx"], "did you mean 'h100-sxm'"),
    (["profile", "show", "missing.yaml"], "no such file"),
    (["profile", "--format", "xml"], "--format"),
    (["profile", "show", "profiles"], "is a directory"),
])
def test_bad_input_is_one_line_exit_2(args, needle):
    result = orch(*args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_invalid_profile_file_names_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: x\ncpu:\n  cores_physical: 2\n  cores_logical: -4\n  memory_total_bytes: 1\n")
    result = orch("profile", "show", str(bad))
    assert result.returncode == 2
    assert "cpu.cores_logical" in result.stderr and "Traceback" not in result.stderr
    typo = tmp_path / "typo.yaml"
    typo.write_text("version: 1\nname: x\ncpu:\n  cores_physical: 2\n  cores_logicl: 4\n  memory_total_bytes: 1\n")
    result = orch("profile", "show", str(typo))
    assert "did you mean 'cores_logical'" in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    result = orch("--debug", "profile", "show", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "Traceback" in result.stderr
