"""Weight-gradient accumulation fusion: Megatron's own linear backward, with torch's GEMM in Apex's place."""

from __future__ import annotations

import pytest
import torch

from primus.backends.megatron_bridge.patches.wgrad_fusion import (
    APEX_MODULE_ATTR,
    TORCH_WGRAD_ACCUMULATION,
    install_wgrad_accumulation,
    wgrad_gemm_accum_fp16,
    wgrad_gemm_accum_fp32,
)

pytestmark = pytest.mark.megatron


@pytest.fixture
def megatron_layers(monkeypatch):
    """Megatron's linear-layer module; the Apex-extension globals the patch sets are undone after."""
    from megatron.core.tensor_parallel import layers

    monkeypatch.setattr(layers, "_grad_accum_fusion_available", layers._grad_accum_fusion_available)
    monkeypatch.setattr(layers, APEX_MODULE_ATTR, getattr(layers, APEX_MODULE_ATTR, None), raising=False)
    return layers


def _activations(dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(24, 16, generator=g).to(dtype), torch.randn(24, 8, generator=g).to(dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_fp32_kernel_adds_the_weight_gradient_to_main_grad(dtype):
    x, dy = _activations(dtype)
    main_grad = torch.full((8, 16), 0.25)
    wgrad_gemm_accum_fp32(x, dy, main_grad)
    expected = 0.25 + dy.double().t() @ x.double()
    assert main_grad.dtype == torch.float32
    torch.testing.assert_close(main_grad.double(), expected, rtol=1e-6, atol=1e-5)


def test_fp16_kernel_accumulates_in_the_buffers_dtype():
    x, dy = _activations(torch.bfloat16)
    main_grad = torch.zeros(8, 16, dtype=torch.bfloat16)
    wgrad_gemm_accum_fp16(x, dy, main_grad)
    wgrad_gemm_accum_fp16(x, dy, main_grad)
    torch.testing.assert_close(main_grad.float(), 2 * (dy.float().t() @ x.float()), rtol=2e-2, atol=5e-2)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_megatrons_linear_backward_accumulates_micro_batches_into_main_grad(megatron_layers, dtype):
    """Two micro-batches through Megatron's real autograd function: main_grad (fp32) holds their sum."""
    assert install_wgrad_accumulation()
    assert megatron_layers.fused_weight_gradient_mlp_cuda is TORCH_WGRAD_ACCUMULATION
    assert install_wgrad_accumulation()  # idempotent
    linear = megatron_layers.linear_with_grad_accumulation_and_async_allreduce

    weight = torch.randn(8, 16, generator=torch.Generator().manual_seed(1)).to(dtype).requires_grad_()
    weight.main_grad = torch.zeros(8, 16)
    reference = torch.zeros(8, 16, dtype=torch.float64)
    for seed in (2, 3):
        x, dy = _activations(dtype, seed)
        x.requires_grad_()
        out = linear(
            x, weight, None, gradient_accumulation_fusion=True, allreduce_dgrad=False, sequence_parallel=False
        )
        out.backward(dy)
        reference += dy.double().t() @ x.detach().double()
        torch.testing.assert_close(x.grad, dy @ weight.detach())  # the input gradient is untouched
    assert weight.grad is None
    torch.testing.assert_close(weight.main_grad.double(), reference, rtol=1e-6, atol=1e-5)


def test_megatrons_linear_layers_accept_the_fusion_once_installed(megatron_layers):
    """ColumnParallelLinear refuses gradient_accumulation_fusion without Apex; with the patch it builds."""
    from megatron.core.model_parallel_config import ModelParallelConfig

    megatron_layers._grad_accum_fusion_available = False
    config = ModelParallelConfig(gradient_accumulation_fusion=True, use_cpu_initialization=True)
    with pytest.raises(RuntimeError, match="fused_weight_gradient_mlp_cuda"):
        megatron_layers.ColumnParallelLinear(
            16, 8, config=config, init_method=torch.nn.init.zeros_, tp_group=None
        )
    install_wgrad_accumulation()
    layer = megatron_layers.ColumnParallelLinear(
        16, 8, config=config, init_method=torch.nn.init.zeros_, tp_group=None
    )
    assert layer.gradient_accumulation_fusion
