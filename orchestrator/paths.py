"""Where orch keeps its files: `ORCH_HOME` (default `~/.orch`) and the repo's bundled `profiles/`."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from orchestrator.errors import EnvironmentUnavailable, InputError


def orch_home() -> Path:
    """The user's store; created private to the user (0700) on first use."""
    home = Path(os.environ.get("ORCH_HOME") or Path.home() / ".orch").expanduser()
    return folder(home, "ORCH_HOME")


def folder(path: Path, what: str) -> Path:
    """`path` as an existing folder (made 0700 if missing); one-line errors naming it."""
    if path.exists() and not path.is_dir():
        raise EnvironmentUnavailable(f"{what} {path}: is a file, not a folder", fix="point it at a folder")
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise EnvironmentUnavailable(f"{what} {path}: cannot create it ({exc.strerror or exc})") from None
    return path


def saved_profiles_dir() -> Path:
    return folder(orch_home() / "profiles", "profile store")


def safe_name(name: str, what: str) -> str:
    """`name` as a file name inside a store folder: no separators, no leading dot (a profile
    named ../../x once wrote its calibration outside ORCH_HOME)."""
    if not name or name.startswith(".") or "/" in name or os.sep in name or "\0" in name:
        raise InputError(f"{what} '{name}': cannot name a file in the store",
                         fix="use letters, digits, '_', '.' and '-', not starting with '.'")
    return name


def write_atomic(path: Path, text: str, *, mode: int = 0o600) -> Path:
    """Write `text` to `path` through a uniquely named temporary file in the same folder, then
    rename it into place: concurrent writers never share a temporary file, readers never see a
    half-written one, and a symbolic link at `path` is replaced, not written through."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def bundled_profiles_dir() -> Path:
    """The repo's `profiles/` (override with `ORCH_BUNDLED_PROFILES`)."""
    override = os.environ.get("ORCH_BUNDLED_PROFILES")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "profiles"
