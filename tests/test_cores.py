"""Cores as capacity: the lock files that let one-thread jobs run side by side in the embedded
cluster's worker processes (backends/cores.py), and the batch schedule that plans them so
(plan/schedule.py). Real processes hold the cores; each writes when it held them."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from orchestrator.backends.cores import Cores, slot_of
from orchestrator.placement import Placement
from orchestrator.plan.schedule import Option, balance, list_schedule, makespan

HOLD_S = 0.4


def _hold(cores: Cores, wanted: int | None, slot: int, out, hold_s: float = HOLD_S) -> None:
    with cores.held(wanted, slot) as held:
        start = time.monotonic()
        time.sleep(hold_s)
        out.put((slot, wanted, held, start, time.monotonic()))


def _spans(cores: Cores, holders: list[tuple[int | None, int]]) -> list[tuple]:
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    processes = [context.Process(target=_hold, args=(cores, wanted, slot, out)) for wanted, slot in holders]
    for process in processes:
        process.start()
        time.sleep(0.02)  # started in this order
    spans = [out.get(timeout=30) for _ in processes]
    for process in processes:
        process.join(timeout=10)
    return sorted(spans, key=lambda span: span[3])


def _overlap(a: tuple, b: tuple) -> bool:
    return a[3] < b[4] and b[3] < a[4]


def test_one_core_holders_of_different_workers_run_at_once(tmp_path):
    spans = _spans(Cores.under(tmp_path, 2), [(1, 0), (1, 1)])
    assert [span[2] for span in spans] == [[0], [1]]
    assert _overlap(*spans)


def test_one_worker_one_core_and_a_wide_job_runs_alone(tmp_path):
    """Two one-core jobs of one worker slot take turns; a job on every core waits for the
    narrow ones before it and holds back those after it."""
    cores = Cores.under(tmp_path, 2)
    same = _spans(cores, [(1, 0), (1, 2)])  # slot 2 of 2 cores: core 0 again
    assert not _overlap(*same)
    spans = _spans(cores, [(1, 0), (None, 1), (1, 1)])
    wide = next(span for span in spans if span[1] is None)
    assert wide[2] == [0, 1]
    assert not any(_overlap(wide, span) for span in spans if span is not wide)


def test_a_killed_holder_frees_its_core(tmp_path):
    cores = Cores.under(tmp_path, 2)
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    stuck = context.Process(target=_hold, args=(cores, 1, 0, out, 60.0))
    stuck.start()
    time.sleep(0.3)
    os.kill(stuck.pid, signal.SIGKILL)
    stuck.join(timeout=10)
    began = time.monotonic()
    spans = _spans(cores, [(1, 0)])
    assert spans[0][2] == [0] and spans[0][3] - began < 5


def test_worker_slots_come_from_their_names():
    assert [slot_of(name) for name in (0, 3, "cpu-2", "gpu-0", "x")] == [0, 3, 2, 0, 0]


def test_one_core_jobs_share_the_cpu_and_a_wide_one_takes_it_all():
    cpu = Placement("cpu")
    jobs = [("a", [Option(cpu, 1.0, 1)]), ("b", [Option(cpu, 1.0, 1)]), ("c", [Option(cpu, 0.5)])]
    slots = list_schedule(jobs, 1, 0, False, cores_per_node=2)
    assert {tuple(slots[n].devices) for n in "ab"} == {("cpu:0",), ("cpu:1",)}
    assert slots["a"].start_s == slots["b"].start_s == 0
    assert slots["c"].devices == ["cpu"] and slots["c"].start_s == pytest.approx(1.0)
    assert makespan(slots) == pytest.approx(1.5)
    serial = list_schedule(jobs, 1, 0, False, cores_per_node=1)
    assert makespan(serial) == pytest.approx(2.5)


def test_a_job_takes_one_core_where_that_finishes_the_batch_sooner():
    """Four jobs each 1.0 s on both cores, 1.2 s on one: one at a time they take 4 s; two
    side by side, 2.4 s. The plan runs them on one core each; on one core it would not."""
    cpu = Placement("cpu")
    jobs = [(f"j{i}", [Option(cpu, 1.0), Option(cpu, 1.2, 1)]) for i in range(4)]
    slots = balance(jobs, 1, 0, cores_per_node=2)
    assert makespan(slots) == pytest.approx(2.4)
    assert all(slot.option == 1 for slot in slots.values())
    assert makespan(balance(jobs, 1, 0, cores_per_node=1)) == pytest.approx(4.0)
