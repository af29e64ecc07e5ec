"""Sync-free gradient norm and fused AdamW for Megatron-Core's TE/Apex-free optimizer path.

Without Transformer Engine or Apex, Megatron-Core falls back to
``megatron.core.utils.local_multi_tensor_l2_norm``, which turns every gradient's norm into a
Python float: one host-device synchronisation per parameter tensor (98 per step for Llama-3.2-1B,
measured with ``benchmarks/sync_probe.py``), each leaving the GPU idle while the host catches up.
It also builds ``torch.optim.AdamW`` with its default multi-pass ``foreach`` kernels.

The replacements keep Megatron's call signatures and arithmetic: ``torch._foreach_norm`` gives the
same per-tensor L2 norms on the device, and ``fused=True`` selects PyTorch's single-kernel AdamW
(the same update rule; PyTorch tests it against the ``foreach`` one).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import torch

logger = logging.getLogger(__name__)


def foreach_l2_norm(chunk_size: int, noop_flag: torch.Tensor, tensor_lists: list, per_tensor: bool, *args):
    """Drop-in for ``amp_C.multi_tensor_l2norm`` / ``local_multi_tensor_l2_norm``, without a sync.

    Returns ``(total_norm, None)`` with ``total_norm`` a 1-element float32 tensor on the device.
    """
    tensors = [t for tensor_list in tensor_lists for t in tensor_list]
    if not tensors:
        return torch.zeros(1, dtype=torch.float32, device=noop_flag.device), None
    norms = torch._foreach_norm(tensors, 2.0)
    total = torch.linalg.vector_norm(torch.stack([n.float() for n in norms]), 2.0)
    return total.reshape(1), None


def foreach_scale(chunk_size: int, noop_flag: torch.Tensor, tensor_lists: list, scale: float) -> None:
    """Drop-in for ``amp_C.multi_tensor_scale`` / ``local_multi_tensor_scale``: dst = src * scale."""
    sources, destinations = tensor_lists[0], tensor_lists[1]
    if not sources:
        return
    torch._foreach_copy_(destinations, torch._foreach_mul(sources, scale))


def install_foreach_grad_norm() -> None:
    """Point ``megatron.core.optimizer.clip_grads`` at the foreach implementations."""
    from megatron.core.optimizer import clip_grads

    clip_grads.l2_norm_impl = foreach_l2_norm
    clip_grads.multi_tensor_scale_impl = foreach_scale


def _torch_optimizers(result: Any) -> tuple[list[torch.optim.Optimizer], int]:
    """The torch optimizers inside what ``_get_megatron_optimizer_based_on_param_groups`` returns
    that may run fused, and how many were left alone because Megatron's ``DistributedOptimizer``
    wraps them.

    The distributed optimizer is excluded. Measured on an H200 over 200 steps of real text
    (``docs/performance.md``), fused AdamW under it moved the loss by -0.50 % on average but by
    -1.24 % in the worst 20-step window, outside the fast path's 1 % parity bound, while the foreach
    AdamW it keeps stayed within 0.47 %. (Its resume failure seen earlier was Megatron's TE-free
    checkpoint bug, which ``megatron_bridge.distopt_te_free_checkpoint`` now fixes for any AdamW.)
    """
    if isinstance(result, tuple):  # skip_megatron_wrapping=True: (torch optimizer, init fn)
        result = result[0]
    found, distributed = [], 0
    for opt in getattr(result, "chained_optimizers", None) or [result]:
        if type(opt).__name__ == "DistributedOptimizer":
            distributed += 1
            continue
        inner = getattr(opt, "optimizer", opt)
        if isinstance(inner, torch.optim.Optimizer):
            found.append(inner)
    return found, distributed


def use_fused_adam(optimizer: torch.optim.Optimizer) -> bool:
    """Switch a ``torch.optim.Adam``/``AdamW`` to its fused kernel where every parameter allows it.

    Only before the first step (no optimizer state yet), so step counters are created on the device
    as the fused kernel needs. Returns whether it switched.
    """
    if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)) or optimizer.state:
        return False
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if not params or not all(p.device.type in ("cuda", "cpu") and p.is_floating_point() for p in params):
        return False
    if any(group.get("capturable") or group.get("differentiable") for group in optimizer.param_groups):
        return False
    _set_fused(optimizer)
    load = optimizer.load_state_dict

    def load_state_dict(state_dict: dict) -> None:
        load(state_dict)
        _set_fused(optimizer)
        _steps_on_param_devices(optimizer)

    optimizer.load_state_dict = load_state_dict  # type: ignore[method-assign]
    return True


def _set_fused(optimizer: torch.optim.Optimizer) -> None:
    for group in optimizer.param_groups:
        group["fused"] = True
        group["foreach"] = False


def _steps_on_param_devices(optimizer: torch.optim.Optimizer) -> None:
    """One step counter per parameter, on the parameter's device (what the fused kernel updates).

    A state loaded from a foreach (or Megatron-shared) checkpoint keeps its step tensors on the
    CPU and may share one tensor between parameters; the fused kernel needs each on the device.
    (Megatron's distributed optimizer, which never runs fused, is handled by ``step_counters``.)
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p)
            if state and "step" in state:
                state["step"] = torch.tensor(float(state["step"]), dtype=torch.float32, device=p.device)


def with_fused_adam(build: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap Megatron-Core's optimizer factory so the torch Adam it builds runs fused."""
    if getattr(build, "_primus_fused_adam", False):
        return build

    @functools.wraps(build)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = build(*args, **kwargs)
        candidates, distributed = _torch_optimizers(result)
        switched = sum(use_fused_adam(opt) for opt in candidates)
        if switched:
            logger.info("fused_adam: %d torch Adam optimizer(s) switched to fused=True", switched)
        if distributed:
            logger.info(
                "fused_adam: Megatron's DistributedOptimizer keeps torch's foreach AdamW (loss parity, docs/performance.md)"
            )
        return result

    wrapper._primus_fused_adam = True  # type: ignore[attr-defined]
    return wrapper


def install_fused_adam() -> None:
    import megatron.core.optimizer as mcore_optimizer

    factory = "_get_megatron_optimizer_based_on_param_groups"
    setattr(mcore_optimizer, factory, with_fused_adam(getattr(mcore_optimizer, factory)))
