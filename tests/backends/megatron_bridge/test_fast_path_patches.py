"""The fast-path replacements compute what Megatron-Core's own TE-free code computes (CPU, fp32)."""

from __future__ import annotations

import copy

import pytest
import torch

from primus.backends.megatron_bridge.patches.fast_optimizer import (
    foreach_l2_norm,
    foreach_scale,
    use_fused_adam,
    with_fused_adam,
)
from primus.backends.megatron_bridge.patches.step_counters import own_step_counters

pytestmark = pytest.mark.megatron


def _tensors(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for shape in ((7, 3), (128,), (4, 5, 6), (1,))]


def test_foreach_l2_norm_matches_megatron_local_norm_arithmetic():
    from megatron.core import utils as mcore_utils

    tensors = _tensors()
    total, per_tensor = foreach_l2_norm(2048 * 32, torch.zeros(1, dtype=torch.int), [tensors], False)
    # Megatron's local fallback: per-tensor torch.norm, then the norm of those norms
    expected = torch.norm(torch.tensor([float(torch.norm(t)) for t in tensors]))
    assert per_tensor is None and total.shape == (1,) and total.dtype == torch.float32
    assert torch.allclose(total[0], expected, rtol=1e-6)
    assert torch.allclose(
        total[0], torch.linalg.vector_norm(torch.cat([t.flatten() for t in tensors])), rtol=1e-6
    )
    assert mcore_utils.local_multi_tensor_l2_norm.__name__ == "local_multi_tensor_l2_norm"


def test_foreach_l2_norm_of_nothing_is_zero():
    total, _ = foreach_l2_norm(1, torch.zeros(1, dtype=torch.int), [[]], False)
    assert total.tolist() == [0.0]


def test_foreach_scale_matches_megatron_local_scale():
    from megatron.core.utils import local_multi_tensor_scale

    src = _tensors(1)
    ours, theirs = [torch.empty_like(t) for t in src], [torch.empty_like(t) for t in src]
    foreach_scale(1, torch.zeros(1), [src, ours], 0.37)
    local_multi_tensor_scale(1, torch.zeros(1), [src, theirs], 0.37)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
    in_place = [t.clone() for t in src]
    foreach_scale(1, torch.zeros(1), [in_place, in_place], 0.5)  # clip_grads scales grads in place
    assert all(torch.equal(a, b * 0.5) for a, b in zip(in_place, src, strict=True))


def _adam_run(fused: bool, steps: int = 5) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8)
    if fused:
        assert use_fused_adam(opt)
        assert all(g["fused"] and not g["foreach"] for g in opt.param_groups)
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
    return [p.detach().clone() for p in model.parameters()]


