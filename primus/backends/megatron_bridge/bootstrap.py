"""Make ``import megatron.bridge`` work in this process, for commands without a training run."""

from __future__ import annotations

import logging

from primus.backends.megatron_bridge import NAME
from primus.core.environment import EnvFacts
from primus.core.patches import PatchContext
from primus.core.session import session_for

logger = logging.getLogger(__name__)

#: The setup patches every Megatron-Bridge import needs (no device or config changes).
IMPORT_PATCHES = ("megatron_bridge.te_placeholder", "megatron_bridge.nvrx_placeholder")


def prepare_imports(env: EnvFacts | None = None) -> PatchContext:
    """Apply the import-level setup patches of this process's session (once; ``PRIMUS_PATCHES``
    honoured) and keep Megatron's import-time fallback chatter out of the output (unless --debug)."""
    from primus.backends.megatron_bridge.log_noise import quiet_third_party_noise

    quiet_third_party_noise()
    session = session_for(NAME, env=env)
    session.run_setup(only=IMPORT_PATCHES)
    return session.patches


def run_setup_patches(env: EnvFacts) -> PatchContext:
    """Every ``setup`` patch for ``env`` (TE placeholder, CPU execution...), for conversion."""
    from primus.backends.megatron_bridge.log_noise import quiet_third_party_noise

    quiet_third_party_noise()  # Megatron may not be imported yet (e.g. `convert import`)
    session = session_for(NAME, env=env)
    session.run_setup()
    return session.patches
