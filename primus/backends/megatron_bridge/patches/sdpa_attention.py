"""Core attention through ``torch.nn.functional.scaled_dot_product_attention``.

Without Transformer Engine, Megatron-Core's local spec uses ``DotProductAttention``, which
materialises the [b, heads, s, s] score matrix (baddbmm + softmax + bmm) and repeats K/V for
GQA. PyTorch's SDPA dispatches to flash / cuDNN / memory-efficient kernels that never build
that matrix. This subclass keeps DotProductAttention's constructor, parameters and sharded
state dict (checkpoints are interchangeable) and replaces only the forward, falling back to
the original for anything SDPA cannot express here.

Packed sequences (``packed_seq_params`` with ``qkv_format="thd"``, which Megatron's own forward
refuses) run as one causal SDPA call per document (``packed_attention.py``). Still sent to the
original forward, which asserts: packed input with an attention mask or bias, a non-causal mask
type, packed q / kv with different boundaries, context parallelism > 1, and a batch dimension
left on q (micro_batch_size > 1 with packing).
"""

from __future__ import annotations

import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.utils import is_layer_window_attention

from primus.backends.megatron_bridge.patches.packed_attention import document_spans, packed_causal_attention


class SDPACoreAttention(DotProductAttention):
    """DotProductAttention with an SDPA forward (causal/no-mask or boolean masks, GQA native)."""

    def _sdpa_supported(self, attention_bias) -> bool:
        cfg = self.config
        return (
            attention_bias is None
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
        mask_type = attn_mask_type if attn_mask_type is not None else self.attn_mask_type
        spans = None
        if packed_seq_params is not None:
            spans = self._packed_spans(query, attention_mask, mask_type, packed_seq_params)
        if not self._sdpa_supported(attention_bias) or (packed_seq_params is not None and spans is None):
            return super().forward(
                query, key, value, attention_mask, attn_mask_type, attention_bias, packed_seq_params
            )
        # packed: causal within each document (padding_causal's padding is the gaps between them)
        causal = spans is not None or (attention_mask is None and mask_type == AttnMaskType.causal)
        mask = None if attention_mask is None else ~attention_mask  # Megatron: True = masked out
        dropout = self.attention_dropout.p if self.training else 0.0
        gqa = self.num_attention_heads_per_partition != self.num_query_groups_per_partition

        def attend(q, k, v):
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

        def compute():
            if spans is not None:  # [t, heads, dim] -> [t, heads * dim]
                context = packed_causal_attention(query, key, value, spans, attend)
                return context.view(context.size(0), self.hidden_size_per_partition)
            # [s, b, heads, dim] -> [b, heads, s, dim] -> [s, b, heads * dim]
            context = attend(*(t.permute(1, 2, 0, 3) for t in (query, key, value)))
            context = context.permute(2, 0, 1, 3).contiguous()
            return context.view(*context.shape[:2], self.hidden_size_per_partition)

        if dropout > 0.0 and not self.config.sequence_parallel:
            with tensor_parallel.get_cuda_rng_tracker().fork():
                return compute()
        return compute()

    def _packed_spans(self, query, attention_mask, mask_type, packed_seq_params):
        """The documents of a packed ("thd") micro-batch, or None where this forward can't run it."""
        if (
            packed_seq_params.qkv_format != "thd"
            or query.dim() != 3  # Megatron squeezes b=1 away for thd
            or attention_mask is not None
            or mask_type not in (AttnMaskType.causal, AttnMaskType.padding_causal)
            or self.config.context_parallel_size > 1  # each rank holds slices of every document
        ):
            return None
        return document_spans(packed_seq_params)


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
