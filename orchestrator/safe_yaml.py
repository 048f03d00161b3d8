"""YAML as data only: safe loader, bounded size, bounded nesting, no alias expansion bombs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import InputError

MAX_FILE_BYTES = 4 << 20
MAX_DEPTH = 32
MAX_ALIASES = 100
MAX_EXPANDED_NODES = 1_000_000  # what the document would be with every alias expanded


MAX_INT_DIGITS = 100  # larger integers stay text, for the validators to refuse by field


class _Constructing:
    """What both loaders construct: mappings refuse a key given twice (PyYAML would silently keep
    the last)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[attr-defined]
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: let PyYAML report it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}'", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc]


# libyaml's parser and composer, in C: a 10,000-job workload file parses in 0.3 s instead of 5 s.
# Its tree is checked against the same limits after composing (libyaml itself stops at 1,000
# levels); any error or limit sends the text through the Python loader, whose messages say what
# and where.
_FastLoader = type("_FastLoader", (_Constructing, yaml.CSafeLoader), {}) if yaml.__with_libyaml__ else None


class _BoundedLoader(_Constructing, yaml.SafeLoader):
    """SafeLoader that refuses many aliases (billion-laughs) and deep nesting while composing."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.YAMLError(f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_size(root: yaml.Node) -> int:
    """Node count with aliases expanded, computed once per distinct node (billion laughs guard)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[id(node)] = 1
            continue
        kids = [k for pair in node.value for k in pair] if isinstance(node, yaml.MappingNode) else list(node.value)
        if children_done:
            sizes[id(node)] = 1 + sum(sizes.get(id(k), 0) for k in kids)
            continue
        stack.append((node, True))
        stack.extend((kid, False) for kid in kids if id(kid) not in sizes)
    return sizes[id(root)]


def load_file(path: Path, error: type[InputError]) -> Any:
    """Parse `path` as YAML data; every failure is `error` naming the file and what is wrong."""
    if not path.exists():
        raise error(f"{path}: no such file", fix="check the path")
    if path.is_dir():
        raise error(f"{path}: is a directory, not a YAML file", fix="name the .yaml file inside it")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise error(f"{path}: file is {size} bytes, over the {MAX_FILE_BYTES} byte limit")
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror})") from exc
    if b"\x00" in raw:
        raise error(f"{path}: binary file, not YAML")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    return load_text(text, str(path), error)


def _within_limits(root: yaml.Node) -> bool:
    """The C-composed tree within MAX_DEPTH (root at 1, as `_BoundedLoader` counts),
    MAX_ALIASES (references to a node already composed) and, where it has aliases,
    MAX_EXPANDED_NODES."""
    seen: set[int] = set()
    aliases = 0
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if id(node) in seen:
            aliases += 1
            if aliases > MAX_ALIASES:
                return False
            continue
        seen.add(id(node))
        if depth > MAX_DEPTH:
            return False
        if isinstance(node, yaml.MappingNode):
            stack.extend((kid, depth + 1) for pair in node.value for kid in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((kid, depth + 1) for kid in node.value)
    return aliases == 0 or _expanded_size(root) <= MAX_EXPANDED_NODES


def _load_fast(text: str) -> tuple[bool, Any]:
    """(True, data) where libyaml loads `text` within every limit; (False, None) otherwise."""
    if _FastLoader is None:
        return False, None
    loader = _FastLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return True, None
        if not _within_limits(node):
            return False, None
        return True, loader.construct_document(node)
    except (yaml.YAMLError, RecursionError, ValueError):
        return False, None
    finally:
        loader.dispose()


def load_text(text: str, source: str, error: type[InputError]) -> Any:
    done, data = _load_fast(text)
    if done:
        return data
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_EXPANDED_NODES:
            raise error(f"{source}: invalid YAML: aliases expand to more than {MAX_EXPANDED_NODES} nodes")
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise error(f"{source}: invalid YAML{where}: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{source}: invalid YAML: {exc}") from exc
    except RecursionError as exc:
        raise error(f"{source}: invalid YAML: nested too deeply") from exc
    finally:
        loader.dispose()


def _bounded_int(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    """An int, or the text of one too long to convert (Python refuses ints of over 4,300
    digits, which would escape as a raw ValueError instead of naming the field)."""
    if len(node.value) > MAX_INT_DIGITS:
        return loader.construct_scalar(node)
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _bounded_int)
if _FastLoader is not None:
    _FastLoader.add_constructor("tag:yaml.org,2002:int", _bounded_int)
