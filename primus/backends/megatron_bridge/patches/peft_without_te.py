"""Bridge's LoRA / DoRA on a host without Transformer Engine.

Megatron-Core's TE extension module, when TE is absent, binds its TE layer names to
``MagicMock`` placeholders (the grouped ones to ``None``). Bridge's PEFT code imports them with
``safe_import_from``, which succeeds, so ``peft/utils.py`` and ``peft/module_matcher.py`` set
``HAVE_TE = True``; the first ``isinstance(m, TECL)`` then raises ``TypeError: isinstance() arg 2
must be a type`` (``peft/utils.py:591``, reached from ``lora.py:147``, ``dora.py:93``). Setting
their flags to what is true here sends every linear layer down Bridge's own path for Megatron's
local ``ColumnParallelLinear`` / ``RowParallelLinear``.
"""

from __future__ import annotations

#: module -> the TE flags it computes at import
TE_FLAGS = {
    "megatron.bridge.peft.utils": ("HAVE_TE",),
    "megatron.bridge.peft.module_matcher": (
        "HAVE_TE",
        "HAVE_TE_COL_LINEAR",
        "HAVE_TE_LN_COL_LINEAR",
        "HAVE_TE_ROW_LINEAR",
    ),
}


def install() -> None:
    import importlib

    for module_name, flags in TE_FLAGS.items():
        module = importlib.import_module(module_name)
        for flag in flags:
            if hasattr(module, flag):
                setattr(module, flag, False)
