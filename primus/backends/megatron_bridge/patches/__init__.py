"""Megatron-Bridge patches. Importing this registers them (cheap: no Megatron import)."""

from primus.backends.megatron_bridge.patches import compat_setup, conversion, model_settings, perf  # noqa: F401
