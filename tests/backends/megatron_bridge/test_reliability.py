"""Faults a cluster produces, injected for real on CPU: SIGTERM, SIGKILL, torn checkpoints, two runs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

pytestmark = [pytest.mark.megatron, pytest.mark.slow]
TINY = str(REPO / "primus" / "configs" / "tiny_llama.yaml")
LONG = ["train.train_iters=3000", "scheduler.lr_decay_iters=3000", "logger.log_interval=1"]


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "primus", "train", "--config", TINY, "--run_dir", str(run_dir), *LONG, *extra],
        cwd=run_dir.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: kill_group reaches checkpoint writers too
    )


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the run and every process it spawned, as a scheduler killing a job would."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"process ended early ({proc.returncode}): {proc.stderr.read()[-3000:]}")
        time.sleep(0.05)
    kill_group(proc)
    raise AssertionError("timed out")


def iterations(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def tracker(run_dir: Path) -> int | None:
    path = run_dir / "checkpoints" / "latest_checkpointed_iteration.txt"
    return int(path.read_text()) if path.exists() else None


def resume(run_dir: Path, iters: int):
    out = run_cli(
        "train",
        "--config",
        TINY,
        "--run_dir",
        str(run_dir),
        "--resume",
        f"train.train_iters={iters}",
        f"scheduler.lr_decay_iters={iters}",
        cwd=run_dir.parent,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads((run_dir / "summary.json").read_text()), out


def test_sigterm_saves_a_checkpoint_and_exits_143(tmp_path):
    run_dir = tmp_path / "term"
    proc = start(run_dir, "checkpoint.save_interval=100000")
    wait_for(lambda: iterations(run_dir) >= 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=240)
    kill_group(proc)  # no-op unless a spawned writer outlived the run
    assert proc.returncode == 143, stderr[-3000:]
    assert "primus: stopped: SIGTERM at iteration" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr and "Pretrain failed" not in stderr
    saved = tracker(run_dir)
    assert saved is not None and saved >= 3
    summary, _ = resume(run_dir, saved + 2)
    assert summary["start_iteration"] == saved and summary["last_iteration"] == saved + 2


def test_ctrl_c_saves_a_checkpoint_at_the_iteration_boundary_and_exits_130(tmp_path):
    run_dir = tmp_path / "int"
    proc = start(run_dir, "checkpoint.save_interval=100000")
    wait_for(lambda: iterations(run_dir) >= 5, proc)
    os.kill(proc.pid, signal.SIGINT)  # the process only, as a terminal's Ctrl-C reaches Python
    _, stderr = proc.communicate(timeout=240)
    kill_group(proc)
    assert proc.returncode == 130, stderr[-3000:]
    stopped = re.search(r"primus: stopped: SIGINT at iteration (\d+)", stderr)
    assert stopped and "--resume" in stderr, stderr[-3000:]
    assert "Traceback" not in stderr
    assert tracker(run_dir) == int(stopped.group(1)) >= 5


def test_sigterm_before_the_first_iteration_stops_at_once(tmp_path):
    run_dir = tmp_path / "early"
    proc = start(run_dir)
    wait_for(lambda: (run_dir / "config.yaml").exists(), proc)
    time.sleep(3)  # Megatron is initialising (~15 s on a CPU): no iteration has run
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        kill_group(proc)
    assert time.time() - sent < 15, (
        f"took {time.time() - sent:.0f} s to stop"
    )  # old code: until the first iteration
    assert proc.returncode == 143, stderr[-3000:]
    assert "primus: stopped: SIGTERM before training started: nothing to save" in stderr
    assert "Traceback" not in stderr
    assert iterations(run_dir) == 0 and tracker(run_dir) is None


def test_sigkill_then_resume_from_last_complete_checkpoint(tmp_path):
    run_dir = tmp_path / "kill"
    proc = start(run_dir, "checkpoint.save_interval=4")
    wait_for(lambda: (tracker(run_dir) or 0) >= 4 and iterations(run_dir) >= 6, proc)
    kill_group(proc)
    saved = tracker(run_dir)
    assert saved is not None and saved % 4 == 0
    # A torn write of the next checkpoint (the process died while writing it): the tracker was
    # not updated, so the resume must load the last complete checkpoint.
    torn = run_dir / "checkpoints" / f"iter_{saved + 4:07d}"
    torn.mkdir(exist_ok=True)
    (torn / "__0_0.distcp").write_bytes(b"\x00" * 100)
    summary, _ = resume(run_dir, saved + 2)
    assert summary["start_iteration"] == saved and summary["last_iteration"] == saved + 2


def test_second_run_on_the_same_directory_is_refused(tmp_path):
    run_dir = tmp_path / "busy"
    proc = start(run_dir)
    try:
        wait_for(lambda: iterations(run_dir) >= 1, proc)
        before = (run_dir / "config.yaml").stat().st_mtime_ns
        out = run_cli("train", "--config", TINY, "--run_dir", str(run_dir), cwd=tmp_path)
        assert out.returncode == 2
        assert (
            f"run_dir: run directory {run_dir} is in use by another Primus run (pid {proc.pid})" in out.stderr
        )
        assert (run_dir / "config.yaml").stat().st_mtime_ns == before
    finally:
        kill_group(proc)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--resume"], "resume (cli): nothing to resume: {run}/checkpoints has no checkpoint"),
        (["--run_dir", "{tmp}/a_file/run"], "run_dir (cli): {tmp}/a_file/run is not writable"),
        (["model.num_attention_heads=3"], "num_attention_heads=3"),
        (["mixed_precision=bf16_with_fp8_delayed_scaling_mixed"], "needs Transformer Engine"),
    ],
)
def test_preflight_refuses_before_writing_anything(tmp_path, args, message):
    (tmp_path / "a_file").write_text("x")
    run_dir = tmp_path / "run"
    args = [a.format(tmp=tmp_path) for a in args]
    if "--run_dir" not in args:
        args = ["--run_dir", str(run_dir), *args]
    out = run_cli("train", "--config", TINY, *args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-3000:]
    assert message.format(tmp=tmp_path, run=run_dir) in out.stderr
    assert "Traceback" not in out.stderr
    assert not run_dir.exists()
