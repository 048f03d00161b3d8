"""The seed table: a dot product as a Python for-loop, vectorized on the CPU (NumPy and
PyTorch), and on a GPU where one is present, at several sizes, in one run.

    .venv/bin/python benchmarks/seed.py [--sizes 1000,10000,...]

Each cell is the median of repeated executions (at least 5, or 0.2 s worth). The GPU column
starts with the vectors in host memory and includes both copies, as `data: host` does; the
column beside it has them on the device already.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def timed(fn, budget_s: float = 0.2, least: int = 5) -> float:
    fn()  # warm-up
    times, spent = [], 0.0
    while len(times) < least or spent < budget_s:
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
        spent += times[-1]
        if len(times) >= 1000:
            break
    return statistics.median(times)


def loop_dot(a: list[float], b: list[float]) -> float:
    total = 0.0
    for x, y in zip(a, b):
        total += x * y
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000,10000000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    gpu = torch.device("cuda") if torch.cuda.is_available() else None
    header = "| n | Python loop | NumPy | PyTorch CPU | loop / NumPy |"
    if gpu is not None:
        header += f" GPU ({torch.cuda.get_device_name(0)}), from host | GPU, on device | NumPy / GPU on device |"
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    rng = np.random.default_rng(0)
    for n in sizes:
        a, b = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        loop = None
        if n <= 1_000_000:  # 10M elements take seconds a call in the interpreter
            la, lb = a.tolist(), b.tolist()
            loop = timed(lambda: loop_dot(la, lb), least=3)
        vec = timed(lambda: np.dot(a, b))
        tor = timed(lambda: torch.dot(ta, tb))
        row = [f"{n:,}", f"{loop * 1e3:.3g} ms" if loop else "-", f"{vec * 1e6:.3g} µs", f"{tor * 1e6:.3g} µs",
               f"{loop / vec:,.0f}x" if loop else "-"]
        if gpu is not None:
            da, db = ta.to(gpu), tb.to(gpu)

            def from_host() -> float:
                return float(torch.dot(ta.to(gpu), tb.to(gpu)).cpu())

            def on_device() -> None:
                torch.dot(da, db)
                torch.cuda.synchronize()

            host, dev = timed(from_host), timed(on_device)
            row += [f"{host * 1e6:.3g} µs", f"{dev * 1e6:.3g} µs", f"{vec / dev:.3g}x"]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
