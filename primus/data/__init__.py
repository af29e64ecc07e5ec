"""Backend-agnostic data preparation: reading text corpora and training tokenizers.

Writing a backend's on-disk format (Megatron's indexed dataset) lives with that backend
(``primus.backends.megatron_bridge.data_prepare``).
"""
