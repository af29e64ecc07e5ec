"""``build_args`` patches: adjust the built ``ConfigContainer`` to what this machine can run.

They write through :func:`set_path` so every change shows ``patch:<id>`` in the provenance.
"""

from __future__ import annotations

import logging
from typing import Any

from primus.backends.megatron_bridge import NAME
from primus.backends.megatron_bridge.config_tree import set_path
from primus.backends.megatron_bridge.patches.conditions import ON_CPU, TE_ABSENT
from primus.core.errors import PrimusUserError
from primus.core.patches import PatchContext, register_patch

logger = logging.getLogger(__name__)

#: Fusions that need Transformer Engine or Apex kernels, and their TE-free values.
TE_FREE_MODEL_SETTINGS: dict[str, Any] = {
    "transformer_impl": "local",
    "persist_layer_norm": False,
    "apply_rope_fusion": False,
    "masked_softmax_fusion": False,
    "gradient_accumulation_fusion": False,
    "cross_entropy_fusion_impl": "native",
    "moe_permute_fusion": False,
}

#: What pretrain() needs on a CPU (dotted path -> value): each entry avoids a CUDA-only path
#: (clip_grad: an assert on torch.cuda.FloatTensor; the distributed optimizer: CPU tensors refused).
CPU_SETTINGS: dict[str, Any] = {
    "optimizer.clip_grad": 0.0,  # the clip path asserts torch.cuda.FloatTensor
    "optimizer.use_distributed_optimizer": False,
    "ddp.use_distributed_optimizer": False,
    "ddp.overlap_grad_reduce": False,
    "ddp.overlap_param_gather": False,
    "ddp.grad_reduce_in_fp32": False,
    "ddp.data_parallel_sharding_strategy": "no_shard",
    "optimizer.bf16": False,
    "optimizer.fp16": False,
    "model.bf16": False,
    "model.fp16": False,
    "model.use_cpu_initialization": True,
    "dataset.num_workers": 0,
    "dataset.pin_memory": False,  # no accelerator to pin memory for
    "dist.distributed_backend": "gloo",
    "checkpoint.load_rng": False,  # no CUDA RNG states to restore
    "train.manual_gc": False,
    # these fusions are torch.compile'd: on a CPU, compiling them costs ~20 s per process
    "model.bias_activation_fusion": False,
    "model.bias_dropout_fusion": False,
}


def te_free_settings(model: Any = None) -> dict[str, Any]:
    """Every provider field a host without Transformer Engine needs: the one definition, used by
    the ``te_free_model`` patch (training), HF conversion and the benchmark's vanilla system.

    The local layer spec replaces the provider's; TE/Apex-only fusions go off; flash / fused
    attention (TE kernels) become ``auto``, not ``local``: the provider forces Megatron's unfused
    DotProductAttention into the spec for ``local``, which would undo the SDPA patch. With no
    ``model`` (overrides for a provider not yet loaded) the attention backend is always ``auto``.
    """
    from megatron.bridge.models.gpt_provider import local_layer_spec
    from megatron.core.transformer.enums import AttnBackend

    settings: dict[str, Any] = {"transformer_layer_spec": local_layer_spec, **TE_FREE_MODEL_SETTINGS}
    backend = getattr(model, "attention_backend", None) if model is not None else AttnBackend.flash
    if backend in (AttnBackend.flash, AttnBackend.fused):
        settings["attention_backend"] = AttnBackend.auto
    return settings


def set_by_patch(ctx: PatchContext, path: str, value: Any, patch_id: str) -> None:
    """Set one dotted path of the built config, recorded as ``patch:<id>`` in its provenance."""
    set_path(ctx.native_config.container, path, value, f"patch:{patch_id}", ctx.native_config.provenance)


#: Providers whose own layer spec is built from Transformer Engine layers: the local spec would
#: silently drop their extra norms (measured for Gemma2: 4 post-norm weights were never imported).
TE_ONLY_LAYER_SPECS: dict[str, str] = {
    "Gemma2ModelProvider": "Gemma2's layer spec fuses its post-attention / post-MLP norms into TE linear layers",
    "Gemma3ModelProvider": "Gemma3's layer spec fuses its post-attention / post-MLP norms into TE linear layers",
}


def check_layer_spec_without_te(provider: object, key: str) -> None:
    """Refuse providers whose layer spec exists only with Transformer Engine (one line, with a fix)."""
    for cls in type(provider).__mro__:
        if cls.__name__ in TE_ONLY_LAYER_SPECS:
            raise PrimusUserError(
                f"{TE_ONLY_LAYER_SPECS[cls.__name__]}, and Transformer Engine is not installed here",
                key=key,
                hint="use a host with Transformer Engine (e.g. an NVIDIA NeMo container)",
            )


@register_patch(
    "megatron_bridge.te_free_model",
    backend=NAME,
    phase="build_args",
    condition=TE_ABSENT,
    description="local (non-TE) layer spec; TE/Apex-only fusions off; native cross-entropy",
)
def te_free_model(ctx: PatchContext) -> None:
    patch_id = "megatron_bridge.te_free_model"
    model = ctx.native_config.container.model
    check_layer_spec_without_te(model, "model")
    for key, value in te_free_settings(model).items():
        if key == "transformer_layer_spec":
            if hasattr(model, key):
                model.transformer_layer_spec = value  # a function: no provenance line of its own
        elif hasattr(model, key) and getattr(model, key) != value:
            set_by_patch(ctx, f"model.{key}", value, patch_id)


@register_patch(
    "megatron_bridge.cpu_training_config",
    backend=NAME,
    phase="build_args",
    condition=ON_CPU,
    description="fp32, gloo, no grad clipping / distributed optimizer / dataloader workers (CPU smoke-test mode)",
)
def cpu_training_config(ctx: PatchContext) -> None:
    import torch

    patch_id = "megatron_bridge.cpu_training_config"
    container = ctx.native_config.container
    for path, value in CPU_SETTINGS.items():
        section, _, key = path.partition(".")
        if hasattr(getattr(container, section), key):
            set_by_patch(ctx, path, value, patch_id)
    if container.mixed_precision is not None:
        set_by_patch(ctx, "mixed_precision", None, patch_id)
    set_by_patch(ctx, "model.params_dtype", torch.float32, patch_id)
    set_by_patch(ctx, "model.pipeline_dtype", None, patch_id)
