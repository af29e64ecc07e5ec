"""Read a run directory's metrics and draw ``report.png`` + write ``report.txt``.

Sources, richest first: the TensorBoard events Megatron-Bridge writes under
``RUN_DIR/tensorboard`` (``lm loss``, ``lm loss validation``, ``learning-rate``, ``grad-norm``,
``iteration-time``) and Primus's ``metrics.jsonl`` (one row per iteration, with tokens/s,
seconds and, at evaluated iterations, ``validation_loss``; format in
``primus.backends.megatron_bridge.metrics``). Either one is enough; a run directory with
neither is a user error. A run resumed from a checkpoint reads as one run: the later row for
an iteration wins, and the resume points are marked.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from primus.core.errors import PrimusUserError

#: TensorBoard tag -> series name (the tags Megatron-Bridge's training loop writes)
TB_TAGS = {
    "lm loss": "loss",
    "lm loss validation": "validation_loss",
    "learning-rate": "lr",
    "grad-norm": "grad_norm",
    "iteration-time": "seconds_per_iteration",
}

#: series metrics.jsonl gives better than TensorBoard: Bridge writes the test split's loss
#: after training under the same "lm loss validation" tag, over the last validation value
JSONL_FIRST = {"validation_loss"}

#: series name -> metrics.jsonl key
JSONL_KEYS = {
    "loss": "loss",
    "validation_loss": "validation_loss",
    "lr": "lr",
    "grad_norm": "grad_norm",
    "tokens_per_second": "tokens_per_second",
    "seconds": "seconds",
}


@dataclass
class RunMetrics:
    """Series as ``{name: ([iterations], [values])}`` plus the run's summary.json."""

    run_dir: Path
    series: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    resumes: list[int] = field(default_factory=list)  # iterations a later run resumed from

    def get(self, name: str) -> tuple[list[int], list[float]]:
        return self.series.get(name, ([], []))


def read_rows(path: Path) -> list[dict]:
    """metrics.jsonl as one row per iteration, in iteration order; a later row for an iteration
    replaces the earlier one (a resumed run repeats the iterations after its checkpoint).

    A row whose iteration does not exceed the previous row's starts a resumed run (files
    written before Primus recorded ``resumed_from``): it gets ``resumed_from`` = iteration - 1.
    Lines that are not JSON objects with an integer ``iteration`` (a run killed mid-write
    leaves a partial last line) are skipped.
    """
    rows: dict[int, dict] = {}
    previous: int | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            iteration = int(row["iteration"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        if previous is not None and iteration <= previous:
            row.setdefault("resumed_from", iteration - 1)
        rows[iteration] = row
        previous = iteration
    return [rows[i] for i in sorted(rows)]


def _finite(steps: list[int], values: list[float]) -> tuple[list[int], list[float]]:
    pairs = [
        (s, v) for s, v in zip(steps, values, strict=True) if isinstance(v, int | float) and math.isfinite(v)
    ]
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


def _read_metrics_jsonl(path: Path) -> tuple[dict[str, tuple[list[int], list[float]]], list[int]]:
    rows = read_rows(path)
    steps = [r["iteration"] for r in rows]
    series = {name: _finite(steps, [r.get(key) for r in rows]) for name, key in JSONL_KEYS.items()}
    return series, [int(r["resumed_from"]) for r in rows if r.get("resumed_from") is not None]


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
        series, metrics.resumes = _read_metrics_jsonl(jsonl)
        for name, values in series.items():
            if values[0] and (name not in metrics.series or name in JSONL_FIRST):
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
    if not metrics.resumes:
        metrics.resumes = [int(i) for i in metrics.summary.get("resumes") or []]
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


def steady(
    steps: list[int], values: list[float], resumes: Iterable[int] = ()
) -> tuple[list[int], list[float]]:
    """Without the first point of each run: it includes compilation and warm-up."""
    if len(steps) <= 2:
        return steps, values
    firsts = {steps[0]} | {min((s for s in steps if s > r), default=-1) for r in resumes}
    pairs = [(s, v) for s, v in zip(steps, values, strict=True) if s not in firsts]
    return [s for s, _ in pairs], [v for _, v in pairs]


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """TensorBoard-style exponential moving average, bias-corrected at the start."""
    out, avg = [], 0.0
    for n, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**n))
    return out


