"""Validation loss and resumed runs in metrics.jsonl, summary.json and `primus report`.

Fast tests use hand-written run directories and stand-ins for Bridge's callback context; one
slow test trains the tiny model with validation on and reports on it."""

from __future__ import annotations

import argparse
import json
import re
from types import SimpleNamespace

import pytest

from primus.report.run_report import load_run, smooth
from tests.conftest import REPO


def write_rows(run_dir, rows):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def row(iteration, loss, seconds=1.0, **extra):
    return {"iteration": iteration, "loss": loss, "lr": 1e-3, "grad_norm": 1.0, "seconds": seconds,
            "tokens_per_second": 512 / seconds, **extra}  # fmt: skip


def report(run_dir, capsys):
    from primus.cli.report_cmd import report as report_command

    assert report_command(argparse.Namespace(run_dir=str(run_dir), out=None)) == 0
    capsys.readouterr()
    return (run_dir / "report.txt").read_text()


def resumed_run_dir(tmp_path):
    """Run 1 trained 1..12 and was killed after its checkpoint at 8; run 2 resumed at 8 and
    repeated 9..12 (as Primus wrote metrics.jsonl before it recorded resume points)."""
    first = [row(i, 10.0 / i, seconds=1.0) for i in range(1, 13)]
    second = [row(i, 9.0 / i, seconds=2.0) for i in range(9, 21)]
    write_rows(tmp_path, first + second)
    (tmp_path / "summary.json").write_text(json.dumps({"train_seconds": 24.5, "start_iteration": 8}))
    return tmp_path


def test_a_resume_reads_as_one_run_the_later_row_winning(tmp_path, capsys):
    run_dir = resumed_run_dir(tmp_path)
    metrics = load_run(run_dir)
    steps, losses = metrics.get("loss")
    assert steps == list(range(1, 21))
    assert losses[steps.index(8)] == 10.0 / 8 and losses[steps.index(10)] == 9.0 / 10
    assert metrics.resumes == [8]
    text = report(run_dir, capsys)
    assert "iterations   1 -> 20 (20 logged)" in text
    assert "resumed      from iteration 8" in text


def test_train_time_sums_the_iterations_of_every_run(tmp_path, capsys):
    text = report(resumed_run_dir(tmp_path), capsys)
    # 1..8 from the first run (1 s each), 9..20 from the second (2 s each); summary.json's
    # train_seconds (24.5) covers the last process only
    assert "train time   32.0 s (sum of 20 iteration times, 2 runs)" in text


def test_loss_first_to_last_is_smoothed(tmp_path, capsys):
    losses = [5.0 / i + (0.4 if i % 2 else -0.4) for i in range(1, 21)]
    write_rows(tmp_path, [row(i, loss) for i, loss in enumerate(losses, start=1)])
    first, last = smooth(losses[::-1], 0.5)[-1], smooth(losses, 0.5)[-1]  # 20 points: a span of 2
    assert abs(first - losses[0]) > 0.3  # not the one noisy first iteration
    text = report(tmp_path, capsys)
    assert f"loss         {first:.4f} -> {last:.4f} (smoothed" in text
    assert f"last iteration {losses[-1]:.4f}" in text


