"""Resumable TE/Apex-free checkpoints of Megatron's distributed optimizer, with correct Adam steps.

Two upstream problems on hosts without Transformer Engine or Apex (Megatron-Core 0.19.2), both
seen on an H200 with the tiny Llama (``benchmarks/resume_probe.py``) and reproduced on a CPU
(``tests/backends/megatron_bridge/test_train_cpu.py``, with the real DistributedOptimizer):

* **Resume crashes.** Loading a checkpoint builds the optimizer's sharded state dict from
  ``DistributedOptimizer.state_dict()`` before any step has run; its TE-free branch asserts that
  the (still empty) inner optimizer state holds exactly one step value, and fails. A placeholder
  step of 0 in each parameter's state for the duration of that call lets it build the template,
  and the state is left empty again; the load below restores the checkpoint's step.
* **Shared step counter.** ``DistributedOptimizer.load_state_dict`` then puts the *same* step
  tensor in every parameter's state. torch's AdamW (single-tensor, foreach or fused) adds 1 to it
  once per parameter at every step, so after a resume the counter runs ahead by a factor of the
  parameter count and Adam's bias correction is wrong (``docs/reliability.md``). Worse, with the
  default ``dp_reshardable`` checkpoint format the same load then copies the *template's* step
  (the placeholder above) over it from the bucket state, which holds no saved step. After the
  load, each parameter gets its own step tensor set to the value the checkpoint's param groups
  carry (the one Megatron itself reads), restoring torch's semantics.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch


def own_step_counters(optimizer: torch.optim.Optimizer, value: float | None = None) -> int:
    """Give every parameter's Adam state its own step tensor; set them all to ``value`` if given.

    Without ``value``, only tensors another parameter's state also holds are copied. Returns how
    many step tensors were replaced.
    """
    seen: set[int] = set()
    replaced = 0
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param)
            step = state.get("step") if state else None
            if not isinstance(step, torch.Tensor):
                continue
            if value is not None:
                state["step"] = torch.full_like(step, value)
                replaced += 1
            elif id(step) in seen:
                state["step"] = step.detach().clone()
                replaced += 1
            seen.add(id(state["step"]))
    return replaced


def saved_step(state_dict: Any) -> float | None:
    """The step a distributed-optimizer state dict carries (TE-free: one value in its param groups)."""
    groups = (state_dict.get("optimizer") or {}).get("param_groups") if isinstance(state_dict, dict) else None
    steps = {group["step"] for group in groups or () if group.get("step") is not None}
    return float(steps.pop()) if len(steps) == 1 else None


def with_template_on_empty_state(state_dict: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``DistributedOptimizer.state_dict`` so it works before the first optimizer step."""
    if getattr(state_dict, "_primus_empty_state_ok", False):
        return state_dict

    @functools.wraps(state_dict)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        inner = getattr(self, "optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer) or len(inner.state) > 0:
            return state_dict(self, *args, **kwargs)
        params = [p for group in inner.param_groups for p in group["params"]]
        for param in params:
            inner.state[param]["step"] = torch.zeros((), dtype=torch.float32)
        try:
            return state_dict(self, *args, **kwargs)
        finally:
            for param in params:
                inner.state.pop(param, None)

    wrapper._primus_empty_state_ok = True  # type: ignore[attr-defined]
    return wrapper


def with_own_step_counters(load_state_dict: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``DistributedOptimizer.load_state_dict`` so its inner optimizer ends with own counters."""
    if getattr(load_state_dict, "_primus_own_steps", False):
        return load_state_dict

    @functools.wraps(load_state_dict)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        result = load_state_dict(self, *args, **kwargs)
        inner = getattr(self, "optimizer", None)
        if isinstance(inner, torch.optim.Optimizer):
            own_step_counters(inner, saved_step(args[0] if args else kwargs.get("state_dict")))
        return result

    wrapper._primus_own_steps = True  # type: ignore[attr-defined]
    return wrapper


def install() -> None:
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    DistributedOptimizer.state_dict = with_template_on_empty_state(DistributedOptimizer.state_dict)
    DistributedOptimizer.load_state_dict = with_own_step_counters(DistributedOptimizer.load_state_dict)
