"""A nested config whose every leaf remembers where its value came from."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

_MISSING = object()

#: Provenance labels, besides ``path/file.yaml:LINE``.
DEFAULT = "default"
CLI = "cli"


def recipe_source(name: str) -> str:
    return f"recipe:{name}"


def derived_source(rule: str) -> str:
    return f"derived:{rule}"


def split_key(path: str) -> list[str]:
    return [part for part in path.split(".") if part]


@dataclass
class ResolvedConfig:
    """Plain nested dicts plus ``sources``: dotted leaf path -> provenance label.

    Lists are leaves (a list's source is where the whole list was set). ``added`` holds the
    keys the user declared new with ``+key=value``; strict schema checks skip them.
    """

    data: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    added: set[str] = field(default_factory=set)

    # -- access ---------------------------------------------------------------------------
    def get(self, path: str, default: Any = _MISSING) -> Any:
        node: Any = self.data
        for part in split_key(path):
            if not isinstance(node, dict) or part not in node:
                if default is _MISSING:
                    raise KeyError(path)
                return default
            node = node[part]
        return node

    def has(self, path: str) -> bool:
        sentinel = object()
        return self.get(path, sentinel) is not sentinel

    def source_of(self, path: str) -> str | None:
        """The provenance of a leaf, of the nearest ancestor set as a whole, or of a section's first leaf."""
        parts = split_key(path)
        for end in range(len(parts), 0, -1):
            label = self.sources.get(".".join(parts[:end]))
            if label is not None:
                return label
        prefix = ".".join(parts) + "."
        return next((label for key, label in self.sources.items() if key.startswith(prefix)), None)

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name) or {}
        return value if isinstance(value, dict) else {}

    # -- mutation -------------------------------------------------------------------------
    def set(self, path: str, value: Any, source: str) -> None:
        parts = split_key(path)
        node = self.data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if not isinstance(child, dict):
                if child is not None:
                    self._forget(".".join(parts[: i + 1]))
                child = {}
                node[part] = child
            node = child
        self._forget(path)
        node[parts[-1]] = copy.deepcopy(value)
        self._record(path, value, source)

    def delete(self, path: str) -> bool:
        parts = split_key(path)
        node: Any = self.data
        for part in parts[:-1]:
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        if not isinstance(node, dict) or parts[-1] not in node:
            return False
        del node[parts[-1]]
        self._forget(path)
        return True

    def merge(self, other: ResolvedConfig) -> None:
        """Deep-merge ``other`` on top of this config (other wins), sources included."""
        for path, value, source in other.leaves():
            self.set(path, value, source)
        for path in other.empty_dicts():
            if not self.has(path):
                self.set(path, {}, other.sources.get(path, DEFAULT))
        self.added |= other.added

    def _record(self, path: str, value: Any, source: str) -> None:
        if isinstance(value, dict) and value:
            for key, child in value.items():
                self._record(f"{path}.{key}", child, source)
        else:
            self.sources[path] = source

    def _forget(self, path: str) -> None:
        prefix = path + "."
        for key in [k for k in self.sources if k == path or k.startswith(prefix)]:
            del self.sources[key]

    # -- iteration / rendering ------------------------------------------------------------
    def leaves(self) -> Iterator[tuple[str, Any, str]]:
        """(dotted path, value, source) for every leaf, in document order."""

        def walk(node: dict[str, Any], prefix: str) -> Iterator[tuple[str, Any, str]]:
            for key, value in node.items():
                path = f"{prefix}{key}"
                if isinstance(value, dict) and value:
                    yield from walk(value, path + ".")
                else:
                    yield path, value, self.source_of(path) or DEFAULT

        yield from walk(self.data, "")

    def empty_dicts(self) -> Iterator[str]:
        return (path for path, value, _ in self.leaves() if value == {})

    def copy(self) -> ResolvedConfig:
        return ResolvedConfig(copy.deepcopy(self.data), dict(self.sources), set(self.added))

    def to_yaml(self, *, with_sources: bool = True) -> str:
        """YAML text; with sources, every leaf line ends with ``# <provenance>``."""
        if not with_sources:
            return yaml.safe_dump(self.data, sort_keys=False, default_flow_style=False)
        lines: list[str] = []

        def emit(node: dict[str, Any], prefix: str, indent: int) -> None:
            pad = "  " * indent
            for key, value in node.items():
                path = f"{prefix}{key}"
                if isinstance(value, dict) and value:
                    lines.append(f"{pad}{key}:")
                    emit(value, path + ".", indent + 1)
                else:
                    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
                    text = text.removesuffix("\n...").removesuffix("...").strip()
                    lines.append(f"{pad}{key}: {text}  # {self.source_of(path) or DEFAULT}")

        emit(self.data, "", 0)
        return "\n".join(lines) + "\n"
