"""Performance patches: the TE-free GPU fast path (condition: CUDA training, TE absent)."""

from __future__ import annotations

import logging

from primus.backends.megatron_bridge import NAME
from primus.backends.megatron_bridge.patches.conditions import TE_ABSENT
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
