"""The layers hold by a tool, not by convention (issue 14): import-linter's contracts in
pyproject.toml pass, and fail when one rule is broken; no module is over 400 lines."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 400


def _lint(folder: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("importlinter")
    script = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", script], cwd=folder, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(folder), "PATH": "/usr/bin:/bin"})


def test_the_import_contracts_are_kept():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "broken"), [
    # a package importing one above it, even inside a function
    ("ops/base.py", "def _up():\n    from orchestrator.cost import model  # noqa\n", "orchestrator's packages are layered"),
    # the import circle that ran between the model and its factors
    ("cost/calibration.py", "def _circle():\n    from orchestrator.cost import model  # noqa\n", "the cost model"),
    # an engine reaching back up into the run
    ("backends/base.py", "def _back():\n    from orchestrator.run import runner  # noqa\n", "orchestrator's packages are layered"),
])
def test_breaking_one_rule_breaks_the_build(tmp_path, module, line, broken):
    shutil.copytree(ROOT / "orchestrator", tmp_path / "orchestrator", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "orchestrator" / module).open("a") as f:
        f.write("\n\n" + line)
    result = _lint(tmp_path)
    assert result.returncode != 0 and f"{broken}" in result.stdout and "BROKEN" in result.stdout, result.stdout


def test_no_module_is_over_400_lines():
    long = {str(path.relative_to(ROOT)): lines for path in (ROOT / "orchestrator").rglob("*.py")
            if (lines := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long
