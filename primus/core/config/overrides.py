"""CLI overrides: ``a.b=value`` (set), ``+a.b=value`` (add a key the schema lacks), ``~a.b`` (delete)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from primus.core.config.resolved import CLI, ResolvedConfig
from primus.core.config.yaml_source import parse_scalar
from primus.core.errors import ProblemCollector

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def is_override(token: str) -> bool:
    """Whether a CLI token looks like an override (so argparse leftovers can be routed)."""
    return not token.startswith("-") and ("=" in token or token.startswith("~"))


def _is_dotted_key(token: str) -> bool:
    key = token.removeprefix("+")
    return "." in key and bool(_KEY.match(key))


def missing_equals(tokens: list[str]) -> list[tuple[str, str]]:
    """``(as typed, as meant)`` for each ``section.key value`` written without ``=``.

    A dotted key among the leftover tokens takes the next token as its value when that one is
    neither an option, an override nor another dotted key.
    """
    found = []
    for i, token in enumerate(tokens):
        if token.startswith("-") or is_override(token) or not _is_dotted_key(token):
            continue
        after = tokens[i + 1] if i + 1 < len(tokens) else None
        if after is None or after.startswith("-") or is_override(after) or _is_dotted_key(after):
            found.append((token, f"{token}=VALUE"))
        else:
            found.append((f"{token} {after}", f"{token}={after}"))
    return found


def apply_overrides(cfg: ResolvedConfig, overrides: Iterable[str], problems: ProblemCollector) -> None:
    for raw in overrides:
        if raw.startswith("~"):
            key = raw[1:]
            if not _KEY.match(key):
                problems.add(f"malformed delete override {raw!r}", source=CLI, hint="write ~section.key")
            elif not cfg.delete(key):
                problems.add("cannot delete: the key is not in the config", key=key, source=CLI)
            continue
        key, sep, text = raw.partition("=")
        add = key.startswith("+")
        key = key.lstrip("+")
        if not sep or not _KEY.match(key):
            problems.add(
                f"malformed override {raw!r}",
                source=CLI,
                hint="write section.key=value, +section.new_key=value or ~section.key",
            )
            continue
        cfg.set(key, parse_scalar(text), CLI)
        if add:
            cfg.added.add(key)
