"""The SDPA core attention matches Megatron's DotProductAttention (forward and gradients, CPU fp32)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.megatron

SCRIPT = textwrap.dedent("""
    import os, torch
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
    from megatron.core.transformer import TransformerConfig
    from megatron.core.transformer.dot_product_attention import DotProductAttention
    from megatron.core.transformer.enums import AttnMaskType
    from primus.backends.megatron_bridge.patches.sdpa_attention import SDPACoreAttention
    worst = 0.0
    for heads, groups in ((4, 4), (8, 2)):
        cfg = TransformerConfig(num_layers=1, hidden_size=16 * heads, num_attention_heads=heads,
                                num_query_groups=groups, kv_channels=16, attention_dropout=0.0,
                                masked_softmax_fusion=False, use_cpu_initialization=True)
        ref = DotProductAttention(cfg, 1, AttnMaskType.causal, "self")
        new = SDPACoreAttention(cfg, 1, AttnMaskType.causal, "self")
        s, b = 12, 3
        g = torch.Generator().manual_seed(heads)
        q = torch.randn(s, b, heads, 16, generator=g)
        k = torch.randn(s, b, groups, 16, generator=g)
        v = torch.randn(s, b, groups, 16, generator=g)
        causal = torch.triu(torch.ones(1, 1, s, s, dtype=torch.bool), diagonal=1)
        for mask in (None, causal):
            outs = []
            for module in (ref, new):
                qq, kk, vv = (t.clone().requires_grad_() for t in (q, k, v))
                out = module(qq, kk, vv, mask)
                (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
                outs.append([out.detach(), qq.grad, kk.grad, vv.grad])
            for a, c in zip(*outs):
                assert a.shape == c.shape, (a.shape, c.shape)
                worst = max(worst, (a - c).abs().max().item())
    print("MAXDIFF", worst)
""")


def test_sdpa_matches_dot_product_attention():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    worst = float(out.stdout.split("MAXDIFF")[-1])
    assert worst < 1e-5, worst
