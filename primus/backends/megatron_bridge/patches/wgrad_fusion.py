"""Weight-gradient GEMMs that accumulate straight into Megatron's fp32 ``main_grad``.

Without the fusion, Megatron-Core's linear layers compute each weight gradient in bf16, and the
DDP hook then adds it to the fp32 ``main_grad`` buffer (``param.main_grad.add_(param.grad)``):
one extra bf16 write, read and fp32 read-modify-write of every gradient per micro-batch
(8.3 ms per step for Llama-3.2-1B on an H200, ``docs/performance.md``), and a bf16 rounding of
the gradient before it is accumulated. With ``gradient_accumulation_fusion`` Megatron instead
calls Apex's ``fused_weight_gradient_mlp_cuda.wgrad_gemm_accum_fp32``: a GEMM with beta = 1 that
writes fp32 into ``main_grad``. PyTorch has that GEMM too: ``torch.addmm(..., out_dtype=
torch.float32)`` (cuBLAS, bf16 inputs, fp32 accumulation and output). This module hands Megatron's
linear layers that kernel under the name they call, and nothing else: Megatron's autograd
function, its ``grad_added_to_main_grad`` protocol and its DDP hook are unchanged.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

#: The attribute of ``megatron.core.tensor_parallel.layers`` that holds Apex's module.
APEX_MODULE_ATTR = "fused_weight_gradient_mlp_cuda"


def wgrad_gemm_accum_fp32(
    total_input: torch.Tensor, grad_output: torch.Tensor, main_grad: torch.Tensor
) -> None:
    """``main_grad += grad_output.T @ total_input`` with fp32 accumulation, in one GEMM on CUDA.

    ``total_input`` is ``[tokens, in]``, ``grad_output`` ``[tokens, out]``, ``main_grad``
    ``[out, in]`` float32 (Apex's signature).
    """
    if total_input.dtype == main_grad.dtype:
        main_grad.addmm_(grad_output.t(), total_input)
    elif main_grad.is_cuda:
        torch.addmm(main_grad, grad_output.t(), total_input, out_dtype=main_grad.dtype, out=main_grad)
    else:  # aten::addmm.dtype is CUDA-only: upcast, same arithmetic
        main_grad.addmm_(grad_output.t().to(main_grad.dtype), total_input.to(main_grad.dtype))


def wgrad_gemm_accum_fp16(
    total_input: torch.Tensor, grad_output: torch.Tensor, main_grad: torch.Tensor
) -> None:
    """``main_grad += grad_output.T @ total_input`` for a bf16/fp16 ``main_grad`` (Apex's signature)."""
    main_grad.addmm_(grad_output.t().to(main_grad.dtype), total_input.to(main_grad.dtype))


#: Stands in for Apex's extension module inside Megatron's linear layers only.
TORCH_WGRAD_ACCUMULATION = SimpleNamespace(
    wgrad_gemm_accum_fp32=wgrad_gemm_accum_fp32, wgrad_gemm_accum_fp16=wgrad_gemm_accum_fp16
)


def install_wgrad_accumulation() -> bool:
    """Give ``megatron.core.tensor_parallel.layers`` the torch kernels; False where Apex's are there."""
    from megatron.core.tensor_parallel import layers

    if (
        layers._grad_accum_fusion_available
        and getattr(layers, APEX_MODULE_ATTR, None) is not TORCH_WGRAD_ACCUMULATION
    ):
        return False  # Apex's extension is installed: Megatron uses it as is
    setattr(layers, APEX_MODULE_ATTR, TORCH_WGRAD_ACCUMULATION)
    layers._grad_accum_fusion_available = True
    return True
