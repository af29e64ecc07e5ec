"""A Megatron-Bridge callback that records per-iteration metrics for the run summary.

One rank writes (last pipeline stage, first data- and tensor-parallel rank: the one that
holds the reduced loss): ``metrics.jsonl`` (one line per iteration) and ``summary.json``.
"""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path
from typing import Any

from megatron.bridge.training.callbacks import Callback

from primus.core.memory import peak_memory


def _cuda_in_use() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_initialized()


def _is_writer() -> bool:
    from megatron.core import parallel_state as ps

    if not ps.model_parallel_is_initialized():
        return True
    return (
        ps.is_pipeline_last_stage(ignore_virtual=True)
        and ps.get_data_parallel_rank() == 0
        and ps.get_tensor_model_parallel_rank() == 0
        and ps.get_context_parallel_rank() == 0
    )


class SignalObserver(Callback):
    """Notes a termination signal without taking it from Megatron-Bridge's own handler.

    Bridge (``train.exit_signal_handler``) saves a checkpoint and ``sys.exit``s on SIGTERM;
    this wrapper only remembers that it happened, so Primus can exit with a distinct code.
    """

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        self.signum = signum
        self.received = False

    def on_train_start(self, context) -> None:
        previous = signal.getsignal(self.signum)

        def observe(signum, frame):
            self.received = True
            if callable(previous):
                previous(signum, frame)

        signal.signal(self.signum, observe)


class MetricsRecorder(Callback):
    """Collects loss, learning rate and throughput per iteration; writes them on one rank."""

    def __init__(self, run_dir: Path, tokens_per_iteration: int) -> None:
        self.run_dir = Path(run_dir)
        self.tokens_per_iteration = tokens_per_iteration
        self.records: list[dict[str, Any]] = []
        self.start_iteration: int | None = None
        self._last_time: float | None = None
        self._train_start: float | None = None
        self._file = None
        self.data_parallel_size = 1

    def on_train_start(self, context) -> None:
        self._train_start = self._last_time = time.perf_counter()
        self.start_iteration = int(context.state.train_state.step)
        from megatron.core import parallel_state as ps

        self.data_parallel_size = (
            ps.get_data_parallel_world_size() if ps.model_parallel_is_initialized() else 1
        )
        if _is_writer():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._file = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115

    def on_train_step_end(self, context) -> None:
        now = time.perf_counter()
        seconds = now - (self._last_time or now)
        self._last_time = now
        losses = {
            k: float(v.item() if hasattr(v, "item") else v) for k, v in (context.loss_dict or {}).items()
        }
        lr = None
        if context.optimizer is not None and getattr(context.optimizer, "param_groups", None):
            lr = float(context.optimizer.param_groups[0]["lr"])
        record = {
            "iteration": int(context.state.train_state.step) + 1,  # the step just finished
            "loss": losses.get("lm loss", next(iter(losses.values()), None)),
            "lr": lr,
            "grad_norm": None if context.grad_norm is None else float(context.grad_norm),
            "seconds": seconds,
            "tokens_per_second": self.tokens_per_iteration / seconds if seconds > 0 else None,
            "skipped": bool(context.skipped_iter),
        }
        self.records.append(record)
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def on_train_end(self, context) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            (self.run_dir / "summary.json").write_text(json.dumps(self.summary(), indent=2) + "\n")

    def summary(self) -> dict[str, Any]:
        steady = self.records[1:] or self.records  # the first iteration includes warm-up
        seconds = sum(r["seconds"] for r in steady)
        losses = [r["loss"] for r in self.records if r["loss"] is not None and math.isfinite(r["loss"])]
        return {
            "start_iteration": self.start_iteration,
            "last_iteration": self.records[-1]["iteration"] if self.records else self.start_iteration,
            "iterations_run": len(self.records),
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "tokens_per_iteration": self.tokens_per_iteration,
            "data_parallel_size": self.data_parallel_size,
            "tokens_per_second": self.tokens_per_iteration * len(steady) / seconds if seconds > 0 else None,
            "train_seconds": (time.perf_counter() - self._train_start) if self._train_start else None,
            **peak_memory(_cuda_in_use()),
        }
