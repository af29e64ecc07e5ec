"""One session per command: the environment, the patch switches and the ``setup`` patches.

Every command that reaches a backend (train, convert, data, recipes, bench) gets its
:class:`PatchContext` here and runs the backend's ``setup`` patches through it, so a patch is
switched off, logged and applied the same way whichever command runs (and only once per
process: ``run_patches`` remembers what it applied).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from primus.core.backend import BACKENDS, BackendRegistry
from primus.core.environment import EnvFacts, detect
from primus.core.errors import ProblemCollector
from primus.core.patches import PATCHES, PatchContext, PatchOutcome, disabled_patch_ids, run_patches


@dataclass
class Session:
    """A backend, the machine it runs on, the user's config (if any) and the patch context."""

    backend: str
    env: EnvFacts
    patches: PatchContext

    def run_setup(self, only: Iterable[str] | None = None) -> list[PatchOutcome]:
        """The backend's ``setup`` patches whose condition holds here (``only``: a subset)."""
        return run_patches("setup", self.patches, only=only)


_SESSIONS: dict[str, Session] = {}


def open_session(
    backend: str,
    *,
    env: EnvFacts | None = None,
    config: Any = None,
    environ: Mapping[str, str] | None = None,
    registry: BackendRegistry = BACKENDS,
) -> Session:
    """Start the process's session for ``backend``: patch switches from ``config``
    (``patches.disable``) and ``PRIMUS_PATCHES``; unknown ids are user errors."""
    environ = os.environ if environ is None else environ
    spec = registry.spec(backend)
    if spec.patches_module:
        importlib.import_module(spec.patches_module)
    patches_cfg = (config.get("patches", None) if config is not None else None) or {}
    disabled, problems = disabled_patch_ids(
        patches_cfg.get("disable"),
        environ,
        PATCHES.ids(backend),
        config_source=config.source_of("patches.disable") if config is not None else None,
    )
    collector = ProblemCollector()
    collector.extend(problems)
    collector.raise_if_any()
    if env is None:
        env = detect(config.get("device", "auto") if config is not None else "auto")
    session = Session(backend, env, PatchContext(backend=backend, env=env, config=config, disabled=disabled))
    _SESSIONS[backend] = session
    return session


def session_for(backend: str, *, env: EnvFacts | None = None) -> Session:
    """The session this process already has for ``backend``, or a new one (commands without
    a config: convert, data, recipes). An explicit ``env`` other than the session's (``convert
    --device cpu`` after an import-only setup on a GPU host) starts a session for it."""
    current = _SESSIONS.get(backend)
    if current is not None and (env is None or env == current.env):
        return current
    config = current.patches.config if current is not None else None
    return open_session(backend, env=env, config=config)


def clear_sessions() -> None:
    """Forget every session (tests only)."""
    _SESSIONS.clear()
