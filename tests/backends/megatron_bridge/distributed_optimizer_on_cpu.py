"""Run `primus train` on a CPU with Megatron-Core's real DistributedOptimizer (a test harness).

Megatron's DistributedOptimizer refuses CPU tensors with one type check
(``model_param.type() == 'torch.cuda.FloatTensor'``) and Primus's CPU mode turns it off. This
script answers that type check as if the tensors were CUDA ones and keeps the optimizer on,
so the optimizer's TE-free save/load code (the same Python that runs on a GPU without TE) can
be tested here. Usage: ``python distributed_optimizer_on_cpu.py <primus train arguments>``.
"""

from __future__ import annotations

import sys

import torch

CUDA_NAMES = {"torch.FloatTensor", "torch.HalfTensor", "torch.BFloat16Tensor"}
_tensor_type = torch.Tensor.type


def _type_as_if_on_cuda(self, dtype=None, non_blocking=False, **kwargs):
    if dtype is None:
        name = _tensor_type(self)
        return name.replace("torch.", "torch.cuda.") if name in CUDA_NAMES else name
    return _tensor_type(self, dtype, non_blocking, **kwargs)


if __name__ == "__main__":
    torch.Tensor.type = _type_as_if_on_cuda
    from primus.backends.megatron_bridge.patches import model_settings

    for key in ("optimizer.use_distributed_optimizer", "ddp.use_distributed_optimizer"):
        model_settings.CPU_SETTINGS.pop(key)
    from primus.cli.main import main

    sys.exit(main(["train", "optimizer.use_distributed_optimizer=true", *sys.argv[1:]]))
