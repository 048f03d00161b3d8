#!/usr/bin/env bash
# Every GPU check in one run, for a machine with a CUDA GPU (one lent for a few minutes):
#
#     OUT=/tmp/gpu-results benchmarks/gpu_machine.sh
#
# 1. what NVML and torch see (nvidia-smi beside orch's own discovery); CPU kernels beside a busy
#    GPU (host_contention.py);
# 2. a full `orch profile` (GPU GEMM per dtype and size, memory, host<->device, launch latency,
#    per-op kernels); the main job on it: plan, run, report (--compare h100-sxm);
# 3. issue 13's two GPU checks: held-out accuracy after learning from one run, every job on the
#    GPU, with the noise of two held-out runs (accuracy.py --noise); the whole demo as a batch per
#    strategy, orch's plan against all-cpu, all-gpu and each job at its best (decisions.py --batch);
# 4. the profile beside the bundled h100-sxm reference; whether oneDNN uses AMX on the host;
# 5. the seed table with its GPU columns (benchmarks/seed.py);
# 6. accuracy on held-out jobs where orch's plan puts each one;
# 7. orch's overhead against bare Dask (overhead.py);
# 8. the real gang paths: `pytest -m gpu` (NVML discovery, a world-size-1 gang over NCCL for
#    matmul, k-means and DDP training, the embedded cluster's one worker per GPU), then
#    `orch run --placement gpu` with dask-cuda's worker spec where dask-cuda imports.
#
# Each step has its own time limit and writes <step>.txt; everything lands in $OUT/results.tgz
# (refreshed after every step, so a run cut short still returns what it did) and the summary in
# $OUT/log.txt. SKIP="seed overhead" leaves those steps out; BUDGET_S=500 cuts every step's limit
# to what is left of 500 s; QUICK=--quick profiles quickly; ROUNDS=3 sets the batch rounds of
# step 5. Needs python3 with a CUDA torch and orch's dependencies importable.
set -u
OUT=${OUT:-$(mktemp -d)}
R=$OUT/results
mkdir -p "$R"
export ORCH_HOME=$R/home PYTHONUNBUFFERED=1 COLUMNS=150
PY=${PYTHON:-python3}
ORCH="$PY -m orchestrator"
PROFILE=$R/gpu-node.yaml

step() {  # step NAME LIMIT_S COMMAND...: run it, keep its output, say how it ended
    local name=$1 limit=$2 started=$SECONDS rc
    shift 2
    case " ${SKIP:-} " in *" $name "*) return ;; esac
    if [ -n "${BUDGET_S:-}" ]; then
        local left=$((BUDGET_S - SECONDS - 5))
        if [ "$left" -lt 20 ]; then echo "=== $name: skipped, ${left} s of the budget left"; return; fi
        if [ "$left" -lt "$limit" ]; then limit=$left; fi
    fi
    echo "=== $name ($(date +%T))"
    timeout "$limit" bash -c "$*" >"$R/$name.txt" 2>&1
    rc=$?
    tail -n "${TAIL:-40}" "$R/$name.txt"
    echo "=== $name: exit $rc in $((SECONDS - started)) s"
    tar -czf "$OUT/results.tgz" -C "$OUT" results
}

{
step env 60 "nvidia-smi; nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit,clocks.max.sm --format=csv; \
  $PY -c 'import torch, dask, distributed, pynvml; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.get_device_name(0)); print(\"dask\", dask.__version__)'; nproc; free -g"
TAIL=12 step contention 60 "$PY benchmarks/host_contention.py --seconds 0.5"
step profile 240 "$ORCH profile ${QUICK:-} --output $PROFILE || $ORCH profile --quick --output $PROFILE"
TAIL=60 step main-job 150 "$ORCH plan workloads/demo.yaml --profile $PROFILE && $ORCH run workloads/demo.yaml --profile $PROFILE \
  && $ORCH report --latest --compare h100-sxm --output $R/report.html"
TAIL=30 step accuracy-gpu 200 "$PY benchmarks/accuracy.py --profile $PROFILE --placement gpu --noise --json $R/accuracy-gpu.json"
TAIL=40 step decisions 220 "$PY benchmarks/decisions.py --profile $PROFILE --batch ${ROUNDS:-3}"
TAIL=80 step show 30 "$ORCH profile show $PROFILE; echo; $ORCH profile show h100-sxm"
# issue 12: the H100 host's CPU reached 4.7% of its AMX bf16 peak; does oneDNN use AMX there?
TAIL=30 step amx 60 "grep -o 'amx[a-z_0-9]*' /proc/cpuinfo | sort | uniq -c; lscpu | grep -i 'model name'; \
  ONEDNN_VERBOSE=1 $PY -c 'import torch, time; a = torch.rand(4096, 4096).bfloat16(); a @ a; t = time.perf_counter(); a @ a; \
  s = time.perf_counter() - t; print(\"bf16 4096^3 GEMM %.1f TFLOP/s\" % (2 * 4096**3 / s / 1e12)); \
  print(torch.backends.mkldnn.is_available(), torch.__config__.show())' | grep -iE 'onednn_verbose,.*exec|isa|TFLOP|mkldnn|True|False' | head -30"
step seed 90 "$PY benchmarks/seed.py"
TAIL=30 step accuracy-plan 200 "$PY benchmarks/accuracy.py --profile $PROFILE --noise --json $R/accuracy-plan.json"
TAIL=15 step overhead 120 "$PY benchmarks/overhead.py --profile $PROFILE --rounds 1"
TAIL=25 step gangs 240 "$PY -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu_real.py"
TAIL=20 step dask-cuda 150 "$PY -c 'import dask_cuda; print(\"dask-cuda\", dask_cuda.__version__)' && \
  $ORCH run workloads/demo.yaml --profile $PROFILE --placement gpu 2>&1 | grep -E 'GPU workers|jobs ok'"
} 2>&1 | tee "$OUT/log.txt"
