"""The one config pipeline: YAML (+extends) -> ${VAR} -> CLI flags -> overrides -> defaults."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from primus.core.config.extends import load_with_extends
from primus.core.config.interpolate import interpolate
from primus.core.config.overrides import apply_overrides
from primus.core.config.resolved import CLI, ResolvedConfig
from primus.core.config.schema import apply_primus_defaults
from primus.core.errors import ProblemCollector


def load_config(
    config_path: str | os.PathLike | None = None,
    overrides: Iterable[str] = (),
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ResolvedConfig:
    """Build the user's layer of the config: everything but backend defaults and recipes.

    ``flags`` are values from named CLI options (``--data_path`` ...), applied before the
    free-form overrides; keys whose value is ``None`` were not given and are skipped.
    Every problem found (unset variables, malformed overrides) is reported at once.
    """
    problems = ProblemCollector()
    cfg = load_with_extends(Path(config_path)) if config_path is not None else ResolvedConfig()
    interpolate(cfg, os.environ if environ is None else environ, problems)
    for key, value in (flags or {}).items():
        if value is not None:
            cfg.set(key, value, CLI)
    apply_overrides(cfg, overrides, problems)
    problems.raise_if_any()
    apply_primus_defaults(cfg)
    return cfg
