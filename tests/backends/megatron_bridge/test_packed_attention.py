"""Packed sequences without Transformer Engine: a packed ("thd") batch trains like the same
documents unpacked (summed token loss and every gradient, tiny GPTModel, CPU fp32)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.megatron

SCRIPT = textwrap.dedent("""
    import os, sys, torch
    import torch.nn.functional as F
    from primus.backends.megatron_bridge.bootstrap import prepare_imports
    prepare_imports()
    from primus.backends.megatron_bridge.patches import cpu_runtime
    cpu_runtime.enable()
    import torch.distributed as dist
    from primus.core.distributed import free_port
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    from megatron.core import parallel_state, tensor_parallel
    parallel_state.initialize_model_parallel(1, 1)
    tensor_parallel.random.initialize_rng_tracker(inference_rng_tracker=True)
    from megatron.bridge.models.gpt_provider import local_layer_spec
    from megatron.core.models.gpt import GPTModel
    from megatron.core.packed_seq_params import PackedSeqParams
    from megatron.core.transformer import TransformerConfig
    from primus.backends.megatron_bridge.patches.sdpa_attention import SDPACoreAttention, with_sdpa_core_attention

    SDPA = sys.argv[1] == "sdpa"
    cfg = TransformerConfig(
        num_layers=2, hidden_size=64, num_attention_heads=4, num_query_groups=2, ffn_hidden_size=128,
        normalization="RMSNorm", gated_linear_unit=True, activation_func=F.silu, add_bias_linear=False,
        attention_dropout=0.0, hidden_dropout=0.0, masked_softmax_fusion=False, apply_rope_fusion=False,
        bias_activation_fusion=False, bias_dropout_fusion=False, gradient_accumulation_fusion=False,
        persist_layer_norm=False, use_cpu_initialization=True,
    )
    spec = local_layer_spec(cfg)
    if SDPA:
        spec = with_sdpa_core_attention(spec)
    torch.manual_seed(0)
    model = GPTModel(cfg, spec, vocab_size=97, max_sequence_length=64, position_embedding_type="rope")
    assert any(isinstance(m, SDPACoreAttention) for m in model.modules()) == SDPA

    g = torch.Generator().manual_seed(1)
    lengths = (7, 13, 5)
    docs = [torch.randint(1, 97, (n,), generator=g) for n in lengths]
    labels = [torch.randint(1, 97, (n,), generator=g) for n in lengths]

    def step(fn):
        model.zero_grad(set_to_none=True)
        loss = fn()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    def unpacked():
        total = 0.0
        for tokens, lab in zip(docs, labels):
            pos = torch.arange(tokens.numel()).unsqueeze(0)
            total = total + model(tokens.unsqueeze(0), pos, None, labels=lab.unsqueeze(0)).sum()
        return total

    def packed(align):
        # Bridge's collate with pad_seq_to_mult=align: each document starts at a multiple of
        # align, cu_seqlens_q holds logical lengths, cu_seqlens_q_padded the physical offsets,
        # and the pack's tail is one more (zero-length logical) sequence.
        tokens, lab, mask, pos, cu, cu_pad = [], [], [], [], [0], [0]
        for t, l in zip(docs, labels):
            n = t.numel()
            pad = -n % align
            tokens += [t, torch.full((pad,), 96)]
            lab += [l, torch.full((pad,), 96)]
            mask += [torch.ones(n), torch.zeros(pad)]
            pos += [torch.arange(n + pad)]
            cu.append(cu[-1] + n)
            cu_pad.append(cu_pad[-1] + n + pad)
        tail = 3
        tokens.append(torch.full((tail,), 96)); lab.append(torch.full((tail,), 96))
        mask.append(torch.zeros(tail)); pos.append(torch.arange(tail))
        cu.append(cu[-1]); cu_pad.append(cu_pad[-1] + tail)
        tokens, lab, mask, pos = (torch.cat(x).long().unsqueeze(0) for x in (tokens, lab, mask, pos))
        cu_q = torch.tensor(cu, dtype=torch.int32)
        cu_p = torch.tensor(cu_pad, dtype=torch.int32)
        max_len = int((cu_p[1:] - cu_p[:-1]).max())
        params = PackedSeqParams(
            qkv_format="thd", cu_seqlens_q=cu_q, cu_seqlens_kv=cu_q.clone(),
            cu_seqlens_q_padded=cu_p, cu_seqlens_kv_padded=cu_p.clone(),
            max_seqlen_q=max_len, max_seqlen_kv=max_len,
        )
        losses = model(tokens, pos, None, labels=lab, packed_seq_params=params)
        return (losses * mask).sum()

    def packed_tight():
        tokens = torch.cat(docs).unsqueeze(0)
        lab = torch.cat(labels).unsqueeze(0)
        pos = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
        cu = torch.tensor([0, 7, 20, 25], dtype=torch.int32)
        params = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu,
                                 max_seqlen_q=13, max_seqlen_kv=13)
        return model(tokens, pos, None, labels=lab, packed_seq_params=params).sum()

    ref_loss, ref_grads = step(unpacked)
    for name, fn in (("tight", packed_tight), ("padded", lambda: packed(8))):
        loss, grads = step(fn)
        worst = max((grads[n] - ref_grads[n]).abs().max().item() for n in ref_grads)
        print(f"CASE {name} loss {loss.item():.6f} ref {ref_loss.item():.6f} grad_maxdiff {worst:.3e}")
        # 1e-5 per token: the loss is a sum over the 25 tokens
        assert abs(loss.item() - ref_loss.item()) < 1e-5 * sum(lengths), (name, loss.item(), ref_loss.item())
        assert worst < 1e-5, (name, worst)
    print("OK")
""")


def _run(attention: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, attention],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=600,
    )


def test_packed_batch_matches_unpacked_loss_and_gradients():
    out = _run("sdpa")
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout[-2000:] + out.stderr[-3000:]
    assert "CASE tight" in out.stdout and "CASE padded" in out.stdout


def test_megatron_local_attention_refuses_packed_sequences():
    """Why the patch exists: Megatron's own TE-free attention asserts on packed input."""
    out = _run("local")
    assert out.returncode != 0
    assert "packed_seq_params" in out.stderr, out.stderr[-3000:]


def test_patch_applies_when_the_dataset_packs_without_te():
    from types import SimpleNamespace

    from primus.backends.megatron_bridge.patches.perf import PACKED_SEQUENCES
    from primus.core.patches import PATCHES

    def ctx(**dataset):
        return SimpleNamespace(
            native_config=SimpleNamespace(container=SimpleNamespace(dataset=SimpleNamespace(**dataset)))
        )

    assert PACKED_SEQUENCES(ctx(enable_offline_packing=True))
    assert PACKED_SEQUENCES(ctx(enable_in_batch_packing=True))
    assert not PACKED_SEQUENCES(ctx(enable_offline_packing=False))
    assert not PACKED_SEQUENCES(SimpleNamespace(native_config=None))  # `primus patches list`
    patch = PATCHES.get("megatron_bridge.packed_sequences_without_te")
    assert patch.phase == "build_args" and "Transformer Engine absent" in patch.condition.text
