"""Packed ("thd") causal attention without Transformer Engine: one SDPA call per document.

A packed micro-batch is one row of ``t`` tokens holding several documents; ``PackedSeqParams``
gives their boundaries. ``cu_seqlens_q`` holds the cumulative *logical* lengths and, when
present, ``cu_seqlens_q_padded`` the *physical* offsets (Bridge's ``pad_seq_to_mult``): document
``i`` is the ``cu_seqlens_q[i+1] - cu_seqlens_q[i]`` tokens starting at ``cu_seqlens_q_padded[i]``.
Each document attends causally to itself only; tokens outside every document (alignment padding,
the pack's tail) get a zero output. This is exact on any device: the same SDPA call an unpacked
batch of one document makes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from megatron.core.packed_seq_params import PackedSeqParams

_SPANS_ATTR = "_primus_document_spans"


def document_spans(params: PackedSeqParams) -> list[tuple[int, int]] | None:
    """``(start, length)`` of every non-empty document, or None where q and kv are packed apart.

    Read once per ``PackedSeqParams`` (one host sync per micro-batch, not one per layer).
    """
    cached = getattr(params, _SPANS_ATTR, None)
    if cached is not None:
        return cached or None
    spans: list[tuple[int, int]] = []
    same = _same(params.cu_seqlens_q, params.cu_seqlens_kv) and _same(
        params.cu_seqlens_q_padded, params.cu_seqlens_kv_padded
    )
    if same:
        cu = params.cu_seqlens_q
        starts = params.cu_seqlens_q_padded if params.cu_seqlens_q_padded is not None else cu
        lengths = (cu[1:] - cu[:-1]).tolist()
        spans = [(s, n) for s, n in zip(starts[:-1].tolist(), lengths, strict=True) if n > 0]
    setattr(params, _SPANS_ATTR, spans)
    return spans or None


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is b
    return a is b or (a.shape == b.shape and bool(torch.equal(a, b)))


def packed_causal_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    spans: list[tuple[int, int]],
    attend: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``[t, heads, dim]`` q / k / v -> ``[t, heads, dim]``; ``attend`` is causal SDPA on
    ``[1, heads, s, dim]``. Positions covered by no span are zero."""
    total = query.size(0)
    gap_shape = (query.size(1), value.size(2))
    pieces: list[torch.Tensor] = []
    cursor = 0
    for start, length in spans:
        if start < cursor or start + length > total:
            raise ValueError(
                f"packed sequence: document at {start} (+{length} tokens) overlaps the previous one "
                f"or runs past the {total} tokens of the micro-batch"
            )
        if start > cursor:
            pieces.append(value.new_zeros(start - cursor, *gap_shape))
        q, k, v = (t[start : start + length].transpose(0, 1).unsqueeze(0) for t in (query, key, value))
        pieces.append(attend(q, k, v).squeeze(0).transpose(0, 1))
        cursor = start + length
    if cursor < total:
        pieces.append(value.new_zeros(total - cursor, *gap_shape))
    return torch.cat(pieces, dim=0)
