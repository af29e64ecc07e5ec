"""``${VAR}`` / ``${VAR:default}`` interpolation of string leaves from the environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from primus.core.config.resolved import ResolvedConfig
from primus.core.config.yaml_source import parse_scalar
from primus.core.errors import ProblemCollector

_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


def interpolate(cfg: ResolvedConfig, environ: Mapping[str, str], problems: ProblemCollector) -> None:
    """Replace every ``${VAR}`` in string leaves (and strings inside list leaves).

    A leaf that is exactly one ``${...}`` takes the YAML type of the value (``${ITERS:100}``
    is the int 100); otherwise the text is substituted into the string. Unset variables
    without a default are collected as problems naming the key and its file:line.
    """
    for path, value, source in list(cfg.leaves()):
        new = _resolve(value, path, source, environ, problems)
        if new is not value:
            node = cfg.get(path.rsplit(".", 1)[0]) if "." in path else cfg.data
            node[path.rsplit(".", 1)[-1]] = new


def _resolve(
    value: Any, path: str, source: str, environ: Mapping[str, str], problems: ProblemCollector
) -> Any:
    if isinstance(value, list):
        items = [_resolve(v, path, source, environ, problems) for v in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if not isinstance(value, str) or "${" not in value:
        return value

    def lookup(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        problems.add(
            f"environment variable {name} is not set",
            key=path,
            source=source,
            hint=f"export {name}=... or write ${{{name}:default}}",
        )
        return match.group(0)

    whole = _PATTERN.fullmatch(value)
    if whole:
        text = lookup(whole)
        return value if text == value else parse_scalar(text)
    return _PATTERN.sub(lookup, value)
