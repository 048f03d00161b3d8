from __future__ import annotations

import pynvml
import pytest

from orchestrator.hardware.nvml import discover_gpus, visible_indices
from tests.fakes.nvml import SCENARIOS, FakeGpu, FakeHost, FakeNvml, scenario


def test_no_library_gives_empty_list_and_reason(monkeypatch):
    import orchestrator.hardware.nvml as nvml_module

    def missing():
        raise ImportError("NVML bindings not found: pip install nvidia-ml-py")

    monkeypatch.setattr(nvml_module, "load_pynvml", missing)
    result = discover_gpus(env={})
    assert result.gpus == []
    assert "nvidia-ml-py" in result.note


@pytest.mark.parametrize("error", [pynvml.NVML_ERROR_DRIVER_NOT_LOADED, pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
                                   pynvml.NVML_ERROR_NO_PERMISSION])
def test_init_failure_gives_empty_list_and_reason(error):
    result = discover_gpus(FakeNvml(FakeHost(init_error=error)), env={})
    assert result.gpus == []
    assert "NVML unavailable" in result.note


def test_zero_gpus():
    result = discover_gpus(scenario("zero_gpus"), env={})
    assert result.gpus == [] and result.note == "NVML found no GPU"


def test_one_gpu_fields():
    fake = scenario("one_gpu")
    result = discover_gpus(fake, env={})
    (gpu,) = result.gpus
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    assert gpu.memory_total_bytes == 80 << 30
    assert gpu.compute_capability == "9.0"
    assert gpu.sm_count == 132
    assert gpu.clock_sm_max_mhz == 1980
    assert gpu.power_limit_w == 700
    assert (gpu.pcie.generation_max, gpu.pcie.width_current) == (5, 16)
    assert gpu.nvlink_links == 0 and gpu.mig_mode is False
    assert result.driver_version == "560.35.03" and result.cuda_driver_version == "12.6"
    assert fake.initialised == 0, "nvmlShutdown must balance nvmlInit"


def test_eight_gpus_with_nvlink():
    result = discover_gpus(scenario("eight_gpus_nvlink"), env={})
    assert [g.index for g in result.gpus] == list(range(8))
    assert all(g.nvlink_links == 18 for g in result.gpus)
    assert result.gpus[0].nvlink_bandwidth == pytest.approx(18 * 25e9)


@pytest.mark.parametrize("error", [pynvml.NVML_ERROR_GPU_IS_LOST, pynvml.NVML_ERROR_UNKNOWN,
                                   pynvml.NVML_ERROR_TIMEOUT])
def test_one_failing_gpu_becomes_placeholder(error):
    host = FakeHost(gpus=[FakeGpu(uuid="GPU-a"), FakeGpu(uuid="GPU-b", fail_with=error), FakeGpu(uuid="GPU-c")])
    result = discover_gpus(FakeNvml(host), env={})
    assert [g.available for g in result.gpus] == [True, False, True]
    broken = result.gpus[1]
    assert broken.error.startswith("NVMLError") and broken.uuid == "GPU-b"
    assert result.gpus[2].memory_total_bytes == 80 << 30


def test_mig_mode_reported():
    (gpu,) = discover_gpus(scenario("mig_enabled"), env={}).gpus
    assert gpu.mig_mode is True


@pytest.mark.parametrize(("spec", "expected"), [
    ("", []),
    ("-1", []),
    ("1", [1]),
    ("2,0", [2, 0]),
    ("0,9,1", [0]),          # CUDA stops at the first invalid entry
    ("GPU-bbb", [1]),
    ("bbb", [1]),            # UUIDs may omit the GPU- prefix
    ("GPU-", []),            # ambiguous prefix names no single device
])
def test_cuda_visible_devices(spec, expected):
    uuids = ["GPU-aaa", "GPU-bbb", "GPU-ccc"]
    assert visible_indices(3, uuids, {"CUDA_VISIBLE_DEVICES": spec}) == expected


def test_cuda_visible_devices_renumbers_like_cuda():
    result = discover_gpus(scenario("eight_gpus_nvlink"), env={"CUDA_VISIBLE_DEVICES": "5,3"})
    assert [g.index for g in result.gpus] == [0, 1]
    assert [g.uuid for g in result.gpus] == [SCENARIOS["eight_gpus_nvlink"].gpus[i].uuid for i in (5, 3)]


def test_all_hidden_says_why():
    result = discover_gpus(scenario("one_gpu"), env={"CUDA_VISIBLE_DEVICES": ""})
    assert result.gpus == [] and "CUDA_VISIBLE_DEVICES" in result.note


@pytest.mark.parametrize(("name", "env", "expected"), [
    ("no_driver", {}, 0), ("zero_gpus", {}, 0), ("one_gpu", {}, 1), ("eight_gpus_nvlink", {}, 8),
    ("eight_gpus_nvlink", {"CUDA_VISIBLE_DEVICES": "2,5"}, 2), ("eight_gpus_nvlink", {"CUDA_VISIBLE_DEVICES": ""}, 0),
    ("eight_gpus_nvlink", {"CUDA_VISIBLE_DEVICES": "1,9,2"}, 1)])
def test_visible_gpu_count_follows_nvml_and_cuda_visible_devices(name, env, expected):
    from orchestrator.hardware.nvml import visible_gpu_count

    fake = scenario(name)
    assert visible_gpu_count(fake, env=env) == expected
    assert fake.initialised == 0, "nvmlShutdown must balance nvmlInit"


def test_a_machine_without_gpus_is_known_without_importing_torch():
    """orch's own process (planning, the client) never pays torch's import where NVML sees no GPU."""
    import subprocess
    import sys

    code = ("import sys; from orchestrator.backends.base import local_gpu_count; "
            "assert local_gpu_count() == 0; print('torch' in sys.modules)")
    env = {k: v for k, v in __import__("os").environ.items() if k != "ORCH_FAKE_GPUS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "False"
