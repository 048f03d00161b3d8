"""What an op is, defined once: the data the planner reads (work, traffic, bytes that cross
host↔device, where it can run and why not elsewhere, how it splits across devices) and the kernel
the workers run (seeded synthetic inputs, one execution, its distributed form, a check of the
result so a fast wrong kernel fails). Kernels are PyTorch on every device, so one code path is
measured everywhere; `python_dot` is the plain interpreter loop.

Counts follow the usual conventions: a multiply-add is 2 FLOPs; LAPACK factorisation counts are
from Golub & Van Loan, "Matrix Computations" (4th ed.), and LAPACK Working Note 41.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from typing import Any, ClassVar

from orchestrator.ops.tensors import Tensors

WORKLOAD_DTYPES = ("float16", "bfloat16", "float32", "float64")
ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "tfloat32": 4, "float64": 8}
FLOAT_ONLY = ("float32", "float64")  # LAPACK / cuSOLVER / pocketfft precisions


class Rate(str, enum.Enum):
    """Which measured throughput an op's compute runs at."""

    GEMM = "gemm"                    # the GEMM curve at the op's effective size
    FACTORIZATION = "factorization"  # a fraction of the GEMM curve (blocked LAPACK / cuSOLVER)
    STREAM = "stream"                # memory-bound elementwise / reduction
    FFT = "fft"                      # a small fraction of peak; usually memory-bound
    PYTHON = "python"                # the interpreter, one element at a time
    TRAINING = "training"            # GEMMs at batch size, plus many small kernels per step


class Split(str, enum.Enum):
    """How a job is divided across devices."""

    NONE = "none"                    # does not split
    ROW_BLOCKS = "row_blocks"        # A split by rows, B replicated, C gathered (matmul)
    SHARDS_REDUCE = "shards_reduce"  # shards, then a small all-reduce of the partial result
    ELEMENTWISE = "elementwise"      # shards, no communication (axpy)
    DATA_PARALLEL = "data_parallel"  # data shards, an all-reduce per step (training, kmeans)


@dataclass(frozen=True)
class Param:
    default: Any = None  # None = required
    kind: str = "size"   # "size" | "size_list"
    scales: bool = True  # the work grows with it (n, m, k, samples); not: iterations, features, ...


@dataclass(frozen=True)
class Selection:
    """One sort-family call: `elements` compared, the `k` largest or smallest kept along rows
    (None: a full sort)."""

    elements: float
    k: int | None = None


