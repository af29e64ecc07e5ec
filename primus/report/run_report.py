"""Read a run directory's metrics and draw ``report.png`` + write ``report.txt``.

Sources, richest first: the TensorBoard events Megatron-Bridge writes under
``RUN_DIR/tensorboard`` (``lm loss``, ``learning-rate``, ``grad-norm``, ``iteration-time``)
and Primus's ``metrics.jsonl`` (one record per iteration, with tokens/s). Either one is
enough; a run directory with neither is a user error.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from primus.core.errors import PrimusUserError

#: TensorBoard tag -> series name (the tags Megatron-Bridge's training loop writes)
TB_TAGS = {
    "lm loss": "loss",
    "learning-rate": "lr",
    "grad-norm": "grad_norm",
    "iteration-time": "seconds_per_iteration",
}


@dataclass
class RunMetrics:
    """Series as ``{name: ([iterations], [values])}`` plus the run's summary.json."""

    run_dir: Path
    series: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def get(self, name: str) -> tuple[list[int], list[float]]:
        return self.series.get(name, ([], []))


def _finite(steps: list[int], values: list[float]) -> tuple[list[int], list[float]]:
    pairs = [(s, v) for s, v in zip(steps, values, strict=True) if v is not None and math.isfinite(v)]
    return [s for s, _ in pairs], [v for _, v in pairs]


def _read_tensorboard(directory: Path) -> dict[str, tuple[list[int], list[float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # "No path found after ..."
    acc = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    acc.Reload()
    available = set(acc.Tags().get("scalars", []))
    series = {}
    for tag, name in TB_TAGS.items():
        if tag in available:
            by_step = {e.step: e.value for e in acc.Scalars(tag)}  # a resumed run rewrites steps
            steps = sorted(by_step)
            series[name] = _finite(steps, [by_step[s] for s in steps])
    return series


def _read_metrics_jsonl(path: Path) -> dict[str, tuple[list[int], list[float]]]:
    records: dict[int, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a run killed mid-write leaves a partial last line
            records[int(record["iteration"])] = record
    steps = sorted(records)
    return {
        name: _finite(steps, [records[s].get(key) for s in steps])
        for name, key in (
            ("loss", "loss"),
            ("lr", "lr"),
            ("grad_norm", "grad_norm"),
            ("tokens_per_second", "tokens_per_second"),
        )
    }


def load_run(run_dir: str | Path) -> RunMetrics:
    """Everything plottable in ``run_dir``; PrimusUserError when there is nothing."""
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise PrimusUserError(
            f"run directory {run_dir} does not exist", hint="give the --run_dir of a `primus train` run"
        )
    metrics = RunMetrics(run_dir)
    tb_dir = run_dir / "tensorboard"
    if tb_dir.is_dir() and any(tb_dir.rglob("events.out.tfevents.*")):
        metrics.series.update({k: v for k, v in _read_tensorboard(tb_dir).items() if v[0]})
        metrics.sources.append(str(tb_dir))
    jsonl = run_dir / "metrics.jsonl"
    if jsonl.is_file():
        for name, values in _read_metrics_jsonl(jsonl).items():
            if values[0] and name not in metrics.series:
                metrics.series[name] = values
        metrics.sources.append(str(jsonl))
    if not metrics.series.get("loss", ([], []))[0]:
        raise PrimusUserError(
            f"{run_dir} holds no training metrics (no TensorBoard events under tensorboard/, "
            "no metrics.jsonl)",
            hint="run `primus train ... --run_dir DIR` first, then `primus report DIR`",
        )
    summary = run_dir / "summary.json"
    if summary.is_file():
        try:
            metrics.summary = json.loads(summary.read_text())
        except json.JSONDecodeError:
            metrics.summary = {}
    _derive_throughput(metrics)
    return metrics


def _derive_throughput(metrics: RunMetrics) -> None:
    """tokens/s per iteration: metrics.jsonl has it; else tokens per iteration / iteration time."""
    if metrics.get("tokens_per_second")[0]:
        return
    tokens = metrics.summary.get("tokens_per_iteration")
    steps, seconds = metrics.get("seconds_per_iteration")
    if tokens and steps:
        metrics.series["tokens_per_second"] = _finite(
            steps, [tokens / s if s > 0 else float("nan") for s in seconds]
        )


def steady(steps: list[int], values: list[float]) -> tuple[list[int], list[float]]:
    """Without the first point: the first iteration includes compilation and warm-up."""
    return (steps[1:], values[1:]) if len(steps) > 2 else (steps, values)


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """TensorBoard-style exponential moving average, bias-corrected at the start."""
    out, avg = [], 0.0
    for n, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**n))
    return out


def summary_text(metrics: RunMetrics) -> str:
    steps, losses = metrics.get("loss")
    lr_steps, lrs = metrics.get("lr")
    tp_steps, tps = steady(*metrics.get("tokens_per_second"))
    gn_steps, gns = metrics.get("grad_norm")
    last_smoothed = smooth(losses)[-1]
    best = min(range(len(losses)), key=losses.__getitem__)
    lines = [
        f"run          {metrics.run_dir}",
        f"iterations   {steps[0]} -> {steps[-1]} ({len(steps)} logged)",
        f"loss         {losses[0]:.4f} -> {losses[-1]:.4f} (smoothed {last_smoothed:.4f}; "
        f"lowest {losses[best]:.4f} at iteration {steps[best]})",
    ]
    if lrs:
        lines.append(f"lr           peak {max(lrs):.3g}, last {lrs[-1]:.3g}")
    if tps:
        lines.append(
            f"throughput   median {statistics.median(tps):,.0f} tokens/s "
            f"(min {min(tps):,.0f}, max {max(tps):,.0f}; first iteration excluded)"
        )
    if gns:
        lines.append(f"grad norm    last {gns[-1]:.3f}, max {max(gns):.3f}")
    seconds = metrics.summary.get("train_seconds")
    if seconds:
        lines.append(f"train time   {seconds:.1f} s")
    lines.append(f"sources      {', '.join(metrics.sources)}")
    return "\n".join(lines)
