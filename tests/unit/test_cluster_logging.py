"""Console lines in a job of several nodes: rank 0 logs; another rank's errors say node and rank."""

from __future__ import annotations

import logging

import pytest

from primus.cli.common import _launcher_node
from primus.core.logging_setup import setup_logging


@pytest.fixture
def console(capsys):
    def emit(rank: int, node: int | None, *, log_all_ranks: bool = False) -> str:
        setup_logging(rank, node=node, log_all_ranks=log_all_ranks)
        log = logging.getLogger("primus.test")
        log.info("hello")
        log.error("broken")
        return capsys.readouterr().err

    yield emit
    setup_logging(0)


def test_rank_zero_logs_untagged(console):
    err = console(0, 1)
    assert "[primus] " in err and "hello" in err and " r0]" not in err


def test_other_ranks_print_only_errors_tagged_with_node_and_rank(console):
    err = console(9, 1)
    assert "hello" not in err
    assert "[primus n1 r9] " in err and "broken" in err


def test_log_all_ranks_tags_every_line(console):
    err = console(3, None, log_all_ranks=True)
    assert "[primus r3] " in err and "hello" in err


@pytest.mark.parametrize(
    "env,node",
    [
        ({"GROUP_RANK": "1", "LOCAL_WORLD_SIZE": "8", "WORLD_SIZE": "16"}, 1),  # torchrun, 2 nodes
        ({"GROUP_RANK": "0", "LOCAL_WORLD_SIZE": "8", "WORLD_SIZE": "8"}, None),  # one node
        ({"SLURM_NODEID": "3", "SLURM_JOB_NUM_NODES": "4"}, 3),
        ({"SLURM_NODEID": "0", "SLURM_JOB_NUM_NODES": "1"}, None),
        ({}, None),
    ],
)
def test_node_index_comes_from_the_launcher(monkeypatch, env, node):
    for name in ("GROUP_RANK", "LOCAL_WORLD_SIZE", "WORLD_SIZE", "SLURM_NODEID", "SLURM_JOB_NUM_NODES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _launcher_node() == node