class Op(abc.ABC):
    """One entry of the catalog: a handful of class attributes, the cost formulas, and the
    kernel (`make_inputs`, `run`, `check`; `run_rank` where it splits)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    params: ClassVar[dict[str, Param]]
    rate: ClassVar[Rate]
    split: ClassVar[Split] = Split.NONE
    dtypes: ClassVar[tuple[str, ...]] = WORKLOAD_DTYPES
    # its calls are PyTorch eager ops, each paying torch's dispatch (users' own ops)
    eager_torch: ClassVar[bool] = False
    # its passes stream data the cache may hold (its memory term reads the profile's bandwidth at
    # its working set); False: at memory's, whatever the size
    cache_resident: ClassVar[bool] = True
    # placement kind (cpu, gpu, multi_gpu, multi_node) → why it cannot run there
    not_supported: ClassVar[dict[str, str]] = {}

    @abc.abstractmethod
    def flops(self, p: dict[str, Any]) -> float:
        """Floating-point operations of one execution."""

    @abc.abstractmethod
    def input_elements(self, p: dict[str, Any]) -> float:
        """Elements of the inputs (what crosses host→device when `data: host`)."""

    @abc.abstractmethod
    def output_elements(self, p: dict[str, Any]) -> float:
        """Elements of the result (what crosses device→host when `data: host`)."""

    def input_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        """Bytes of the inputs as the kernel makes them (what a `data: host` GPU job copies in)."""
        return self.input_elements(p) * itemsize

    def output_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        """Bytes of the result (what a `data: host` GPU job copies back)."""
        return self.output_elements(p) * itemsize

    def traffic_elements(self, p: dict[str, Any]) -> float:
        """Minimum memory traffic: read the inputs once, write the result once."""
        return self.input_elements(p) + self.output_elements(p)

    def working_set_elements(self, p: dict[str, Any]) -> float:
        return self.input_elements(p) + self.output_elements(p)

    def traffic_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        """Bytes one execution moves through memory (what the memory term charges)."""
        return self.traffic_elements(p) * itemsize

    def working_set_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        """Bytes one execution holds on its device (which cache level or memory serves it)."""
        return self.working_set_elements(p) * itemsize

    def peak_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        """Host memory a CPU worker holds at the job's peak: the working set, plus the float64
        copies of the inputs and result the check compares against (measured against peak RSS
        at two sizes per op in tests/test_memory.py)."""
        return self.working_set_elements(p) * itemsize + (self.input_elements(p) + self.output_elements(p)) * 8

    def launches(self, p: dict[str, Any]) -> int:
        """Library calls / kernel launches per execution (each pays dispatch or launch latency)."""
        return 1

    def selections(self, p: dict[str, Any]) -> tuple[Selection, ...]:
        """The sorting work an execution does (top-k, sort): comparisons, not FLOPs, priced at
        the profile's measured selection rate. The catalog's ops sort nothing."""
        return ()

    def softmax_elements(self, p: dict[str, Any]) -> float:
        """Elements an execution takes a softmax over (attention's scores among them): work
        priced at the profile's measured softmax rate. The catalog's ops take none."""
        return 0.0

    def calls(self, p: dict[str, Any], device: str) -> int:
        """GEMM-like calls the compute is made of: each runs at the measured rate for its share of
        the work (flops / calls). Never decreases when the work grows."""
        return 1

    def collectives(self, p: dict[str, Any]) -> int:
        """Reduction rounds per execution when split (SHARDS_REDUCE: 1; DATA_PARALLEL: per step)."""
        return 1

    def collective_bytes(self, p: dict[str, Any], itemsize: int) -> float:
        """Bytes one device contributes to each round's reduction (a dot's partial scalar)."""
        return float(itemsize)

    def collective_tensors(self, p: dict[str, Any]) -> int:
        """Separate all-reduces each round: each pays the link's latency."""
        return 1

    def replicated_elements(self, p: dict[str, Any]) -> float:
        """Input elements every device needs whole when split (B of a matmul)."""
        return 0.0

    def rounds(self, p: dict[str, Any]) -> int:
        """How many times the kernel repeats the same work (k-means' iterations): its measured
        scale is read at one round's work, since repeating a kernel does not make it run faster."""
        return 1

    def scaled_like(self, compute_s: float, memory_s: float) -> str:
        """Whose measured scale (the profile's op benchmarks) corrects this op's modelled work:
        its own."""
        return self.name

    def aligned_sizes(self, p: dict[str, Any]) -> dict[str, int]:
        """The matrix dimensions whose alignment to a power of two the kernel's speed depends on,
        by name (LAPACK's factorisations: cost/alignment.py); none where it does not."""
        return {}

    def where_not(self, kind: str) -> str | None:
        return self.not_supported.get(kind)

    def invalid(self, p: dict[str, Any]) -> str | None:
        """What is wrong with these parameters together (each is already a positive size), as
        one line that starts with the field to change; None when nothing is."""
        return None

    def grown(self, p: dict[str, Any], factor: float) -> dict[str, Any]:
        """The same job with every size the work grows with multiplied by `factor` (the report's
        crossover curves), still valid."""
        return {**p, **{name: max(1, round(p[name] * factor)) for name, spec in self.params.items()
                        if spec.kind == "size" and spec.scales}}

    # The kernel. `p` is the job's parameters; `dtype`, `gen` and `device` are torch objects.

    # inputs made only for the check (axpy's initial y): never moved to the device, never timed
    check_only: ClassVar[frozenset[str]] = frozenset()
    # A gang (execute/gang.py): the inputs each rank keeps a slice of, along their first
    # dimension, and the parameter that slice divides. () = the op has no distributed form.
    gang_split: ClassVar[tuple[str, ...]] = ()
    gang_size: ClassVar[str] = ""

    @abc.abstractmethod
    def make_inputs(self, p: dict[str, Any], dtype: Any, gen: Any, device: Any) -> Tensors:
        """Synthetic inputs, seeded, on `device` (not timed)."""

    @abc.abstractmethod
    def run(self, x: Tensors, p: dict[str, Any]) -> Any:
        """One execution on the device the inputs are on; returns the result (what is timed)."""

    @abc.abstractmethod
    def check(self, x: Tensors, result: Any, p: dict[str, Any], dtype: str) -> float | None:
        """Relative error of `result`; raise KernelCheckError when it is above tolerance."""

    def run_split(self, x: Tensors, p: dict[str, Any], devices: list[Any], data_on_host: bool) -> Any:
        """One execution over several GPUs one process drives (a worker given several)."""
        raise NotImplementedError(f"{self.name} does not split across devices")

    def run_rank(self, x: Tensors, p: dict[str, Any], comm: Any) -> Any:
        """One execution of the op's distributed form on this rank's shard (`p` sized to it);
        `comm` (execute/gang.Comm) holds the collectives. Default: the shard alone, no exchange."""
        return self.run(x, p)

    def check_rank(self, x: Tensors, result: Any, p: dict[str, Any], dtype: str, comm: Any) -> float | None:
        """This rank's part of the result checked against its shard (float64)."""
        return self.check(x, result, p, dtype)
