"""End to end on CPU: `primus train` as a subprocess drives Megatron-Bridge's real pretrain()."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backends.megatron_bridge.conftest import TINY, read_losses
from tests.conftest import REPO

pytestmark = [pytest.mark.megatron, pytest.mark.slow]


def test_tiny_llama_trains_and_loss_falls(tiny_run):
    run_dir, out = tiny_run
    losses = read_losses(run_dir)
    assert sorted(losses) == list(range(1, 21))
    assert losses[20] < 0.75 * losses[1], losses
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["last_iteration"] == 20 and summary["tokens_per_second"] > 0
    assert (run_dir / "checkpoints" / "iter_0000010").is_dir()
    assert (run_dir / "checkpoints" / "iter_0000020").is_dir()
    assert (run_dir / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "20"
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    config = (run_dir / "config.yaml").read_text()
    assert "num_layers: 2  # " in config and "tiny_llama.yaml:" in config
    assert "ffn_hidden_size: 256  # derived:llama_ffn(multiple_of=256)" in config
    assert "precision    fp32 (CPU: development / smoke-test mode)" in out.stderr
    (patches,) = [line for line in out.stderr.splitlines() if line.startswith("  patches ")]
    assert "te_free_model" in patches and "cpu_execution" in patches
    assert "patch megatron_bridge.te_free_model applied" in (run_dir / "primus.log").read_text()
    # the console is a short story: summary, progress lines, closing summary; Megatron's own
    # reports and the lines that do not apply to a CPU run are in the run directory only
    lines = out.stderr.splitlines()
    first_progress = next(i for i, line in enumerate(lines) if "iter 5/20 | loss " in line)
    assert first_progress < 20, "\n".join(lines[:first_progress])
    assert "iter 20/20 | loss " in out.stderr and "ETA" in out.stderr
    for noise in ("GPU utilization", "MODEL_TFLOP", "FlexAttention", "Deleting CUDA graphs", "memory (GB)"):
        assert noise not in out.stderr + out.stdout, noise
    assert "GPU utilization" in (run_dir / "megatron.log").read_text()
    assert "summary:" in out.stderr and "run directory" in out.stderr


def test_resume_continues_with_the_same_losses(tiny_run, tmp_path):
    from tests.conftest import run_cli

    full_dir, _ = tiny_run
    run_dir = tmp_path / "resumed"
    first = run_cli(
        "train", "--config", str(TINY), "--run_dir", str(run_dir), "train.exit_interval=10", cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert (run_dir / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "10"
    second = run_cli("train", "--config", str(TINY), "--run_dir", str(run_dir), "--resume", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["start_iteration"] == 10 and summary["last_iteration"] == 20
    resumed, uninterrupted = read_losses(run_dir), read_losses(full_dir)
    for it in range(11, 21):
        assert resumed[it] == pytest.approx(uninterrupted[it], rel=1e-5, abs=1e-6), it


def test_dry_run_writes_nothing_and_shows_sources(tmp_path):
    from tests.conftest import run_cli

    run_dir = tmp_path / "dry"
    out = run_cli(
        "train",
        "--config",
        str(TINY),
        "--run_dir",
        str(run_dir),
        "--dry-run",
        "--full",
        "train.train_iters=3",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    # the summary block, then (--full) the whole tree with sources
    assert "  model        2 layers, hidden 64, 4 heads / 2 KV groups, FFN 256, vocab 256" in out.stdout
    assert "  training     3 iterations x global batch 8" in out.stdout
    assert "te_placeholder" in next(line for line in out.stdout.splitlines() if line.startswith("  patches "))
    assert "train_iters: 3  # cli" in out.stdout
    assert "kv_channels: 16  # derived:hidden_size/num_attention_heads" in out.stdout
    assert "transformer_impl: local  # patch:megatron_bridge.te_free_model" in out.stdout
    assert not run_dir.exists()


def _train_with_distributed_optimizer(run_dir: Path, *extra: str) -> subprocess.Popen:
    script = Path(__file__).with_name("distributed_optimizer_on_cpu.py")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PRIMUS_PATCHES": ""}
    cmd = [sys.executable, str(script), "--config", str(TINY), "--run_dir", str(run_dir), "--device", "cpu"]
    cmd += ["train.train_iters=8", "checkpoint.save_interval=4", *extra]
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        cmd, cwd=run_dir.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    return stdout, stderr


def test_resume_with_megatrons_distributed_optimizer_repeats_the_uninterrupted_losses(tmp_path):
    """Megatron-Core's TE-free DistributedOptimizer checkpoint path, as GPUs without TE run it:
    unpatched, a resume crashes (``assert len(steps) == 1`` on the empty optimizer state) and,
    past that, restarts Adam's step counters from the template; patched
    (``megatron_bridge.distopt_te_free_checkpoint``) it repeats the uninterrupted losses."""
    run_dir = tmp_path / "resumed"
    # the uninterrupted run and the first half run side by side (one core each)
    full, first = (
        _train_with_distributed_optimizer(tmp_path / "full"),
        _train_with_distributed_optimizer(run_dir, "train.exit_interval=4"),
    )
    _finish(full)
    _finish(first)
    # Bridge's optimizer summary (Megatron's own output goes to the run's megatron.log)
    assert "use_distributed_optimizer: True" in (tmp_path / "full" / "megatron.log").read_text()
    _finish(_train_with_distributed_optimizer(run_dir, "--resume"))
    assert "patch megatron_bridge.distopt_te_free_checkpoint applied" in (run_dir / "primus.log").read_text()
    resumed, uninterrupted = read_losses(run_dir), read_losses(tmp_path / "full")
    assert sorted(resumed) == list(range(1, 9))
    for it in range(5, 9):
        assert resumed[it] == pytest.approx(uninterrupted[it], rel=1e-5, abs=1e-6), it
