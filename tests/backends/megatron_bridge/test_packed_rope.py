"""Sync-free packed RoPE equals Megatron-Core's per-document one (bit for bit in eager mode)."""

from __future__ import annotations

import pytest
import torch

from primus.backends.megatron_bridge.patches.packed_rope import make_sync_free_thd, token_positions

pytestmark = pytest.mark.megatron


class OneRank:
    """A context-parallel group of one (what Megatron's thd RoPE asks of it)."""

    def size(self) -> int:
        return 1

    def rank(self) -> int:
        return 0


def test_token_positions_restart_per_document():
    cu = torch.tensor([0, 3, 3, 7, 9], dtype=torch.int32)  # an empty document in the middle
    assert token_positions(cu, 9).tolist() == [0, 1, 2, 0, 1, 2, 3, 0, 1]


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("whole_row_freqs", [False, True])
def test_equals_megatron_thd_rope(interleaved, whole_row_freqs):
    from primus.backends.megatron_bridge.bootstrap import prepare_imports

    prepare_imports()
    from megatron.core.models.common.embeddings import rope_utils

    torch.manual_seed(0)
    cu = torch.tensor([0, 5, 16, 24], dtype=torch.int32)
    t = torch.randn(24, 4, 32)
    rows = 24 if whole_row_freqs else 11  # max_seqlen-sized freqs, or one per token of the row
    freqs = torch.randn(rows, 1, 1, 16)
    ours = make_sync_free_thd(
        rope_utils._apply_rotary_pos_emb_thd, lambda: rope_utils._apply_rotary_pos_emb_bshd
    )
    kwargs = {"rotary_interleaved": interleaved, "cp_group": OneRank()}
    expected = rope_utils._apply_rotary_pos_emb_thd(t, cu, freqs, **kwargs)
    # equal up to rounding: a compiled rotation (compiled_rope, installed by an earlier test in the
    # same process) may fuse the per-document and the whole-row calls differently
    torch.testing.assert_close(ours(t, cu, freqs, **kwargs), expected, rtol=0, atol=1e-6)
