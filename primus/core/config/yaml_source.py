"""Safe YAML loading that keeps the line of every leaf (for ``file:LINE`` provenance)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from primus.core.config.resolved import ResolvedConfig
from primus.core.errors import ConfigError


class SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``3e-4`` as a float (YAML 1.2), as users expect."""


SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _display(path: Path) -> str:
    """A short, stable label for a file: relative to the working directory when possible."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_yaml_file(path: Path) -> ResolvedConfig:
    """Parse one YAML file into a ResolvedConfig whose sources are ``file:LINE``.

    Only a ``yaml.SafeLoader`` is used: no Python object can be built from a config file.
    """
    label = _display(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise ConfigError(f"config file {what}", source=str(path), hint="check the path passed to --config")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file: {exc}", source=str(path)) from None
    return parse_yaml_text(text, label)


def parse_yaml_text(text: str, label: str) -> ResolvedConfig:
    try:
        root = yaml.compose(text, Loader=SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{label}:{mark.line + 1}" if mark else label
        problem = exc.problem or exc.context or "syntax error"
        raise ConfigError(f"YAML syntax error: {problem}", source=where, hint="fix the YAML syntax") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", source=label) from None
    cfg = ResolvedConfig()
    if root is None:
        return cfg
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(
            "the top level of a config file must be a mapping (key: value)",
            source=f"{label}:{root.start_mark.line + 1}",
        )
    constructor = SafeLoader("")  # constructs scalars/sequences with the safe rules
    try:
        cfg.data = _build_mapping(root, "", label, cfg.sources, constructor)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        where = f"{label}:{mark.line + 1}" if mark else label
        raise ConfigError(f"YAML error: {exc.problem}", source=where) from None
    return cfg


def _build_mapping(
    node: yaml.MappingNode, prefix: str, label: str, sources: dict[str, str], ctor
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = ctor.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise ConfigError(f"keys must be strings, got {key!r}", source=f"{label}:{line}")
        if key in out:
            raise ConfigError(
                f"duplicate key {key!r}", key=prefix + key, source=f"{label}:{line}", hint="keep one of them"
            )
        path = prefix + key
        if isinstance(value_node, yaml.MappingNode):
            out[key] = _build_mapping(value_node, path + ".", label, sources, ctor)
            if not out[key]:
                sources[path] = f"{label}:{line}"
        else:
            out[key] = ctor.construct_object(value_node, deep=True)
            sources[path] = f"{label}:{line}"
    return out


def parse_scalar(text: str) -> Any:
    """A CLI value typed by YAML rules: ``5`` -> int, ``true`` -> bool, ``[1,2]`` -> list."""
    try:
        return yaml.load(text, Loader=SafeLoader) if text.strip() else ""  # noqa: S506 (safe loader)
    except yaml.YAMLError:
        return text
