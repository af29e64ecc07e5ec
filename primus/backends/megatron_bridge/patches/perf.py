"""Performance patches: the TE-free GPU fast path (condition: CUDA training, TE absent).

Each was chosen from a profile of the patched step (``docs/performance.md``); each can be
switched off by id (``PRIMUS_PATCHES=-<id>`` or ``patches: {disable: [...]}``). One compat patch
lives here too because it reuses the SDPA swap: packed sequences without TE, on any device.
"""

from __future__ import annotations

import logging

from primus.backends.megatron_bridge import NAME
from primus.backends.megatron_bridge.patches.conditions import APEX_ABSENT, TE_ABSENT
from primus.backends.megatron_bridge.patches.model_settings import set_by_patch
from primus.core.errors import PrimusUserError
from primus.core.patches import Condition, PatchContext, register_patch

logger = logging.getLogger(__name__)
ON_CUDA = Condition(lambda ctx: ctx.env.device == "cuda" and ctx.env.has_cuda, "training on CUDA")


@register_patch(
    "megatron_bridge.sdpa_attention",
    backend=NAME,
    phase="build_args",
    condition=ON_CUDA & TE_ABSENT,
    kind="perf",
    description="core attention via torch SDPA (flash/cuDNN kernels, native GQA) instead of the unfused local path",
)
def sdpa_attention(ctx: PatchContext) -> None:
    from megatron.core.transformer.enums import AttnBackend

    from primus.backends.megatron_bridge.patches.sdpa_attention import with_sdpa_core_attention

    built = ctx.native_config
    model = built.container.model
    if getattr(model, "attention_backend", None) == AttnBackend.local:
        # GPTModelProvider puts DotProductAttention back into the spec for the local backend
        logger.warning("sdpa_attention: model.attention_backend=local keeps Megatron's unfused attention")
        return
    model.transformer_layer_spec = with_sdpa_core_attention(model.transformer_layer_spec)
    built.provenance.record("model.transformer_layer_spec", "patch:megatron_bridge.sdpa_attention")


def _packs_sequences(ctx: PatchContext) -> bool:
    dataset = getattr(getattr(ctx.native_config, "container", None), "dataset", None)
    return bool(
        getattr(dataset, "enable_offline_packing", False)
        or getattr(dataset, "enable_in_batch_packing", False)
    )


PACKED_SEQUENCES = Condition(_packs_sequences, "the dataset packs sequences (offline or in-batch packing)")


@register_patch(
    "megatron_bridge.packed_sequences_without_te",
    backend=NAME,
    phase="build_args",
    condition=TE_ABSENT & PACKED_SEQUENCES,
    description="packed (thd) sequences through the SDPA core attention, one causal call per document "
    "(Megatron's local attention asserts packed_seq_params is None)",
)
def packed_sequences_without_te(ctx: PatchContext) -> None:
    from megatron.core.transformer.enums import AttnBackend

    from primus.backends.megatron_bridge.patches.sdpa_attention import with_sdpa_core_attention

    built = ctx.native_config
    model = built.container.model
    if getattr(model, "attention_backend", None) == AttnBackend.local:
        raise PrimusUserError(
            "packed sequences need the SDPA core attention without Transformer Engine, and "
            "attention_backend=local puts Megatron's DotProductAttention (no packed support) back",
            key="model.attention_backend",
            hint="set model.attention_backend=auto, or turn packing off (dataset.enable_offline_packing=false)",
        )
    spec = model.transformer_layer_spec
    if getattr(spec, "__name__", "").startswith("sdpa("):
        return  # megatron_bridge.sdpa_attention already swapped it
    model.transformer_layer_spec = with_sdpa_core_attention(spec)
    built.provenance.record(
        "model.transformer_layer_spec", "patch:megatron_bridge.packed_sequences_without_te"
    )


#: Settings under which Megatron bypasses or refuses gradient_accumulation_fusion: path -> why.
WGRAD_FUSION_EXCLUSIONS: dict[str, str] = {
    "ddp.use_megatron_fsdp": "Megatron-FSDP's branch of the linear backward needs TE's GEMM",
    "model.restore_modelopt_state": "Bridge refuses the fusion for ModelOpt / quantized models",
    "model.defer_embedding_wgrad_compute": "its drain step imports Apex's extension by name",
}


