"""Keep Megatron's import-time chatter out of a normal run's output (all of it returns with --debug).

Without Transformer Engine and Apex, importing Megatron-Bridge prints a dozen fallback
warnings and an informational traceback (``safe_import_from``) that read like failures;
Primus's own patch log already says which code paths are used and why.
"""

from __future__ import annotations

import logging
import os
import re
import warnings

#: logger -> level in a normal run
QUIET_LOGGERS = {"megatron.bridge.utils.import_utils": logging.WARNING}
#: logger -> messages (regex) that restate what Primus already handles for this run
QUIET_MESSAGES = {
    # without TE/Apex the fusion is off, or provided by the wgrad_accumulation_fusion patch on CUDA
    "megatron.bridge.utils.fusions": r"gradient_accumulation_fusion requires either TransformerEngine",
    # importing Megatron on a machine without CUDA (the CPU mode says so in the run's summary)
    "torch.utils.cpp_extension": r"No CUDA runtime is found",
    # Bridge builds HF configs with the old keyword; nothing a user can change
    "transformers.configuration_utils": r"`torch_dtype` is deprecated",
    "transformers.modeling_utils": r"`torch_dtype` is deprecated",
    # Megatron-Core's notice to its own developers (HybridModel migration); nothing a user changes
    "megatron.core.models.gpt.gpt_model": r"GPTModel IS DEPRECATED",
}
#: (message regex, module regex) of warnings (any category) that only restate the TE/Apex-free
#: setup or a library's internal deprecations
QUIET_WARNINGS = (
    (r"Apex is not installed", r"megatron\."),
    (r"Transformer Engine and Apex are not installed", r"megatron\."),
    (r"Only transformer-engine>=", r"megatron\."),
    (r"MimoModelConfig is experimental", r"megatron\."),
    (r"'pin_memory' argument is set as true but no accelerator", r"torch\."),
    (r"Function '(pretrain|finetune)' is experimental", r""),
    (r"`build_tokenizer` is deprecated", r"megatron\."),
    (r"torch.distributed is disabled, unavailable or uninitialized", r"torch\."),
    # torch's own deprecations inside Megatron's checkpoint loading (nothing a user can change)
    (r"The argument order of load has been changed", r"torch\."),
    (r"Please use DTensor instead and we are deprecating ShardedTensor", r""),  # a FutureWarning
    # Bridge's PEFT sets Megatron's deprecated cuda-graph scope default (nothing a user set)
    (r"full scope is deprecated", r""),
    # the static engine is the one that runs on a CPU and without TE; its successor needs CUDA
    (r"The static engine will be deprecated", r"megatron\."),
)


class _DropMessage(logging.Filter):
    """Drops the records whose message matches (other records of that logger pass)."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


class _BelowLevel(logging.Filter):
    """Drops records under a level; a filter survives the module's own ``setLevel`` at import."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


def quiet_third_party_noise() -> None:
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        return
    for name, level in QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _BelowLevel) for f in logger.filters):
            logger.addFilter(_BelowLevel(level))
    for name, pattern in QUIET_MESSAGES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) for f in logger.filters):
            logger.addFilter(_DropMessage(pattern))
    for message, module in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=Warning, module=module)
    # Bridge's dataset packing and index building draw tqdm bars on the console (primus.log
    # and the progress line say what happens); --debug / --verbose keep them
    os.environ.setdefault("TQDM_DISABLE", "1")