def test_fused_adam_follows_the_same_trajectory_as_megatrons_torch_adamw():
    for a, b in zip(_adam_run(False), _adam_run(True), strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fused_adam_leaves_started_or_unsuitable_optimizers_alone():
    p = torch.nn.Parameter(torch.randn(3))
    started = torch.optim.AdamW([p])
    p.grad = torch.ones(3)
    started.step()
    assert not use_fused_adam(started)
    assert not use_fused_adam(torch.optim.SGD([torch.nn.Parameter(torch.randn(3))], lr=0.1))
    assert not use_fused_adam(torch.optim.AdamW([torch.nn.Parameter(torch.randn(3))], capturable=True))


def test_factory_wrapper_switches_the_returned_optimizer_once():
    params = [torch.nn.Parameter(torch.randn(4))]

    def factory(wrap: bool):
        opt = torch.optim.AdamW(copy.deepcopy(params))
        return opt if wrap else (opt, None)  # Megatron returns a tuple with skip_megatron_wrapping

    wrapped = with_fused_adam(factory)
    assert with_fused_adam(wrapped) is wrapped
    assert all(g["fused"] for g in wrapped(True).param_groups)
    assert all(g["fused"] for g in wrapped(False)[0].param_groups)


@pytest.mark.parametrize("interleaved", [False, True])
def test_compiled_rope_matches_megatrons_function(interleaved):
    from megatron.core.models.common.embeddings import rope_utils

    from primus.backends.megatron_bridge.patches.fast_rope import compile_rope

    original = rope_utils._apply_rotary_pos_emb_bshd
    compiled = compile_rope(original)
    assert compile_rope(compiled) is compiled
    g = torch.Generator().manual_seed(0)
    seq, batch, heads, dim = 16, 2, 4, 32
    freqs = torch.randn(seq, 1, 1, dim, generator=g)
    x = torch.randn(seq, batch, heads, dim, generator=g)
    grad = torch.randn(seq, batch, heads, dim, generator=g)
    outs, grads = [], []
    for fn in (original, compiled):
        t = x.clone().requires_grad_(True)
        y = fn(t, freqs, rotary_interleaved=interleaved)
        y.backward(grad)
        outs.append(y.detach())
        grads.append(t.grad)
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


_DEFERRED_CHECK_SCRIPT = """
import os, sys, torch
import torch.distributed as dist
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[1])
dist.init_process_group("gloo", rank=0, world_size=1)
import primus.backends.megatron_bridge.patches
from primus.core.environment import detect
from primus.core.patches import PatchContext, run_patches
run_patches("setup", PatchContext(backend="megatron_bridge", env=detect("cpu")))  # Primus's CPU mode
from megatron.core.distributed import DistributedDataParallelConfig
from megatron.core.distributed.param_and_grad_buffer import _ParamAndGradBucket, _ParamAndGradBucketGroup
from primus.backends.megatron_bridge.patches.deferred_grad_check import install_deferred_grad_check

def group(grad_value):
    p = torch.nn.Parameter(torch.zeros(8))
    grad = torch.full((8,), grad_value)
    bucket = _ParamAndGradBucket([p], None, grad, 0, 8, 1.0, 0, {p: (0, 8, 0)}, [])
    cfg = DistributedDataParallelConfig(check_for_nan_in_grad=True, overlap_grad_reduce=False)
    return _ParamAndGradBucketGroup([bucket], cfg, dist.group.WORLD, 1)

def outcome(g):
    try:
        g.finish_grad_sync()  # non-overlapped: starts and finishes the reduction, checks
        return "ok"
    except RuntimeError as e:
        return "raised: " + str(e).replace(" ", "_")[:300]

print("before", outcome(group(float("nan"))), outcome(group(1.0)))
install_deferred_grad_check(); install_deferred_grad_check()
g = group(float("nan"))
g.check_grads(True, False)  # mid-backward call: deferred, no host sync, no raise
print("deferred", hasattr(g, "_primus_pending_grad_check"))
print("after", outcome(group(float("nan"))), outcome(group(1.0)))
"""


def test_deferred_grad_check_still_stops_on_nan_at_the_end_of_backward(tmp_path):
    """Real Megatron bucket groups (gloo, one process): NaN is still fatal, only later."""
    import socket
    import subprocess
    import sys

    from tests.conftest import REPO

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = subprocess.run(
        [sys.executable, "-c", _DEFERRED_CHECK_SCRIPT, str(port)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(
        line.split(" ", 1)
        for line in out.stdout.splitlines()
        if line.split(" ")[0] in ("before", "deferred", "after")
    )
    assert lines["before"].startswith("raised: ") and lines["before"].endswith(" ok")
    assert "found_NaN_in_local_grad_norm_for_bucket_#0" in lines["before"]
    assert lines["deferred"] == "True"
    assert lines["after"] == lines["before"]


def _step_all(opt: torch.optim.Optimizer) -> None:
    """One optimizer step with a gradient of ones on every parameter."""
    for group in opt.param_groups:
        for p in group["params"]:
            p.grad = torch.ones_like(p)
    opt.step()


def _load_with_one_shared_step(opt: torch.optim.Optimizer, value: float) -> None:
    """Megatron-Core 0.19's TE-free DistributedOptimizer.load_state_dict: one step tensor for all."""
    saved = opt.state_dict()
    shared = torch.tensor(value)
    for s in saved["state"].values():
        s["step"] = shared
    opt.load_state_dict(saved)


def test_fused_adam_resumes_from_a_megatron_style_state_with_one_shared_step_tensor():
    """Megatron's TE-free DistributedOptimizer.load_state_dict puts one step tensor in every
    parameter's state; each parameter must still count its own steps afterwards."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4)) for _ in range(3)]
    opt = torch.optim.AdamW(params, lr=0.1)
    assert use_fused_adam(opt)
    for _ in range(3):
        _step_all(opt)
    _load_with_one_shared_step(opt, 3.0)
    assert all(g["fused"] for g in opt.param_groups)
    _step_all(opt)
    steps = [opt.state[p]["step"] for p in params]
    assert len({id(t) for t in steps}) == 3 and [float(t) for t in steps] == [4.0, 4.0, 4.0]


@pytest.mark.parametrize("fix", [False, True])
def test_shared_step_counter_runs_ahead_unless_each_parameter_gets_its_own(fix):
    params = [torch.nn.Parameter(torch.randn(4)) for _ in range(3)]
    opt = torch.optim.AdamW(params, lr=0.1, foreach=True)  # Megatron's TE-free default
    for _ in range(3):
        _step_all(opt)
    _load_with_one_shared_step(opt, 3.0)
    if fix:
        assert own_step_counters(opt) == 2  # the other two parameters held the first one's tensor
    _step_all(opt)
    counters = [float(opt.state[p]["step"]) for p in params]
    # without the fix the shared counter is bumped once per parameter: 3 + 3 = 6
    assert counters == ([4.0] * 3 if fix else [6.0] * 3)


def test_distributed_optimizer_checkpoint_patch_on_megatrons_real_methods():
    """Megatron-Core's own TE-free ``DistributedOptimizer.state_dict`` (run unbound on a torch
    AdamW, as the class's GPU-only constructor cannot run here) asserts on the empty state a
    resume starts from; patched, it returns the template and leaves the state empty."""
    import subprocess
    import sys
    import textwrap

    from tests.conftest import REPO

    code = textwrap.dedent("""
        import torch
        from primus.backends.megatron_bridge.bootstrap import prepare_imports
        prepare_imports()
        from megatron.core.optimizer import distrib_optimizer
        from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer
        from primus.backends.megatron_bridge.patches import step_counters
        assert distrib_optimizer.HAVE_APEX_OR_TE is False
        holder = DistributedOptimizer.__new__(DistributedOptimizer)
        holder.optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.ones(3)) for _ in range(2)])
        holder.grad_scaler = None
        try:
            DistributedOptimizer.state_dict(holder)
            print("upstream: ok")
        except AssertionError:
            print("upstream: AssertionError")
        original = (DistributedOptimizer.state_dict, DistributedOptimizer.load_state_dict)
        step_counters.install(); step_counters.install()
        template = DistributedOptimizer.state_dict(holder)
        print("patched steps:", [g["step"] for g in template["optimizer"]["param_groups"]])
        print("state after:", len(holder.optimizer.state))
        assert (DistributedOptimizer.state_dict.__wrapped__, DistributedOptimizer.load_state_dict.__wrapped__) == original
        for p in holder.optimizer.param_groups[0]["params"]:
            p.grad = torch.ones(3)
        holder.optimizer.step()
        print("after a step:", DistributedOptimizer.state_dict(holder)["optimizer"]["param_groups"][0]["step"])
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == [
        "upstream: AssertionError",
        "patched steps: [0.0]",
        "state after: 0",
        "after a step: 1.0",
    ]


