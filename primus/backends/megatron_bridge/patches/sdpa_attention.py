"""Core attention through ``torch.nn.functional.scaled_dot_product_attention``.

Without Transformer Engine, Megatron-Core's local spec uses ``DotProductAttention``, which
materialises the [b, heads, s, s] score matrix (baddbmm + softmax + bmm) and repeats K/V for
GQA. PyTorch's SDPA dispatches to flash / cuDNN / memory-efficient kernels that never build
that matrix. This subclass keeps DotProductAttention's constructor, parameters and sharded
state dict (checkpoints are interchangeable) and replaces only the forward, falling back to
the original for anything SDPA cannot express here.
"""

from __future__ import annotations

import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.utils import is_layer_window_attention


class SDPACoreAttention(DotProductAttention):
    """DotProductAttention with an SDPA forward (causal/no-mask or boolean masks, GQA native)."""

    def _sdpa_supported(self, attention_bias, packed_seq_params) -> bool:
        cfg = self.config
        return (
            attention_bias is None
            and packed_seq_params is None
            and self.softmax_offset is None
            and not cfg.apply_query_key_layer_scaling
            and not is_layer_window_attention(cfg.window_size, cfg.window_attn_skip_freq, self.layer_number)
        )

    def forward(
        self,
        query,
        key,
        value,
        attention_mask,
        attn_mask_type=None,
        attention_bias=None,
        packed_seq_params=None,
    ):
        if not self._sdpa_supported(attention_bias, packed_seq_params):
            return super().forward(
                query, key, value, attention_mask, attn_mask_type, attention_bias, packed_seq_params
            )
        mask_type = attn_mask_type if attn_mask_type is not None else self.attn_mask_type
        # [s, b, heads, dim] -> [b, heads, s, dim]
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))
        causal = attention_mask is None and mask_type == AttnMaskType.causal
        mask = None if attention_mask is None else ~attention_mask  # Megatron: True = masked out
        dropout = self.attention_dropout.p if self.training else 0.0
        gqa = self.num_attention_heads_per_partition != self.num_query_groups_per_partition

        def attend():
            return F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                dropout_p=dropout,
                is_causal=causal,
                scale=self.softmax_scale,
                enable_gqa=gqa,
            )

        if dropout > 0.0 and not self.config.sequence_parallel:
            with tensor_parallel.get_cuda_rng_tracker().fork():
                context = attend()
        else:
            context = attend()
        # [b, heads, s, dim] -> [s, b, heads * dim]
        context = context.permute(2, 0, 1, 3).contiguous()
        return context.view(*context.shape[:2], self.hidden_size_per_partition)


def with_sdpa_core_attention(spec_or_fn):
    """Wrap a layer spec (or a provider -> spec function) so its core attention is SDPA."""

    def swap(spec):
        attention = getattr(getattr(spec, "submodules", None), "self_attention", None)
        sub = getattr(attention, "submodules", None)
        if sub is not None and getattr(sub, "core_attention", None) is DotProductAttention:
            sub.core_attention = SDPACoreAttention
        return spec

    if callable(spec_or_fn) and not hasattr(spec_or_fn, "submodules"):

        def spec_fn(config):
            return swap(spec_or_fn(config))

        spec_fn.__name__ = f"sdpa({getattr(spec_or_fn, '__name__', 'spec')})"
        return spec_fn
    return swap(spec_or_fn)
