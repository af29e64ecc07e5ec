"""Beyond one machine, on one CPU box: the launchers clusters run, started as they start Primus.

- two torchrun agents (``--nnodes 2 --nproc-per-node 1``, c10d rendezvous on localhost), data
  parallel 2 with ``--max-restarts 1``: one worker is SIGKILLed after the checkpoint at iteration
  5; torchrun restarts the group, Primus resumes by itself (``resume auto``) and every loss
  equals the single-process run's (the same maths: DP 2 x micro-batch 4 = 2 micro-batches of 4);
- the process layout ``srun`` makes for 2 nodes x 2 tasks (4 processes, ``SLURM_*`` variables
  only), as ``examples/slurm/train_srun.sbatch`` starts them: data parallel 4 (micro-batch 2:
  losses within 2 % of the single run's, not equal; see the test).

Pipeline parallelism is not here: on a CPU Primus refuses TP / PP / CP (preflight), so a
two-node PP 2 run needs GPUs. The baseline is the session's single-process run
(``conftest.tiny_run``).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.backends.megatron_bridge.conftest import TINY, read_losses
from tests.conftest import REPO

pytestmark = [pytest.mark.megatron, pytest.mark.slow]
TIMEOUT = 600
#: DP changes the order of float sums (gradient all-reduce, micro-batch split), not the maths
REL = 1e-5


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PRIMUS_PATCHES"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as sink:  # a file, not a pipe: nobody has to drain it while we wait
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def _finish(procs: list[subprocess.Popen], logs: list[Path]) -> list[str]:
    deadline = time.time() + TIMEOUT
    try:
        for proc in procs:
            proc.wait(timeout=max(1, deadline - time.time()))
    finally:
        for proc in procs:  # a failed test leaves no training processes behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    texts = [log.read_text() for log in logs]
    for proc, text in zip(procs, texts, strict=True):
        assert proc.returncode == 0, text[-5000:]
    return texts


def torchrun_agents(
    work: Path, run_dir: Path, *overrides: str, max_restarts: int = 0
) -> tuple[list[subprocess.Popen], list[Path]]:
    """Two torchrun agents, one "node" each, meeting at a c10d rendezvous on localhost."""
    endpoint = f"127.0.0.1:{_free_port()}"
    procs, logs = [], []
    for node in range(2):
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
            "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", f"primus-{run_dir.name}",
            "--max-restarts", str(max_restarts), "--monitor-interval", "0.5",
            "-m", "primus.cli.train", "--config", str(TINY), "--run_dir", str(run_dir), *overrides,
        ]  # fmt: skip
        logs.append(work / f"agent{node}.log")
        # torch's shared agent store keeps a failed attempt's keys (pytorch/pytorch#135712)
        procs.append(_start(cmd, work, _env(TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1"), logs[-1]))
    return procs, logs


def _worker_pid(agents: list[subprocess.Popen], rank: int) -> int | None:
    for agent in agents:
        for child in psutil.Process(agent.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if child.environ().get("RANK") == str(rank) and "primus.cli.train" in child.cmdline():
                    return child.pid
    return None


def _rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _tracker(run_dir: Path) -> int:
    path = run_dir / "checkpoints" / "latest_checkpointed_iteration.txt"
    return int(path.read_text() or 0) if path.is_file() else 0


def _wait_for(predicate, agents: list[subprocess.Popen], logs: list[Path], what: str) -> float:
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        if predicate():
            return time.time()
        if any(agent.poll() is not None for agent in agents):
            raise AssertionError(
                f"an agent ended before {what}:\n" + "\n".join(p.read_text()[-3000:] for p in logs)
            )
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _assert_same_losses(run_dir: Path, baseline: Path, iterations: range) -> None:
    ours, single = read_losses(run_dir), read_losses(baseline)
    assert sorted(ours) == list(iterations), sorted(ours)
    for it in iterations:
        assert ours[it] == pytest.approx(single[it], rel=REL), (it, ours[it], single[it])


def _rank0_log(logs: list[str]) -> tuple[str, str]:
    """(the log of the agent whose worker is global rank 0, the other agent's log)."""
    first = [i for i, text in enumerate(logs) if "summary:" in text]
    assert len(first) == 1, "exactly one agent's worker (global rank 0) logs the run summary"
    return logs[first[0]], logs[1 - first[0]]


def test_two_nodes_data_parallel_survive_a_killed_worker_and_resume_with_the_same_losses(tiny_run, tmp_path):
    baseline, _ = tiny_run
    run_dir = tmp_path / "elastic"
    # a checkpoint every 5 iterations: each save (~1-3 s on a CPU) leaves time to kill mid-run
    agents, logs = torchrun_agents(tmp_path, run_dir, "checkpoint.save_interval=5", max_restarts=1)
    try:
        _wait_for(lambda: (run_dir / "config.yaml").is_file(), agents, logs, "the run's setup")
        # the run-dir lock (global rank 0 holds it): a second run on the directory is refused
        second = subprocess.Popen(
            [sys.executable, "-m", "primus", "train", "--config", str(TINY), "--run_dir", str(run_dir)],
            cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        _wait_for(lambda: _worker_pid(agents, rank=1) is not None, agents, logs, "the rank-1 worker")
        victim = _worker_pid(agents, rank=1)  # found now: the kill below is not slowed by the search
        _wait_for(lambda: second.poll() is not None and _tracker(run_dir) == 5, agents, logs, "checkpoint 5")
        os.kill(victim, signal.SIGKILL)
        killed = time.time()
        assert len(_rows(run_dir)) < 20, "the kill came after the last iteration"
        resumed = _wait_for(
            lambda: any(r.get("resumed_from") == 5 for r in _rows(run_dir)), agents, logs, "the resumed run"
        )
    except BaseException:
        for agent in agents:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(agent.pid, signal.SIGKILL)
        raise
    texts = _finish(agents, logs)
    stderr = second.stderr.read()
    assert second.returncode == 2 and "is in use by another Primus run" in stderr, stderr
    recovery = resumed - killed  # SIGKILL -> the first iteration of the restarted group is done
    (tmp_path / "recovery_seconds.txt").write_text(f"{recovery:.1f}\n")
    print(f"recovery: SIGKILL of a worker -> training again after {recovery:.1f} s")
    _assert_same_losses(run_dir, baseline, range(1, 21))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["data_parallel_size"] == 2 and summary["resumes"] == [5]
    assert (summary["start_iteration"], summary["last_iteration"]) == (5, 20)
    rank0, other = _rank0_log(texts)
    assert "resume auto, from the run's last checkpoint if any" in rank0
    assert "resume auto: resuming from the checkpoint at iteration 5" in rank0
    # logs from global rank 0 only: neither Primus's progress nor Megatron's report on the other
    assert "iter 20/20 | loss " in rank0 and "iter 20/20" not in other and "lm loss:" not in other
    assert recovery < 300


def _slurm_job_id() -> str:
    """A job id whose default rendezvous port (29500 + id % 10000) is free on this box."""
    for _ in range(100):
        job = random.randrange(10_000, 99_999)
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind(("127.0.0.1", 29500 + job % 10000))
            return str(job)
    raise AssertionError("no free port")


@pytest.mark.nightly  # long; `make test-nightly`
def test_srun_layout_two_nodes_two_tasks_each_trains_with_the_single_process_losses(tiny_run, tmp_path):
    """What ``srun`` starts for ``--nodes 2 --ntasks-per-node 2``: 4 processes, ``SLURM_*`` only."""
    baseline, _ = tiny_run
    run_dir = tmp_path / "srun"
    job = _slurm_job_id()
    procs, logs = [], []
    for rank in range(4):
        node, local = divmod(rank, 2)
        env = _env(
            SLURM_JOB_ID=job, SLURM_PROCID=str(rank), SLURM_NTASKS="4", SLURM_LOCALID=str(local),
            SLURM_NODEID=str(node), SLURM_NTASKS_PER_NODE="2(x2)", SLURM_JOB_NUM_NODES="2",
            SLURM_NNODES="2", SLURM_JOB_NODELIST="localhost,127.0.0.1",
        )  # fmt: skip
        cmd = [sys.executable, "-m", "primus", "train", "--config", str(TINY), "--run_dir", str(run_dir)]
        # DP 4 x micro-batch 2: the samples of the single run's 2 micro-batches of 4, 20 iterations
        cmd += ["train.micro_batch_size=2"]
        logs.append(tmp_path / f"task{rank}.log")
        procs.append(_start(cmd, tmp_path, env, logs[-1]))
    texts = _finish(procs, logs)
    # the same samples in each step, but micro-batches of 2, not 4: Megatron averages per
    # micro-batch, and mock data's end-of-document masks make the token counts differ
    ours, single = read_losses(run_dir), read_losses(baseline)
    assert sorted(ours) == list(range(1, 21)) and ours[20] < 0.75 * ours[1], ours
    for it in range(1, 21):
        assert ours[it] == pytest.approx(single[it], rel=0.02), (it, ours[it], single[it])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["data_parallel_size"] == 4, summary
    assert "summary:" in texts[0] and not any("summary:" in text for text in texts[1:])  # global rank 0 only
