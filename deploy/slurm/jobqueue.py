"""The Python alternative to orch-dask.sbatch: dask-jobqueue asks SLURM for the workers, then orch
runs against that cluster from the login node.

    pip install dask-jobqueue
    python deploy/slurm/jobqueue.py workloads/demo.yaml --nodes 2 --cores 16 --memory 64GB --queue normal

The scheduler runs in this process (on the login node) and listens on its cluster-facing
interface; workers connect to it from their batch jobs. Everything stops when the script ends.
"""

from __future__ import annotations

import argparse
import subprocess
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--cores", type=int, default=16)
    parser.add_argument("--memory", default="64GB")
    parser.add_argument("--queue", default=None)
    parser.add_argument("--walltime", default="01:00:00")
    parser.add_argument("--interface", default=None, help="network interface of the workers, e.g. ib0")
    args = parser.parse_args()

    from dask_jobqueue import SLURMCluster
    from distributed import Client

    cluster = SLURMCluster(cores=args.cores, processes=1, memory=args.memory, queue=args.queue,
                           walltime=args.walltime, interface=args.interface,
                           worker_extra_args=["--resources", "cpu=1"],
                           job_script_prologue=[f"source {sys.prefix}/bin/activate"])
    try:
        cluster.scale(jobs=args.nodes)
        with Client(cluster) as client:
            client.wait_for_workers(args.nodes, timeout=3600)
        address = cluster.scheduler_address
        for command in (["orch", "profile", "--address", address],
                        ["orch", "run", args.workload, "--address", address]):
            done = subprocess.run(command, check=False)
            if done.returncode not in (0, 1):
                return done.returncode
        return 0
    finally:
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