def test_step_counters_take_the_checkpoints_value_after_a_load():
    """The dp_reshardable load copies the template's step over the loaded one; the patch resets
    every counter, each its own tensor, to the step the checkpoint's param groups carry."""
    from primus.backends.megatron_bridge.patches.step_counters import saved_step

    params = [torch.nn.Parameter(torch.randn(4)) for _ in range(2)]
    opt = torch.optim.AdamW(params)
    _step_all(opt)
    state_dict = {"optimizer": {"param_groups": [{"step": 10.0}, {"step": 10.0}]}}
    assert saved_step(state_dict) == 10.0
    assert saved_step({"optimizer": {"param_groups": [{"lr": 1.0}]}}) is None
    assert saved_step({"param_state": {}}) is None
    assert own_step_counters(opt, saved_step(state_dict)) == 2
    steps = [opt.state[p]["step"] for p in params]
    assert [float(s) for s in steps] == [10.0, 10.0] and steps[0] is not steps[1]


@pytest.mark.parametrize("kind", ["RMSNorm", "LayerNorm"])
def test_zero_centered_norm_applies_one_plus_weight_like_hf_gemma(kind):
    """The TE/Apex-free zero-centred norm equals the plain norm with weight ``1 + w`` (the
    arithmetic of Megatron-Core's Apex FusedLayerNorm), and for RMSNorm HF Gemma's own module."""
    from types import SimpleNamespace

    from primus.backends.megatron_bridge.patches.zero_centered_norm import TorchNormWithZeroCenteredGamma

    config = SimpleNamespace(
        layernorm_zero_centered_gamma=True,
        normalization=kind,
        persist_layer_norm=False,
        sequence_parallel=False,
        memory_efficient_layer_norm=False,
    )
    norm = TorchNormWithZeroCenteredGamma(config, 16, eps=1e-6)
    assert torch.equal(norm.weight, torch.zeros(16))  # identity scale at init, like FusedLayerNorm
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16))
    x = torch.randn(3, 5, 16)
    plain = torch.nn.RMSNorm(16, eps=1e-6) if kind == "RMSNorm" else torch.nn.LayerNorm(16, eps=1e-6)
    with torch.no_grad():
        plain.weight.copy_(norm.weight + 1)
        if kind == "LayerNorm":
            plain.bias.copy_(norm.bias)
    torch.testing.assert_close(norm(x), plain(x), rtol=0, atol=1e-6)
    if kind == "RMSNorm":
        from transformers.models.gemma.modeling_gemma import GemmaRMSNorm

        hf = GemmaRMSNorm(16, eps=1e-6)
        with torch.no_grad():
            hf.weight.copy_(norm.weight)
        torch.testing.assert_close(norm(x), hf(x), rtol=0, atol=1e-6)
