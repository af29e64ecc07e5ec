"""Megatron-Bridge ``ConfigContainer`` <-> Primus config tree, strictly and with provenance.

* :func:`apply_section` writes user values onto the container's dataclasses: unknown keys are
  problems with the closest valid key (or, for a known alias such as ``learning_rate``, the
  Megatron name), types are checked, strings become ``torch.dtype`` / enums / activation
  functions, and ``_target_`` instantiation is refused.
* :class:`Provenance` remembers where each leaf came from (recipe, file:line, cli, derived,
  patch) and :meth:`Provenance.view` renders the container as a :class:`ResolvedConfig`.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from primus.core.config.aliases import unknown_key_hint
from primus.core.config.resolved import ResolvedConfig
from primus.core.errors import ProblemCollector

_PLAIN = (bool, int, float, str, type(None))


def field_names(obj: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(obj) if not f.name.startswith("_")]


def plain_value(value: Any) -> tuple[bool, Any]:
    """(representable, value as YAML data) for one config value."""
    import torch

    if isinstance(value, enum.Enum):
        return True, value.name
    if isinstance(value, _PLAIN):
        return True, value
    if isinstance(value, torch.dtype):
        return True, str(value).removeprefix("torch.")
    if isinstance(value, (list, tuple)) and all(isinstance(v, _PLAIN) for v in value):
        return True, list(value)
    if isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, _PLAIN) for k, v in value.items()
    ):
        return True, dict(value)
    return False, None


def to_tree(obj: Any) -> dict[str, Any]:
    """Plain nested dict of a dataclass (callables, modules and other objects left out)."""
    out: dict[str, Any] = {}
    for name in field_names(obj):
        value = getattr(obj, name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out[name] = to_tree(value)
            continue
        ok, data = plain_value(value)
        if ok:
            out[name] = data
    return out


def coerce(value: Any, current: Any, key: str) -> Any:
    """Convert a YAML value to the type the field holds now; raise ValueError when impossible."""
    import torch

    if isinstance(value, dict) and "_target_" in value:
        raise ValueError("`_target_` instantiation is not allowed in Primus configs; set plain values")
    if current is None or value is None:
        return value
    if isinstance(current, torch.dtype):
        if isinstance(value, str) and isinstance(
            getattr(torch, value.removeprefix("torch."), None), torch.dtype
        ):
            return getattr(torch, value.removeprefix("torch."))
        raise ValueError(f"expected a torch dtype name (bfloat16, float16, float32), got {value!r}")
    if isinstance(current, enum.Enum):
        members = type(current).__members__
        if isinstance(value, str) and value in members:
            return members[value]
        for member in type(current):
            if member.value == value:
                return member
        raise ValueError(f"expected one of {', '.join(members)}, got {value!r}")
    if key == "activation_func" and isinstance(value, str):
        from megatron.bridge.utils.activation_map import str_to_callable

        return str_to_callable(value)
    if isinstance(current, bool) or isinstance(value, bool):
        if not (isinstance(current, bool) and isinstance(value, bool)):
            raise ValueError(f"expected {type(current).__name__}, got {type(value).__name__} {value!r}")
        return value
    if isinstance(current, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise ValueError(f"expected int, got {type(value).__name__} {value!r}")
        return value
    if isinstance(current, float):
        if not isinstance(value, (int, float)):
            raise ValueError(f"expected float, got {type(value).__name__} {value!r}")
        return float(value)
    if isinstance(current, str) and not isinstance(value, str):
        raise ValueError(f"expected str, got {type(value).__name__} {value!r}")
    if isinstance(current, (list, tuple)) and not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list, got {type(value).__name__} {value!r}")
    return value


class Provenance:
    """Dotted path -> source for a container; untouched leaves keep the base source."""

    def __init__(self, base_source: str) -> None:
        self.base_source = base_source
        self.sources: dict[str, str] = {}

    def record(self, path: str, source: str) -> None:
        self.sources[path] = source

    def view(self, container: Any, sections: tuple[str, ...]) -> ResolvedConfig:
        cfg = ResolvedConfig()
        for section in sections:
            value = getattr(container, section, None)
            if dataclasses.is_dataclass(value):
                data = to_tree(value)
            else:
                ok, data = plain_value(value)
                if not ok:
                    continue
            cfg.set(section, data, self.base_source)
        for path, source in self.sources.items():
            if cfg.has(path):
                if isinstance(cfg.get(path), dict) and cfg.get(path):
                    for leaf, _, _ in ResolvedConfig(data={"x": cfg.get(path)}).leaves():
                        cfg.sources[f"{path}.{leaf[2:]}"] = source
                else:
                    cfg.sources[path] = source
        return cfg


def set_path(container: Any, path: str, value: Any, source: str, provenance: Provenance) -> None:
    """Set one dotted path on the container (no validation: for builders and patches)."""
    *parents, leaf = path.split(".")
    node = container
    for part in parents:
        node = getattr(node, part)
    setattr(node, leaf, value)
    provenance.record(path, source)


def apply_section(
    target: Any,
    values: dict[str, Any],
    prefix: str,
    user: ResolvedConfig,
    provenance: Provenance,
    problems: ProblemCollector,
) -> None:
    """Strictly apply ``values`` (from the user's config) onto the dataclass ``target``."""
    valid = field_names(target)
    for key, value in values.items():
        path = f"{prefix}.{key}"
        source = user.source_of(path) or "default"
        if key not in valid and not hasattr(target, key):
            if path in user.added:
                object.__setattr__(target, key, value)
                provenance.record(path, source)
            else:
                problems.add(
                    "unknown key", key=path, source=source, hint=unknown_key_hint(key, valid, prefix)
                )
            continue
        current = getattr(target, key)
        if dataclasses.is_dataclass(current) and isinstance(value, dict) and "_target_" not in value:
            apply_section(current, value, path, user, provenance, problems)
            continue
        try:
            final = coerce(value, current, key)
        except ValueError as exc:
            problems.add(str(exc), key=path, source=source)
            continue
        setattr(target, key, final)
        provenance.record(path, source)