def test_validation_series_in_report_txt_and_png(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    rows = [row(i, 5.0 / i) for i in range(1, 21)]
    for r in rows:
        if r["iteration"] % 5 == 0:
            r["validation_loss"] = 6.0 / r["iteration"]
    rows[10]["resumed_from"] = 10
    write_rows(tmp_path, rows)
    figures = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (figures.append(fig), save(fig, *a, **k)))

    text = report(tmp_path, capsys)
    assert "validation   1.2000 -> 0.3000 at iteration 20 (4 evaluations; lowest 0.3000" in text
    assert (tmp_path / "report.png").stat().st_size > 10_000
    loss_axes = figures[0].axes[0]
    curves = {line.get_label(): line for line in loss_axes.get_lines()}
    assert list(curves["validation"].get_xdata()) == [5, 10, 15, 20]
    resume_lines = [line for ax in figures[0].axes for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(resume_lines) == 4 and all(list(line.get_xdata()) == [10, 10] for line in resume_lines)


# --- MetricsRecorder, with stand-ins for Bridge's CallbackContext --------------------------


@pytest.fixture
def recorder_class():
    from primus.backends.megatron_bridge.bootstrap import prepare_imports

    prepare_imports()
    from primus.backends.megatron_bridge.metrics import MetricsRecorder

    return MetricsRecorder


def context(step, **fields):
    defaults = {"optimizer": None, "loss_dict": {"lm loss": 2.0}, "grad_norm": 1.0, "skipped_iter": False}
    return SimpleNamespace(
        state=SimpleNamespace(train_state=SimpleNamespace(step=step)), **{**defaults, **fields}
    )


def file_rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.megatron
def test_recorder_drops_the_rows_after_the_resumed_checkpoint(tmp_path, recorder_class):
    write_rows(tmp_path, [row(i, 5.0 / i) for i in range(1, 9)])
    recorder = recorder_class(tmp_path, tokens_per_iteration=512)
    recorder.on_train_start(context(5))
    assert [r["iteration"] for r in file_rows(tmp_path)] == [1, 2, 3, 4, 5]
    recorder.on_train_step_end(context(5))
    recorder.on_train_end(context(6))
    rows = file_rows(tmp_path)
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[-1]["resumed_from"] == 5 and rows[-1]["loss"] == 2.0
    assert json.loads((tmp_path / "summary.json").read_text())["resumes"] == [5]


@pytest.mark.megatron
def test_recorder_writes_validation_loss_during_and_after_training(tmp_path, recorder_class):
    import torch

    recorder = recorder_class(tmp_path, tokens_per_iteration=512)
    recorder.on_train_start(context(0))
    for step in range(4):
        recorder.on_train_step_end(context(step))
        if step + 1 == 2:  # Megatron evaluates after step 2 (train_state.step is 2 by then)
            recorder.on_eval_start(context(2))
            recorder.on_eval_end(context(2, total_loss_dict={"lm loss": torch.tensor(3.5)}))
    recorder.on_train_end(context(4))
    recorder.on_eval_start(context(4))  # pretrain()'s evaluation after training
    recorder.on_eval_end(context(4, total_loss_dict={"lm loss": torch.tensor(3.25)}))

    rows = file_rows(tmp_path)
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]
    assert [r.get("validation_loss") for r in rows] == [None, 3.5, None, 3.25]
    assert all(r["loss"] == 2.0 for r in rows)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["validation_loss"], summary["validation_iteration"]) == (3.25, 4)
    assert summary["resumes"] == []


# --- end to end ---------------------------------------------------------------------------


@pytest.mark.megatron
@pytest.mark.slow
def test_train_with_validation_then_report(tmp_path):
    from tests.conftest import run_cli

    run_dir = tmp_path / "run"
    tiny = REPO / "primus" / "configs" / "tiny_llama.yaml"
    out = run_cli(
        "train", "--config", str(tiny), "--run_dir", str(run_dir),
        "validation.eval_interval=5", "validation.eval_iters=2", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    # what Megatron printed (to the run's megatron.log):
    # "validation loss at iteration 5 | lm loss value: 4.537965E+00 | ..."
    printed = {
        int(it): float(value)
        for it, value in re.findall(
            r"validation loss at iteration (\d+)(?: on validation set)? \| lm loss value: (\S+)",
            (run_dir / "megatron.log").read_text(),
        )
    }  # the evaluation after training (iteration 20 "on validation set") comes last and wins;
    # "... on test set" is the test split's, not recorded
    assert sorted(printed) == [5, 10, 15, 20]
    # the console's own lines: one per evaluation, and Bridge's evaluation after the loop
    assert len(re.findall(r"validation at iter \d+: loss", out.stderr)) == 4
    assert "validation after training: loss" in out.stderr

    rows = file_rows(run_dir)
    assert [r["iteration"] for r in rows] == list(range(1, 21))
    recorded = {r["iteration"]: r["validation_loss"] for r in rows if "validation_loss" in r}
    assert recorded == pytest.approx(printed, rel=1e-6)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["validation_iteration"] == 20
    assert summary["validation_loss"] == pytest.approx(printed[20], rel=1e-6)

    out = run_cli("report", str(run_dir), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    text = (run_dir / "report.txt").read_text()
    assert f"validation   {printed[5]:.4f} -> {printed[20]:.4f} at iteration 20 (4 evaluations" in text
    assert (run_dir / "report.png").stat().st_size > 10_000
