"""The Python alternative to orch-dask.sbatch: dask-jobqueue asks SLURM for the workers, then orch
runs against that cluster from the login node.

    pip install dask-jobqueue
    python deploy/slurm/jobqueue.py workloads/demo.yaml --nodes 2 --cores 16 --memory 64GB --queue normal

The scheduler runs in this process (on the login node) and listens on its cluster-facing
interface (`--host 127.0.0.1` on a one-node cluster: loopback only); workers connect to it from
their batch jobs. Everything stops when the script ends. Extra arguments after `--` go to
`orch run` (e.g. `-- --resume RUN_ID`). Exit code: orch run's.
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
    parser.add_argument("--host", default=None, help="address the scheduler and workers listen on, e.g. 127.0.0.1")
    parser.add_argument("--log-directory", default=None, help="where the worker jobs' SLURM output goes")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = parser.parse_args(argv[:cut]), argv[cut + 1:]  # after --: more orch run options

    from dask_jobqueue import SLURMCluster
    from distributed import Client

    host = ["--host", args.host] if args.host else []
    cluster = SLURMCluster(cores=args.cores, processes=1, memory=args.memory, queue=args.queue,
                           walltime=args.walltime, interface=args.interface, log_directory=args.log_directory,
                           scheduler_options={"host": args.host} if args.host else None,
                           worker_extra_args=["--resources", "cpu=1", *host],
                           job_script_prologue=[f"source {sys.prefix}/bin/activate"])
    try:
        cluster.scale(jobs=args.nodes)
        with Client(cluster) as client:
            client.wait_for_workers(args.nodes, timeout=3600)
        address = cluster.scheduler_address
        if args.nodes > 1:  # the network between the hosts (one host has none to measure)
            done = subprocess.run([sys.executable, "-m", "orchestrator", "profile", "--address", address], check=False)
            if done.returncode != 0:
                return done.returncode
        return subprocess.run([sys.executable, "-m", "orchestrator", "run", args.workload, "--address", address, *extra],
                              check=False).returncode
    finally:
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
