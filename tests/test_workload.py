from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.placement import Placement
from orchestrator.workload.loader import load, parse
from orchestrator.workload.sizes import parse_size


@pytest.mark.parametrize(("text", "value"), [
    (5, 5), ("10K", 10_000), ("1M", 10**6), ("2G", 2 * 10**9), ("4Ki", 4096), ("1Mi", 2**20),
    ("1e6", 10**6), ("1.5K", 1500), (1e3, 1000), ("7", 7),
    ("1.1K", 1100), ("2.3M", 2_300_000), ("1.25Ki", 1280), ("4.1e3", 4100),  # exact: 1.1 * 1000 is not 1100 in floats
])
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("bad", [0, -1, "0", "1.5", "1e-3", "K", "", True, None, [1], "1.0001K", "9" * 5000,
                                 10**16, "1e400"])
def test_bad_sizes(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


@pytest.mark.parametrize(("text", "canonical", "kind"), [
    ("cpu", "cpu", "cpu"), ("gpu", "gpu", "gpu"), ("gpu:1", "gpu", "gpu"), ("gpu:4", "gpu:4", "multi_gpu"),
    ("cpu@4", "cpu@4", "multi_node"), ("gpu:8@2", "gpu:8@2", "multi_node"),
])
def test_placements_round_trip(text, canonical, kind):
    placement = Placement.parse(text)
    assert str(placement) == canonical and placement.kind == kind
    assert Placement.parse(str(placement)) == placement


def test_defaults_apply_where_the_op_has_the_field():
    data = {"version": 1, "name": "w", "defaults": {"dtype": "float64", "n": 77, "repeats": 5},
            "jobs": [{"name": "a", "op": "dot"}, {"name": "b", "op": "matmul", "m": 2, "n": 3, "k": 4},
                     {"name": "c", "op": "kmeans", "samples": 10, "features": 2, "clusters": 2, "dtype": "float32"}]}
    jobs = parse(data, "w.yaml").jobs
    assert jobs[0].params == {"n": 77} and jobs[0].dtype == "float64" and jobs[0].repeats == 5
    assert jobs[1].params == {"m": 2, "n": 3, "k": 4}
    assert jobs[2].dtype == "float32" and jobs[2].params["iterations"] == 10


def test_example_workloads_load():
    for path in ("workloads/demo.yaml",):
        assert load(path).jobs


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(["m", "n", "k", "dtype", "seed", "data"]),
                       st.lists(st.integers(1, 50), min_size=1, max_size=4, unique=True), min_size=1, max_size=4))
def test_sweeps_expand_to_the_product(axes):
    values = {key: (["float32", "float64", "bfloat16", "float16"][: len(v)] if key == "dtype"
                    else (["host", "device"][: len(v)] if key == "data" else v)) for key, v in axes.items()}
    data = {"version": 1, "name": "w",
            "jobs": [{"name": "g", "op": "matmul", "m": 1, "n": 1, "k": 1, "sweep": values}]}
    jobs = parse(data, "w.yaml").jobs
    assert len(jobs) == math.prod(len(v) for v in values.values())
    assert len({job.name for job in jobs}) == len(jobs)
    assert all(job.name.startswith("g[") for job in jobs)


def test_libyaml_and_the_python_loader_read_every_shipped_file_alike():
    """Workload and profile files parse through libyaml (a 10,000-job file: 5 s -> 0.3 s); the
    Python loader, which gives the error messages, must agree with it on what a file holds."""
    import yaml

    from orchestrator import safe_yaml

    root = Path(__file__).resolve().parent.parent
    files = sorted((root / "workloads").glob("*.yaml")) + sorted((root / "profiles").glob("*.yaml")) + \
        sorted((root / "tests" / "data").glob("*.yaml"))
    assert len(files) > 10
    for path in files:
        text = path.read_text()
        done, fast = safe_yaml._load_fast(text)
        assert done, path
        slow = safe_yaml._BoundedLoader(text)
        try:
            assert fast == slow.get_single_data(), path
        finally:
            slow.dispose()
    big = "n: " + "9" * 200 + "\nanchors: &a [1, 2]\nuse: [*a, *a]\n"
    assert safe_yaml._load_fast(big) == (True, {"n": "9" * 200, "anchors": [1, 2], "use": [[1, 2], [1, 2]]})
    nested = "a: " + "[" * 40 + "]" * 40
    assert safe_yaml._load_fast(nested) == (False, None)  # over MAX_DEPTH: the Python loader says why
    laughs = "a: &a [x, x]\n" + "".join(f"{c}: &{c} [*{p}, *{p}]\n" for p, c in zip("abcdefghij", "bcdefghijk"))
    assert safe_yaml._load_fast(laughs)[0] is True  # 20 aliases, 2^11 nodes: within the limits
    assert yaml.__with_libyaml__
