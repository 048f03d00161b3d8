"""Run one job as a gang: one rank per worker, started together, joined by torch.distributed.

`gpu:N` takes N single-GPU workers of one node, `gpu:N@K` N on each of K nodes, `cpu@K` one CPU
worker on each of K nodes. The driver is the same for every op and engine: it finds a free port
on rank 0's host, starts every rank (`worker.gang_rank`, which runs kernels/gang.py) and waits
for all of them, or for the first to fail, or for a member to leave the cluster. The engine is
reached through `Members`: Dask pins each rank to a worker (`workers=[address]`), Ray places
them with a placement group (`STRICT_PACK` on one node, `SPREAD` across nodes).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any, Protocol

from orchestrator.backends.worker import free_port, gang_link, gang_rank
from orchestrator.execute.task import JobResult, Task

POLL_S = 0.5
MEMBER_GONE_WAIT_S = 3.0  # for the engine to say a member died after its peers failed


class MemberLost(RuntimeError):
    """A rank's worker left the cluster (died) before the gang finished."""

    def __init__(self, worker: str, cause: str) -> None:
        super().__init__(f"worker died: {worker} ({cause})")
        self.worker = worker


class Members(Protocol):
    names: list[str]  # one per rank: what the job's `workers` lists
    hosts: list[str]  # each rank's host (the rendezvous listens on rank 0's)

    def submit(self, rank: int, fn: Callable[..., Any], *args: Any) -> Any: ...

    def wait(self, handles: list[Any]) -> list[Any]:
        """Every result in rank order; raises the first failure, or MemberLost as soon as a
        member is gone."""
        ...

    def cancel(self, handles: list[Any]) -> None: ...

    def gone(self) -> list[str]:
        """The members no longer in the cluster."""
        ...

    def workers(self, ranks: list[dict[str, Any]]) -> list[str]:
        """What the job's `workers` lists, from what each rank said of itself."""
        ...

    def close(self) -> None:
        """Give back what was reserved for the gang."""
        ...


def _together(members: Members, fn: Callable[..., Any], *args: Any) -> list[Any]:
    """`fn(*args, rank, world, init_method)` on every member at once, joined at a free port of
    rank 0's host; every rank's answer."""
    world = len(members.names)
    host = members.hosts[0]
    port = members.wait([members.submit(0, free_port, host)])[0]
    handles = [members.submit(rank, fn, *args, rank, world, f"tcp://{host}:{port}") for rank in range(world)]
    try:
        return members.wait(handles)
    finally:
        members.cancel(handles)


def measure_link(members: Members) -> dict[str, float]:
    """The link between the members as a gang's collectives cross it (gloo all-reduces): its
    one-way latency and bandwidth, by the ring all-reduce the cost model uses: a small one
    takes 2(n-1) latencies, a large one of S bytes 2(n-1)/n x S / B more."""
    found = _together(members, gang_link)[0]
    n = found["world"]
    latency = found["small_s"] / (2 * (n - 1))
    moved = 2 * (n - 1) / n * found["bytes"]
    return {"latency_s": latency, "bandwidth": moved / max(found["large_s"] - found["small_s"], 1e-9)}


def execute(members: Members, task: Task) -> JobResult:
    """Run `task` on every member at once; the job's result as a single worker would give it."""
    ranks = _together(members, gang_rank, task)
    times = ranks[0]["times_s"]
    return JobResult(measured_s=statistics.median(times), times_s=times, check=max(r["check"] for r in ranks),
                     devices=[f"{r['device']}@{name}" for r, name in zip(ranks, members.names, strict=True)],
                     host=ranks[0]["host"], threads=task.threads, workers=members.workers(ranks))


