"""Redirect the CUDA calls Megatron-Bridge's training loop makes, so it runs on a CPU.

Used only by the ``megatron_bridge.cpu_execution`` patch, in the training process: a
development / smoke-test mode, never a fast path. What is redirected (found by running
``pretrain()`` on a machine without CUDA):

* tensor factories called with ``device="cuda"``, ``Tensor.cuda()`` and ``Tensor.to("cuda")``
  (a ``TorchFunctionMode`` maps them to the CPU);
* ``torch.cuda`` housekeeping (synchronize, memory statistics, streams, events, RNG state,
  ``current_device``) -> CPU equivalents or no-ops.
"""

from __future__ import annotations

import contextlib
import logging

import torch
from torch.overrides import TorchFunctionMode

logger = logging.getLogger(__name__)


def _is_cuda(device) -> bool:
    if isinstance(device, str):
        return device.startswith("cuda")
    if isinstance(device, torch.device):
        return device.type == "cuda"
    return isinstance(device, int) and not isinstance(device, bool)


class CudaToCpuMode(TorchFunctionMode):
    """Every torch call that asks for a CUDA device gets the CPU instead."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if name == "cuda" and args and isinstance(args[0], torch.Tensor):
            return args[0]
        if "device" in kwargs and _is_cuda(kwargs["device"]):
            kwargs["device"] = "cpu"
        if name == "to" and len(args) > 1 and _is_cuda(args[1]) and not isinstance(args[1], int):
            args = (args[0], "cpu", *args[2:])
        return func(*args, **kwargs)


class _Stream:
    def __init__(self, *args, **kwargs) -> None:
        pass

    def wait_stream(self, *args, **kwargs) -> None:
        pass

    def wait_event(self, *args, **kwargs) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def record_event(self, *args, **kwargs):
        return _Event()


class _Event:
    def __init__(self, *args, **kwargs) -> None:
        pass

    def record(self, *args, **kwargs) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def wait(self, *args, **kwargs) -> None:
        pass

    def elapsed_time(self, other) -> float:
        return 0.0


def _constant(value):
    return lambda *args, **kwargs: value


#: torch.cuda attribute -> CPU replacement
CUDA_REPLACEMENTS = {
    "current_device": lambda: torch.device("cpu"),
    "synchronize": _constant(None),
    "empty_cache": _constant(None),
    "set_device": _constant(None),
    "ipc_collect": _constant(None),
    "manual_seed": _constant(None),
    "manual_seed_all": _constant(None),
    "memory_allocated": _constant(0),
    "max_memory_allocated": _constant(0),
    "memory_reserved": _constant(0),
    "max_memory_reserved": _constant(0),
    "reset_peak_memory_stats": _constant(None),
    "reset_max_memory_allocated": _constant(None),
    "memory_stats": _constant({}),
    "mem_get_info": _constant((0, 0)),
    "get_device_name": _constant("cpu"),
    "get_rng_state": lambda *args, **kwargs: torch.get_rng_state(),
    "set_rng_state": _constant(None),
    "get_rng_state_all": lambda *args, **kwargs: [torch.get_rng_state()],
    "set_rng_state_all": _constant(None),
    "Stream": _Stream,
    "Event": _Event,
    "current_stream": lambda *args, **kwargs: _Stream(),
    "default_stream": lambda *args, **kwargs: _Stream(),
    "stream": lambda *args, **kwargs: contextlib.nullcontext(),
}

_saved: dict[str, object] = {}
_mode: CudaToCpuMode | None = None


def enable() -> None:
    """Install the redirections for the rest of the process (idempotent)."""
    global _mode
    if _mode is not None:
        return
    for name, replacement in CUDA_REPLACEMENTS.items():
        _saved[name] = getattr(torch.cuda, name, None)
        setattr(torch.cuda, name, replacement)
    _saved["nvtx.range_push"] = torch.cuda.nvtx.range_push
    _saved["nvtx.range_pop"] = torch.cuda.nvtx.range_pop
    torch.cuda.nvtx.range_push = _constant(None)
    torch.cuda.nvtx.range_pop = _constant(None)
    _mode = CudaToCpuMode()
    _mode.__enter__()


def disable() -> None:
    """Undo :func:`enable` (tests)."""
    global _mode
    if _mode is None:
        return
    _mode.__exit__(None, None, None)
    _mode = None
    torch.cuda.nvtx.range_push = _saved.pop("nvtx.range_push")
    torch.cuda.nvtx.range_pop = _saved.pop("nvtx.range_pop")
    for name, original in _saved.items():
        setattr(torch.cuda, name, original)
    _saved.clear()


def enabled() -> bool:
    return _mode is not None
