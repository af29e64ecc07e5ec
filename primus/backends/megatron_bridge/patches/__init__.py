"""Megatron-Bridge patches. Importing this registers them (cheap: no Megatron import)."""

from primus.backends.megatron_bridge.patches import (  # noqa: F401
    compat_setup,
    conversion,
    model_settings,
    perf,
    portable_checkpoints,
    run_control,
)