class DaskMembers:
    def __init__(self, client: Any, workers: list[str]) -> None:
        from distributed.comm import get_address_host

        self.client, self.names = client, workers
        self.hosts = [get_address_host(w) for w in workers]

    def submit(self, rank: int, fn: Callable[..., Any], *args: Any) -> Any:
        return self.client.submit(fn, *args, workers=[self.names[rank]], allow_other_workers=False, pure=False)

    def wait(self, handles: list[Any]) -> list[Any]:
        while True:
            for rank, future in enumerate(handles):
                if future.status == "error":
                    future.result()  # raises the rank's own error
            if all(future.status == "finished" for future in handles):
                return self.client.gather(handles)
            gone = self.gone()
            for rank, future in enumerate(handles):
                if future.status != "finished" and self.names[rank] in gone:
                    raise MemberLost(self.names[rank], f"rank {rank} of {len(handles)}")
            time.sleep(POLL_S)

    def cancel(self, handles: list[Any]) -> None:
        self.client.cancel(handles)

    def gone(self) -> list[str]:
        alive = self.client.scheduler_info(n_workers=-1)["workers"]
        return [name for name in self.names if name not in alive]

    def workers(self, ranks: list[dict[str, Any]]) -> list[str]:
        return list(self.names)

    def close(self) -> None:
        pass  # nothing reserved: the ranks are pinned to their workers


class RayMembers:
    """One rank per bundle of a placement group; `names` are filled in as ranks report."""

    def __init__(self, ray: Any, group: Any, bundles: list[dict[str, float]], names: list[str], hosts: list[str]) -> None:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        self.ray, self.group, self.names, self.hosts = ray, group, names, hosts
        self._options = [{"num_cpus": bundle.get("CPU", 0), "num_gpus": bundle.get("GPU", 0), "max_retries": 0,
                          "scheduling_strategy": PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i)}
                         for i, bundle in enumerate(bundles)]

    def submit(self, rank: int, fn: Callable[..., Any], *args: Any) -> Any:
        return self.ray.remote(fn).options(**self._options[rank]).remote(*args)

    def wait(self, handles: list[Any]) -> list[Any]:
        pending = list(handles)
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1, timeout=POLL_S)
            for ref in done:
                error = self._error(handles, handles.index(ref))
                if error is None:
                    continue
                # a rank whose peer died fails on its collective, often before Ray reports the
                # death: give the others a moment to say whether one of them died
                self.ray.wait(pending, num_returns=len(pending), timeout=MEMBER_GONE_WAIT_S)
                for rank in range(len(handles)):
                    died = self._error(handles, rank) if handles[rank] is not ref else error
                    if isinstance(died, MemberLost):
                        raise died
                raise error
        return self.ray.get(handles)

    def _error(self, handles: list[Any], rank: int) -> Exception | None:
        """A finished rank's failure: MemberLost where its worker died, else its own error."""
        from orchestrator.backends.base import SYSTEM_ERRORS

        ready, _ = self.ray.wait([handles[rank]], timeout=0)
        if not ready:
            return None
        try:
            self.ray.get(handles[rank])
            return None
        except Exception as exc:  # noqa: BLE001 - sorted into a lost member or the job's error
            cause = getattr(exc, "cause", None) or exc
            if type(exc).__name__ in SYSTEM_ERRORS or type(cause).__name__ in SYSTEM_ERRORS:
                return MemberLost(self.names[rank], f"rank {rank} of {len(handles)}: {type(exc).__name__}")
            return cause if isinstance(cause, Exception) else exc

    def cancel(self, handles: list[Any]) -> None:
        # only those still running: cancelling a finished task trips a check in Ray's core worker
        _, running = self.ray.wait(handles, num_returns=len(handles), timeout=0)
        for ref in running:
            self.ray.cancel(ref, force=True)

    def gone(self) -> list[str]:
        return []  # Ray says so itself: a dead rank's task fails with a system error (`wait`)

    def workers(self, ranks: list[dict[str, Any]]) -> list[str]:
        return [f"ray://{rank['host']}/pid{rank['pid']}" for rank in ranks]

    def close(self) -> None:
        from ray.util.placement_group import remove_placement_group

        remove_placement_group(self.group)
