"""``--resume auto`` and its default inside a torchrun restart (no Megatron: fast)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from primus.backends.megatron_bridge.resume import TRACKER, resolve_auto
from primus.cli.common import parse
from primus.cli.train import build_parser
from primus.core.config import load_config
from primus.core.errors import PrimusUserError, ProblemCollector
from primus.core.runtime import resume_auto_in_restart


def _config(run_dir: Path, *overrides: str, resume=None):
    return load_config(None, [*overrides], {"run_dir": str(run_dir), "resume": resume})


def _save_checkpoint(directory: Path, iteration: int) -> None:
    (directory / f"iter_{iteration:07d}").mkdir(parents=True)
    (directory / TRACKER).write_text(str(iteration))


@pytest.mark.parametrize(
    "argv,resume,overrides",
    [
        (["--resume"], True, []),
        (["--resume", "auto"], "auto", []),
        (["--resume=auto", "train.train_iters=4"], "auto", ["train.train_iters=4"]),
        (["--resume", "train.train_iters=4"], True, ["train.train_iters=4"]),  # never the flag's value
        ([], None, []),
    ],
)
def test_resume_flag_takes_auto_and_leaves_overrides_alone(argv, resume, overrides):
    args = parse(build_parser(), argv)
    assert args.resume == resume and args.overrides == overrides


def test_resume_auto_with_a_checkpoint_resumes(tmp_path, caplog):
    run_dir = tmp_path / "run"
    _save_checkpoint(run_dir / "checkpoints", 10)
    cfg = _config(run_dir, resume="auto")
    with caplog.at_level(logging.INFO, logger="primus"):
        resolve_auto(cfg)
    assert cfg.get("resume") is True and cfg.get("start_over") is False
    assert cfg.source_of("resume") == "derived:resume auto: checkpoint at iteration 10"
    assert f"resuming from the checkpoint at iteration 10 in {run_dir / 'checkpoints'}" in caplog.text


def test_resume_auto_looks_in_checkpoint_save(tmp_path):
    elsewhere = tmp_path / "ckpts"
    _save_checkpoint(elsewhere, 4)
    cfg = _config(tmp_path / "run", f"checkpoint.save={elsewhere}", resume="auto")
    resolve_auto(cfg)
    assert cfg.get("resume") is True


def test_resume_auto_without_a_checkpoint_starts_fresh(tmp_path, caplog):
    cfg = _config(tmp_path / "run", resume="auto")
    with caplog.at_level(logging.INFO, logger="primus"):
        resolve_auto(cfg)
    assert cfg.get("resume") is False and cfg.get("start_over") is False
    assert "no checkpoint in" in caplog.text and "training from the start" in caplog.text


def test_resume_auto_moves_an_attempt_without_checkpoint_aside(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"iteration": 1, "loss": 5.0}\n')
    cfg = _config(run_dir, resume="auto")
    resolve_auto(cfg)  # an earlier attempt that failed before its first save: moved aside
    assert cfg.get("resume") is False and cfg.get("start_over") is True


def test_explicit_resume_is_left_alone(tmp_path):
    for value in (True, False):
        cfg = _config(tmp_path / "run", resume=value)
        resolve_auto(cfg)
        assert cfg.get("resume") is value


@pytest.mark.parametrize(
    "env,given,expected,line",
    [
        (
            {"TORCHELASTIC_RESTART_COUNT": "1"},
            None,
            "auto",
            "torchrun restart 1 (TORCHELASTIC_RESTART_COUNT 1)",
        ),
        # a healthy agent restarts its workers without counting: the same default there
        (
            {"TORCHELASTIC_RESTART_COUNT": "0", "TORCHELASTIC_MAX_RESTARTS": "3"},
            None,
            "auto",
            "torchrun --max-restarts 3 (TORCHELASTIC_RESTART_COUNT 0): resume auto",
        ),
        ({"TORCHELASTIC_RESTART_COUNT": "0", "TORCHELASTIC_MAX_RESTARTS": "0"}, None, False, None),
        ({"TORCHELASTIC_RESTART_COUNT": "2"}, False, False, None),  # the user's choice stays
    ],
)
def test_torchrun_restarts_default_to_resume_auto(tmp_path, caplog, env, given, expected, line):
    cfg = _config(tmp_path / "run", resume=given)
    with caplog.at_level(logging.INFO, logger="primus"):
        resume_auto_in_restart(cfg, env)
    assert cfg.get("resume") == expected
    assert ("resume auto" in caplog.text) == (line is not None)
    if line:
        assert line in caplog.text


def test_shared_agent_store_with_restarts_is_warned_about(tmp_path, caplog):
    cfg = _config(tmp_path / "run")
    env = {"TORCHELASTIC_MAX_RESTARTS": "1", "TORCHELASTIC_USE_AGENT_STORE": "True"}
    with caplog.at_level(logging.INFO, logger="primus"):
        resume_auto_in_restart(cfg, env)
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="primus"):
        resume_auto_in_restart(cfg, {**env, "TORCHELASTIC_USE_AGENT_STORE": "False"})
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE" not in caplog.text


def test_resume_takes_only_true_false_or_auto(tmp_path):
    from primus.core.config.schema import validate_top_level

    problems = ProblemCollector()
    validate_top_level(_config(tmp_path / "run", "resume=sometimes"), [], problems)
    with pytest.raises(PrimusUserError, match="resume .*invalid value 'sometimes'.*valid: true, false, auto"):
        problems.raise_if_any()
