"""Primus: one command line and one YAML format for LLM training backends.

Importing this package is cheap on purpose: backends (Megatron-Bridge takes ~10 s to import)
are loaded lazily by name through :class:`primus.core.backend.BackendRegistry`.
"""

__version__ = "0.1.0"
