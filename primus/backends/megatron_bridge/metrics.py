"""A Megatron-Bridge callback that records per-iteration metrics for the run summary.

One rank writes (last pipeline stage, first data- and tensor-parallel rank: the one that
holds the reduced loss): ``metrics.jsonl`` and ``summary.json``.

``metrics.jsonl``: one JSON object per line, one line per iteration, in iteration order::

    {"iteration": 10, "loss": 3.91, "lr": 0.0029, "grad_norm": 1.2, "seconds": 0.21,
     "tokens_per_second": 2438.1, "skipped": false, "validation_loss": 3.84}

- ``seconds``: the iteration's wall time; evaluation is excluded (a checkpoint save is not).
- ``validation_loss``: only on the iterations where Megatron evaluated
  (``validation.eval_interval``, and the last iteration: the evaluation after training), its
  validation ``lm loss`` over ``validation.eval_iters`` batches, taken from Bridge's
  ``on_eval_end`` hook; a later evaluation of the same iteration replaces the earlier value.
  An evaluation without a training row of its iteration (``validation.skip_train``) gets a row
  of ``iteration`` and ``validation_loss`` only.
- ``resumed_from``: on the first row of a run resumed from a checkpoint, the checkpoint's
  iteration.

A resumed run first rewrites the file (atomically) keeping the rows up to its start iteration:
the iterations after the checkpoint are trained again, and the later run's rows replace them.

``summary.json``: this process's iterations, loss and throughput, ``train_seconds`` (this
process), ``validation_loss`` / ``validation_iteration`` (the last evaluation, an earlier run's
when this one made none) and ``resumes`` (the resume points kept in metrics.jsonl).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from megatron.bridge.training.callbacks import Callback

from primus.core.memory import peak_memory
from primus.report.run_report import read_rows


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


def _floats(losses: dict | None) -> dict[str, float]:
    return {k: float(v.item() if hasattr(v, "item") else v) for k, v in (losses or {}).items()}


def _lm_loss(losses: dict | None) -> float | None:
    values = _floats(losses)
    return values.get("lm loss", next(iter(values.values()), None))


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Replace ``path`` with ``rows``, atomically: a reader sees the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)


class MetricsRecorder(Callback):
    """Collects loss, learning rate, throughput and validation loss; writes them on one rank."""

    def __init__(self, run_dir: Path, tokens_per_iteration: int) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "metrics.jsonl"
        self.tokens_per_iteration = tokens_per_iteration
        self.records: list[dict[str, Any]] = []
        self.start_iteration: int | None = None
        self.resumes: list[int] = []
        self.validation: dict[str, Any] | None = None  # the last evaluation's row fields
        self._last_time: float | None = None
        self._train_start: float | None = None
        self._eval_start: float | None = None
        self._file = None
        self._row_offset = 0  # where the last row written starts in metrics.jsonl
        self._summary_written = False
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
            self._keep_rows_up_to(self.start_iteration)
            self._file = open(self.path, "ab")  # noqa: SIM115
        if self.start_iteration > 0:
            self.resumes.append(self.start_iteration)

    def _keep_rows_up_to(self, iteration: int) -> None:
        """A resumed run trains the iterations after its checkpoint again: drop their rows."""
        if not self.path.is_file():
            return
        kept = [r for r in read_rows(self.path) if r["iteration"] <= iteration]
        _write_rows(self.path, kept)
        self.resumes = [int(r["resumed_from"]) for r in kept if r.get("resumed_from") is not None]
        evaluated = [r for r in kept if r.get("validation_loss") is not None]
        if evaluated:
            self.validation = {k: evaluated[-1][k] for k in ("iteration", "validation_loss")}

    def _append(self, record: dict[str, Any]) -> None:
        self._row_offset = self._file.tell()
        self._file.write((json.dumps(record) + "\n").encode("utf-8"))
        self._file.flush()

    def on_train_step_end(self, context) -> None:
        now = time.perf_counter()
        seconds = now - (self._last_time or now)
        self._last_time = now
        lr = None
        if context.optimizer is not None and getattr(context.optimizer, "param_groups", None):
            lr = float(context.optimizer.param_groups[0]["lr"])
        record = {
            "iteration": int(context.state.train_state.step) + 1,  # the step just finished
            "loss": _lm_loss(context.loss_dict),
            "lr": lr,
            "grad_norm": None if context.grad_norm is None else float(context.grad_norm),
            "seconds": seconds,
            "tokens_per_second": self.tokens_per_iteration / seconds if seconds > 0 else None,
            "skipped": bool(context.skipped_iter),
        }
        if not self.records and self.start_iteration:
            record["resumed_from"] = self.start_iteration
        self.records.append(record)
        if self._file is not None:
            self._append(record)

    def on_eval_start(self, context) -> None:
        self._eval_start = time.perf_counter()

    def on_eval_end(self, context) -> None:
        """Megatron's validation loss at the iteration just trained (``train_state.step``)."""
        if self._eval_start is not None and self._last_time is not None:
            self._last_time += time.perf_counter() - self._eval_start  # not the next iteration's time
        self._eval_start = None
        value = _lm_loss(context.total_loss_dict)
        if value is None:  # the losses live on the last pipeline stage only
            return
        iteration = int(context.state.train_state.step)
        self.validation = {"iteration": iteration, "validation_loss": value}
        row = next((r for r in reversed(self.records) if r["iteration"] == iteration), None)
        if row is not None:
            row["validation_loss"] = value
        if not _is_writer():
            return
        if self._file is not None:  # during training: the row just written gets the value
            if row is None:
                self._append(dict(self.validation))
            elif row is self.records[-1]:
                self._file.seek(self._row_offset)
                self._file.truncate()
                self._append(row)
            return
        rows = read_rows(self.path) if self.path.is_file() else []  # after training
        existing = next((r for r in rows if r["iteration"] == iteration), None)
        if existing is None:
            rows = sorted([*rows, dict(self.validation)], key=lambda r: r["iteration"])
        else:
            existing["validation_loss"] = value
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _write_rows(self.path, rows)
        if self._summary_written:
            self._write_summary()

    def on_train_end(self, context) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._write_summary()

    def _write_summary(self) -> None:
        (self.run_dir / "summary.json").write_text(json.dumps(self.summary(), indent=2) + "\n")
        self._summary_written = True

    def summary(self) -> dict[str, Any]:
        steady = self.records[1:] or self.records  # the first iteration includes warm-up
        seconds = sum(r["seconds"] for r in steady)
        losses = [r["loss"] for r in self.records if r["loss"] is not None and math.isfinite(r["loss"])]
        validation = self.validation or {}
        return {
            "start_iteration": self.start_iteration,
            "last_iteration": self.records[-1]["iteration"] if self.records else self.start_iteration,
            "iterations_run": len(self.records),
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "validation_loss": validation.get("validation_loss"),
            "validation_iteration": validation.get("iteration"),
            "resumes": self.resumes,
            "tokens_per_iteration": self.tokens_per_iteration,
            "data_parallel_size": self.data_parallel_size,
            "tokens_per_second": self.tokens_per_iteration * len(steady) / seconds if seconds > 0 else None,
            "train_seconds": (time.perf_counter() - self._train_start) if self._train_start else None,
            **peak_memory(_cuda_in_use()),
        }
