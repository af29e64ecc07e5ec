"""``primus eval``: loss and perplexity on held-out data, and lm-evaluation-harness tasks.

Megatron-free: everything here works on the ``InferenceModel`` protocol
(``primus.core.capabilities``); the backend loads the model and reads the data.
"""
