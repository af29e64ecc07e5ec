"""Make ``import megatron.bridge`` work in this process, for commands without a training run."""

from __future__ import annotations

import logging
import os

from primus.backends.megatron_bridge import NAME
from primus.core.environment import EnvFacts, detect
from primus.core.errors import PrimusUserError
from primus.core.patches import PATCHES, PatchContext, disabled_patch_ids, run_patches

logger = logging.getLogger(__name__)

#: The setup patches every Megatron-Bridge import needs (no device or config changes).
IMPORT_PATCHES = ("megatron_bridge.te_placeholder", "megatron_bridge.nvrx_placeholder")

_context: PatchContext | None = None


def prepare_imports(env: EnvFacts | None = None) -> PatchContext:
    """Apply the import-level setup patches once per process (``PRIMUS_PATCHES`` honoured) and
    keep Megatron's import-time fallback chatter out of the output (unless --debug)."""
    global _context
    if _context is None:
        import primus.backends.megatron_bridge.patches  # noqa: F401
        from primus.backends.megatron_bridge.log_noise import quiet_third_party_noise

        quiet_third_party_noise()

        disabled, problems = disabled_patch_ids((), os.environ, PATCHES.ids(NAME))
        if problems:
            raise PrimusUserError(problems)
        _context = PatchContext(backend=NAME, env=env or detect("auto"), disabled=disabled)
        run_patches("setup", _context, only=IMPORT_PATCHES)
    return _context


def mark_prepared(ctx: PatchContext) -> None:
    """A training run already ran every setup patch: later ``prepare_imports`` calls reuse it."""
    global _context
    _context = ctx
