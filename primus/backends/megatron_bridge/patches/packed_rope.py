"""Rotary embeddings of packed (thd) sequences without host synchronisation.

Megatron-Core's unfused ``_apply_rotary_pos_emb_thd`` reads the document lengths to the host
(``cu_seqlens.tolist()`` and ``.item()``) and rotates one document at a time: two GPU -> CPU
waits for Q and two for K in every layer, so the CPU can never run ahead of the GPU. Here each
token's position inside its document is computed on the device from ``cu_seqlens``
(``searchsorted``), its frequencies gathered, and the whole row rotated in one call of the same
``_apply_rotary_pos_emb_bshd``; the arithmetic per token is Megatron's. Context parallelism
keeps Megatron's function.
"""

from __future__ import annotations

import torch

_ATTR = "_primus_sync_free"


def token_positions(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """Each of ``total`` tokens' position inside its document (documents start at cu_seqlens)."""
    index = torch.arange(total, device=cu_seqlens.device, dtype=cu_seqlens.dtype)
    starts = cu_seqlens[:-1]
    document = torch.searchsorted(cu_seqlens[1:], index, right=True).clamp_(max=starts.numel() - 1)
    return (index - starts[document]).long()


def make_sync_free_thd(original, bshd_of):
    """``_apply_rotary_pos_emb_thd`` with Megatron's signature; ``bshd_of()`` returns the current
    ``_apply_rotary_pos_emb_bshd`` (read at call time: a compiled one may replace it)."""

    def apply_thd(
        t,
        cu_seqlens,
        freqs,
        rotary_interleaved=False,
        mla_rotary_interleaved=False,
        mscale=1.0,
        cp_group=None,
        multi_latent_attention=None,
    ):
        if cp_group is None or cp_group.size() != 1:
            return original(
                t, cu_seqlens, freqs, rotary_interleaved, mla_rotary_interleaved, mscale, cp_group,
                multi_latent_attention,
            )  # fmt: skip
        total = t.size(0)
        if freqs.dim() >= 1 and freqs.size(0) == total:
            token_freqs = freqs[:total]  # Megatron's exact mapping: positions across the whole row
        else:
            token_freqs = freqs[token_positions(cu_seqlens, total)]
        return bshd_of()(
            t.unsqueeze(1),
            token_freqs,
            rotary_interleaved=rotary_interleaved,
            mla_rotary_interleaved=mla_rotary_interleaved,
            mscale=mscale,
        ).squeeze(1)

    setattr(apply_thd, _ATTR, True)
    apply_thd.__doc__ = original.__doc__
    return apply_thd


def install_sync_free_packed_rope() -> None:
    from megatron.core.models.common.embeddings import rope_utils

    if getattr(rope_utils._apply_rotary_pos_emb_thd, _ATTR, False):
        return
    rope_utils._apply_rotary_pos_emb_thd = make_sync_free_thd(
        rope_utils._apply_rotary_pos_emb_thd, lambda: rope_utils._apply_rotary_pos_emb_bshd
    )
