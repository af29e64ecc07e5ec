"""Megatron-Bridge backend: registration only (importing Megatron-Bridge takes ~10 s).

The adapter, trainer and patches import ``megatron`` lazily, when a run needs them.
"""

from pathlib import Path

from primus.core.backend import BACKENDS, BackendSpec

NAME = "megatron_bridge"

#: Sections of Megatron-Bridge's ``ConfigContainer`` (megatron/bridge/training/config.py).
CONFIG_SECTIONS = (
    "model",
    "train",
    "optimizer",
    "scheduler",
    "dataset",
    "tokenizer",
    "checkpoint",
    "logger",
    "ddp",
    "dist",
    "rng",
    "validation",
    "mixed_precision",
    "peft",
    "profiling",
    "comm_overlap",
    "ft",
    "straggler",
    "nvrx_straggler",
    "rerun_state_machine",
    "tensor_inspect",
    "inprocess_restart",
    "env_vars",
)

BACKENDS.register(
    BackendSpec(
        name=NAME,
        module="primus.backends.megatron_bridge.megatron_bridge_adapter",
        adapter_class="MegatronBridgeAdapter",
        description="NVIDIA Megatron-Bridge 0.6 (recipes, HF conversion) on Megatron-Core",
        sections=CONFIG_SECTIONS,
        patches_module="primus.backends.megatron_bridge.patches",
        default_config=str(Path(__file__).resolve().parents[2] / "configs" / "tiny_llama.yaml"),
    )
)
