"""Why a Dask worker died: a nanny plugin that reports each worker process's exit.

The scheduler re-runs a task whose worker died and, after `allowed-failures` deaths, gives up
with `KilledWorker`, which names the last worker but not what killed it. The nanny knows: the
exit code or signal, and whether its own memory monitor terminated the worker. This plugin
samples the worker's resident memory every 100 ms and, when the process exits, logs an event
(topic `orch-worker-death`) that the client matches to the executions it lost.
"""

from __future__ import annotations

import signal
import time
from typing import Any

from distributed.diagnostics.plugin import NannyPlugin

DEATH_TOPIC = "orch-worker-death"
SAMPLE_MS = 100


def describe(death: dict[str, Any]) -> str:
    """One line: 'killed by signal 9 (SIGKILL); 1.1 GiB resident of a 1.0 GiB limit, ...'."""
    from orchestrator.units import si

    code = death.get("exitcode")
    if code is None:
        how = "lost (no exit report)"
    elif code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown"
        how = f"killed by signal {-code} ({name})"
    else:
        how = f"exited with status {code}"
    parts = [how]
    limit = f" of a {si(death['memory_limit'], 'B', binary=True)} memory limit" if death.get("memory_limit") else ""
    if death.get("rss"):
        parts.append(f"{si(death['rss'], 'B', binary=True)} resident at the last sample{limit}")
    if death.get("memory_terminated"):
        fraction = death.get("terminate_fraction") or 0.95
        parts.append(f"terminated by the nanny: resident memory above {fraction:.0%}{limit or ' of its memory limit'}")
    return "; ".join(parts)


class DeathReporter(NannyPlugin):
    name = "orch-death-reporter"
    idempotent = True  # one per nanny, however many orch runs register it
    restart = False

    def setup(self, nanny: Any) -> None:
        from tornado.ioloop import PeriodicCallback

        self._rss: dict[int, int] = {}
        original = nanny._on_worker_exit_sync

        def on_exit(exitcode: int) -> None:
            try:
                self._report(nanny, exitcode)
            finally:
                original(exitcode)

        nanny._on_worker_exit_sync = on_exit  # future worker processes
        if nanny.process is not None:
            nanny.process.on_exit = on_exit  # the one running now
        self._sampler = PeriodicCallback(lambda: self._sample(nanny), SAMPLE_MS)
        self._sampler.start()

    def teardown(self, nanny: Any) -> None:
        self._sampler.stop()

    def _sample(self, nanny: Any) -> None:
        import psutil

        process = nanny.process
        pid = process.pid if process is not None else None
        if pid:
            try:
                self._rss[pid] = psutil.Process(pid).memory_info().rss
            except psutil.Error:
                pass
            while len(self._rss) > 8:  # the last few worker processes only
                self._rss.pop(next(iter(self._rss)))

    def _report(self, nanny: Any, exitcode: int) -> None:
        if nanny.status.name in ("closing", "closed", "closing_gracefully"):
            return  # an orderly shutdown is not a death
        inner = getattr(nanny.process, "process", None)  # the exited process keeps its pid
        pid = getattr(inner, "pid", None) or next(reversed(self._rss), None)
        manager = getattr(nanny, "memory_manager", None)
        event = {"worker": nanny.worker_address, "pid": pid, "exitcode": exitcode, "rss": self._rss.get(pid),
                 "memory_limit": getattr(manager, "memory_limit", None),
                 "terminate_fraction": getattr(manager, "memory_terminate_fraction", None),
                 "memory_terminated": bool(pid and getattr(manager, "_last_terminated_pid", -1) == pid),
                 "time": time.time()}
        nanny.loop.add_callback(nanny.log_event, DEATH_TOPIC, event)
