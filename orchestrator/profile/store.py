"""Saved profiles (`$ORCH_HOME/profiles/<host>.yaml`) and bundled ones (the repo's `profiles/`)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from orchestrator import paths
from orchestrator.errors import ProfileError, did_you_mean
from orchestrator.profile.model import ClusterProfile, NodeProfile
from orchestrator.safe_yaml import load_file
from orchestrator.validation import describe

AnyProfile = NodeProfile | ClusterProfile


@dataclass(frozen=True)
class ProfileEntry:
    name: str
    origin: str  # "bundled" | "saved"
    kind: str
    path: Path


def this_host() -> str:
    return socket.gethostname().split(".")[0] or "localhost"


def parse(data: object, source: str) -> AnyProfile:
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: a profile is a YAML mapping with version, name and cpu (got {type(data).__name__})")
    model: type[AnyProfile] = ClusterProfile if data.get("kind") == "cluster" else NodeProfile
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(describe(exc, source, model)) from exc


def load_path(path: Path) -> AnyProfile:
    return parse(load_file(path, ProfileError), str(path))


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []


def entries() -> list[ProfileEntry]:
    """Bundled then saved profiles, each read just far enough to know its kind."""
    found = []
    for origin, folder in (("bundled", paths.bundled_profiles_dir()), ("saved", paths.saved_profiles_dir())):
        for path in _yaml_files(folder) + _yaml_files(folder / "clusters"):
            try:
                kind = load_path(path).kind
            except ProfileError as exc:
                kind = f"invalid: {exc.message}"
            found.append(ProfileEntry(path.stem, origin, kind, path))
    return found


def resolve(name_or_path: str) -> AnyProfile:
    """A path to a YAML file, or the name of a saved (first) or bundled profile."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml") or os.sep in name_or_path or candidate.exists():
        return load_path(candidate)
    by_name: dict[str, ProfileEntry] = {}
    for entry in sorted(entries(), key=lambda e: e.origin != "saved"):
        by_name.setdefault(entry.name, entry)
    if name_or_path not in by_name:
        raise ProfileError(f"profile '{name_or_path}': not found; {did_you_mean(name_or_path, by_name)}",
                           fix="`orch profile list` shows the names")
    return load_path(by_name[name_or_path].path)


def saved_path(host: str | None = None) -> Path:
    return paths.saved_profiles_dir() / f"{host or this_host()}.yaml"


def newest_for_host() -> NodeProfile | None:
    """The saved profile of this host, or None."""
    path = saved_path()
    if not path.exists():
        return None
    profile = load_path(path)
    return profile if isinstance(profile, NodeProfile) else None


def save(profile: NodeProfile, path: Path | None = None) -> Path:
    """Write atomically, private to the user."""
    path = path or saved_path(profile.host)
    return paths.write_atomic(path, yaml.safe_dump(to_data(profile), sort_keys=False))


def to_data(profile: AnyProfile) -> dict:
    return profile.model_dump(mode="json", exclude_none=True)
