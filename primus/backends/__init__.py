"""Built-in backends. Importing this registers their specs only (no framework import)."""

from primus.backends import megatron_bridge  # noqa: F401  (registers "megatron_bridge")
