"""Run the real `orch` command line in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def orch(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb", **(env or {})}
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


# Each golden file and the command line that makes it. Tests only read them; after a change
# that is meant to alter the output, `python -m tests.cli regenerate` writes them again, and
# the diff is reviewed like code.
GOLDEN_COMMANDS = {
    "plan_demo_h100-sxm.json": ("plan", "workloads/demo.yaml", "--profile", "h100-sxm", "--format", "json"),
    "plan_demo_cpu-c7i-8xlarge.json": ("plan", "workloads/demo.yaml", "--profile", "cpu-c7i-8xlarge", "--format", "json"),
    "plan_demo_h100-sxm.txt": ("plan", "workloads/demo.yaml", "--profile", "h100-sxm"),
    "profile_show_h100-sxm.json": ("profile", "show", "h100-sxm", "--format", "json"),
    "profile_show_h100-sxm.txt": ("profile", "show", "h100-sxm"),
}


def golden_output(name: str) -> subprocess.CompletedProcess:
    """Run the command behind a golden file, as the test and the regeneration both do."""
    return orch(*GOLDEN_COMMANDS[name])


def matches_golden(name: str, text: str) -> bool:
    """Compare with tests/golden/NAME (read only; see GOLDEN_COMMANDS)."""
    return (GOLDEN / name).read_text() == text


if __name__ == "__main__":
    if sys.argv[1:] != ["regenerate"]:
        sys.exit("usage: python -m tests.cli regenerate")
    import tempfile

    os.chdir(Path(__file__).resolve().parent.parent)
    os.environ["ORCH_HOME"] = tempfile.mkdtemp(prefix="orch-golden-")  # nothing learnt, as in the tests
    for golden_name in GOLDEN_COMMANDS:
        result = golden_output(golden_name)
        if result.returncode != 0:
            sys.exit(f"{golden_name}: {' '.join(GOLDEN_COMMANDS[golden_name])} failed: {result.stderr}")
        (GOLDEN / golden_name).write_text(result.stdout)
        print(f"wrote tests/golden/{golden_name}")


def interruptible() -> None:
    """`preexec_fn` of an orch a test interrupts: Ctrl-C's default disposition. A shell without
    job control starts its background commands with SIGINT ignored, and an ignored SIGINT is
    inherited across exec: pytest started so (`bash .ci/run &` from a script) made orch ignore
    the test's Ctrl-C, and the run went on to the end."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
