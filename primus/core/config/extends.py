"""``extends:`` inheritance: parents first (in order), the including file wins."""

from __future__ import annotations

from pathlib import Path

from primus.core.config.resolved import ResolvedConfig
from primus.core.config.yaml_source import read_yaml_file
from primus.core.errors import ConfigError

EXTENDS_KEY = "extends"
#: configs shipped with Primus: ``extends: NAME.yaml`` finds them when no such file is next to the config
SHIPPED_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def load_with_extends(path: Path, _chain: tuple[Path, ...] = ()) -> ResolvedConfig:
    """Load ``path`` and, recursively, the files named by its ``extends`` key.

    ``extends`` is a path or a list of paths, relative to the including file, or the name of a
    config shipped in ``primus/configs`` (``tiny_llama.yaml``). A cycle is an error that prints
    the whole chain.
    """
    real = path.resolve()
    if real in _chain:
        chain = " -> ".join(str(p) for p in (*_chain, real))
        raise ConfigError(
            f"extends cycle: {chain}", key=EXTENDS_KEY, hint="remove one of the extends entries"
        )
    own = read_yaml_file(path)
    parents = own.data.pop(EXTENDS_KEY, None)
    where = own.sources.pop(EXTENDS_KEY, str(path))
    if parents is None:
        return own
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise ConfigError("must be a path or a list of paths", key=EXTENDS_KEY, source=where)
    merged = ResolvedConfig()
    for parent in parents:
        parent_path = (path.parent / parent).resolve() if not Path(parent).is_absolute() else Path(parent)
        if not parent_path.is_file() and (SHIPPED_CONFIGS / parent).is_file():
            parent_path = SHIPPED_CONFIGS / parent  # e.g. `extends: tiny_llama.yaml`
        if not parent_path.is_file():
            shipped = ", ".join(sorted(p.name for p in SHIPPED_CONFIGS.glob("*.yaml")))
            raise ConfigError(
                f"parent config {parent!r} not found (looked for {parent_path})",
                key=EXTENDS_KEY,
                source=where,
                hint=f"paths in extends are relative to the file that contains them; shipped configs: {shipped}",
            )
        merged.merge(load_with_extends(parent_path, (*_chain, real)))
    merged.merge(own)
    return merged