@register_patch(
    "megatron_bridge.wgrad_accumulation_fusion",
    backend=NAME,
    phase="build_args",
    condition=ON_CUDA & TE_ABSENT,
    kind="perf",
    description="weight-gradient GEMMs accumulate into the fp32 main_grad (torch.addmm out_dtype) instead of bf16 grad + add_",
)
def wgrad_accumulation_fusion(ctx: PatchContext) -> None:
    from primus.backends.megatron_bridge.patches.wgrad_fusion import install_wgrad_accumulation

    path = "model.gradient_accumulation_fusion"
    built = ctx.native_config
    if built.user.has(path) and not built.user.get(path):
        logger.info("wgrad_accumulation_fusion: %s=false set by %s is kept", path, built.user.source_of(path))
        return
    for excluded, why in WGRAD_FUSION_EXCLUSIONS.items():
        section, _, key = excluded.partition(".")
        if getattr(getattr(built.container, section, None), key, False):
            logger.warning("wgrad_accumulation_fusion: not applied with %s (%s)", excluded, why)
            return
    install_wgrad_accumulation()
    set_by_patch(ctx, path, True, "megatron_bridge.wgrad_accumulation_fusion")


@register_patch(
    "megatron_bridge.foreach_grad_norm",
    backend=NAME,
    phase="setup",
    condition=ON_CUDA & TE_ABSENT & APEX_ABSENT,
    kind="perf",
    description="gradient norm / clipping with torch foreach kernels: no host sync per parameter tensor",
)
def foreach_grad_norm(ctx: PatchContext) -> None:
    from primus.backends.megatron_bridge.patches.fast_optimizer import install_foreach_grad_norm

    install_foreach_grad_norm()


@register_patch(
    "megatron_bridge.fused_adam",
    backend=NAME,
    phase="setup",
    condition=ON_CUDA & TE_ABSENT & APEX_ABSENT,
    kind="perf",
    description="Megatron's torch AdamW fallback runs fused (single kernel); not under its DistributedOptimizer",
)
def fused_adam(ctx: PatchContext) -> None:
    from primus.backends.megatron_bridge.patches.fast_optimizer import install_fused_adam

    install_fused_adam()


@register_patch(
    "megatron_bridge.compiled_rope",
    backend=NAME,
    phase="build_args",  # after the config is built: the condition reads the dataset
    # packed (thd) sequences call RoPE once per record, a new shape each time: a static-shape
    # compile would recompile per record length until torch's recompile limit, then run eagerly
    condition=ON_CUDA & TE_ABSENT & ~PACKED_SEQUENCES,
    kind="perf",
    description="Megatron's unfused rotary embedding compiled by torch.compile into one kernel per direction",
)
def compiled_rope(ctx: PatchContext) -> None:
    from primus.backends.megatron_bridge.patches.fast_rope import install_compiled_rope

    install_compiled_rope()


@register_patch(
    "megatron_bridge.sync_free_packed_rope",
    backend=NAME,
    phase="build_args",
    condition=ON_CUDA & TE_ABSENT & PACKED_SEQUENCES,
    kind="perf",
    description="packed (thd) rotary embeddings: positions per token from cu_seqlens on the GPU, one "
    "call per row instead of one per document with 2 host syncs each for Q and K in every layer",
)
def sync_free_packed_rope(ctx: PatchContext) -> None:
    from primus.backends.megatron_bridge.patches.packed_rope import install_sync_free_packed_rope

    install_sync_free_packed_rope()


@register_patch(
    "megatron_bridge.deferred_grad_check",
    backend=NAME,
    phase="setup",
    condition=ON_CUDA & TE_ABSENT,
    kind="perf",
    description="ddp.check_for_nan_in_grad runs at the end of backward, not as 2 host syncs per bucket mid-backward",
)
def deferred_grad_check(ctx: PatchContext) -> None:
    from primus.backends.megatron_bridge.patches.deferred_grad_check import install_deferred_grad_check

    install_deferred_grad_check()
