"""The hand-written Dask loop orch is measured against (`overhead.py`): a bare LocalCluster on
loopback, one worker with 2 threads, one task per job running orch's kernels, gather, close.

    python benchmarks/hand_dask.py TASKS.json
"""

import json
import logging
import sys

from distributed import Client, LocalCluster

from orchestrator.execute.harness import execute
from orchestrator.execute.task import Task

if __name__ == "__main__":
    tasks = json.loads(open(sys.argv[1]).read())
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        futures = [client.submit(execute, Task(**task), pure=False) for task in tasks]
        results = client.gather(futures)
    assert len(results) == len(tasks)
