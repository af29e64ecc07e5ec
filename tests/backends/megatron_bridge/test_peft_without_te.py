"""Bridge's LoRA on Megatron's local linear layers, without Transformer Engine, on a CPU."""

from __future__ import annotations

import importlib
import socket

import pytest
import torch

from primus.backends.megatron_bridge.patches import peft_without_te

pytestmark = pytest.mark.megatron


@pytest.fixture
def local_linear(monkeypatch):
    """A ColumnParallelLinear on one gloo rank; the PEFT modules' flags are restored after."""
    import torch.distributed as dist

    from primus.backends.megatron_bridge.bootstrap import run_setup_patches
    from primus.core.environment import detect

    run_setup_patches(detect("cpu"))
    for module_name, flags in peft_without_te.TE_FLAGS.items():
        module = importlib.import_module(module_name)
        for flag in flags:
            monkeypatch.setattr(module, flag, getattr(module, flag))
    from megatron.core import parallel_state
    from megatron.core.tensor_parallel import random as tp_random
    from megatron.core.tensor_parallel.layers import ColumnParallelLinear
    from megatron.core.transformer.transformer_config import TransformerConfig

    created = not dist.is_initialized()
    if created:
        monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
        with socket.socket() as probe:  # a free port: other tests and runs may hold fixed ones
            probe.bind(("127.0.0.1", 0))
            monkeypatch.setenv("MASTER_PORT", str(probe.getsockname()[1]))
        dist.init_process_group("gloo", rank=0, world_size=1)
    parallel_state.initialize_model_parallel(1, 1)
    tp_random.initialize_rng_tracker(inference_rng_tracker=True)
    config = TransformerConfig(
        num_layers=1, hidden_size=16, num_attention_heads=2, use_cpu_initialization=True
    )
    yield ColumnParallelLinear(
        16, 48, config=config, init_method=torch.nn.init.normal_, bias=False, gather_output=False
    )
    parallel_state.destroy_model_parallel()
    if created:
        dist.destroy_process_group()


def test_lora_wraps_a_local_linear_layer_once_patched(local_linear):
    from megatron.bridge.peft.lora import LoRA

    lora = LoRA(target_modules=["linear_qkv"], dim=4)
    with pytest.raises(TypeError, match="isinstance"):  # upstream: TE placeholders taken for TE
        lora.transform(local_linear, name="linear_qkv", prefix="decoder.layers.0.self_attention")
    peft_without_te.install()
    wrapped = lora.transform(local_linear, name="linear_qkv", prefix="decoder.layers.0.self_attention")
    assert type(wrapped).__name__ == "LoRALinear"
    x = torch.randn(3, 2, 16)
    base, _ = local_linear(x)
    out, _ = wrapped(x)
    # the adapter's output projection starts at zero: LoRA leaves the layer's output unchanged
    assert out.shape == (3, 2, 48) and torch.allclose(out, base)
    names = {n for n, _ in wrapped.named_parameters()}
    assert {"adapter.linear_in.weight", "adapter.linear_out.weight", "to_wrap.weight"} <= names
