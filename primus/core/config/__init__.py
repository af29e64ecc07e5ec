"""Configuration: YAML + ``extends`` + ``${VAR}`` + CLI overrides, with per-leaf provenance.

The one pipeline (load -> resolve ``extends`` -> interpolate -> apply overrides) lives in
:func:`primus.core.config.pipeline.load_config`; the result is a :class:`ResolvedConfig`.
"""

from primus.core.config.pipeline import load_config
from primus.core.config.resolved import ResolvedConfig

__all__ = ["ResolvedConfig", "load_config"]