def end_span(n: int) -> int:
    """How many iterations each end of an ``n``-point series is smoothed over (1 to 10)."""
    return max(1, min(10, n // 10))


def _how_smoothed(n: int) -> str:
    span = end_span(n)
    return f"smoothed over ~{span} iterations at each end" if span > 1 else "first and last iteration"


def smoothed_ends(values: list[float]) -> tuple[float, float]:
    """First and last value of a noisy series, each an EMA towards its own end.

    The forward EMA's first point is the raw first value (bias correction); running the same
    EMA backwards gives the start the smoothing the end gets. The span grows with the series
    (10 iterations from 100 on), so a short run's ends stay what they were.
    """
    weight = 1.0 - 1.0 / end_span(len(values))
    return smooth(values[::-1], weight)[-1], smooth(values, weight)[-1]


def train_time(metrics: RunMetrics) -> tuple[float | None, str]:
    """Seconds spent training, across every run of a resumed run directory, and how it was
    measured: the sum of metrics.jsonl's per-iteration ``seconds`` (one row per iteration),
    else summary.json's ``train_seconds`` (the last process only)."""
    steps, seconds = metrics.get("seconds")
    if seconds:
        runs = len(metrics.resumes) + 1
        return sum(seconds), f"sum of {len(steps)} iteration times" + (f", {runs} runs" if runs > 1 else "")
    last = metrics.summary.get("train_seconds")
    return (last, "summary.json, last process only") if last else (None, "")


def summary_text(metrics: RunMetrics) -> str:
    steps, losses = metrics.get("loss")
    lrs = metrics.get("lr")[1]
    tps = steady(*metrics.get("tokens_per_second"), metrics.resumes)[1]
    gns = metrics.get("grad_norm")[1]
    first, last = smoothed_ends(losses)
    best = min(range(len(losses)), key=losses.__getitem__)
    lines = [
        f"run          {metrics.run_dir}",
        f"iterations   {steps[0]} -> {steps[-1]} ({len(steps)} logged)",
        f"loss         {first:.4f} -> {last:.4f} ({_how_smoothed(len(losses))}; last iteration "
        f"{losses[-1]:.4f}; lowest {losses[best]:.4f} at iteration {steps[best]})",
    ]
    v_steps, v_losses = metrics.get("validation_loss")
    if v_losses:
        v_best = min(range(len(v_losses)), key=v_losses.__getitem__)
        lines.append(
            f"validation   {v_losses[0]:.4f} -> {v_losses[-1]:.4f} at iteration {v_steps[-1]} "
            f"({len(v_losses)} evaluations; lowest {v_losses[v_best]:.4f} at iteration {v_steps[v_best]})"
        )
    if metrics.resumes:
        lines.append(f"resumed      from iteration {', '.join(map(str, metrics.resumes))}")
    if lrs:
        lines.append(f"lr           peak {max(lrs):.3g}, last {lrs[-1]:.3g}")
    if tps:
        lines.append(
            f"throughput   median {statistics.median(tps):,.0f} tokens/s "
            f"(min {min(tps):,.0f}, max {max(tps):,.0f}; first iteration of each run excluded)"
        )
    if gns:
        lines.append(f"grad norm    last {gns[-1]:.3f}, max {max(gns):.3f}")
    seconds, how = train_time(metrics)
    if seconds:
        lines.append(f"train time   {seconds:.1f} s ({how})")
    lines.append(f"sources      {', '.join(metrics.sources)}")
    return "\n".join(lines)


def samples_text(run_dir: Path, *, last: int = 2) -> str:
    """The generations of the last ``last`` sampled iterations (``logger.sample_prompts``), or ''."""
    path = Path(run_dir) / "samples.jsonl"
    if not path.is_file():
        return ""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a run killed mid-write
            continue
        if isinstance(row, dict):
            rows.append(row)
    iterations = sorted({r["iteration"] for r in rows if "iteration" in r})[-last:]
    lines = ["samples      greedy continuations during training (all of them: samples.jsonl)"]
    for iteration in iterations:
        lines.append(f"  iteration {iteration}")
        for r in rows:
            if r.get("iteration") == iteration:
                lines.append(f"    {r.get('prompt', '')!r} -> {r.get('completion', '')!r}")
    return "\n".join(lines)
