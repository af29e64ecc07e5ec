import pytest

from primus.core.distributed import first_slurm_host, resolve_dist_env
from primus.core.errors import PrimusUserError


def test_single_process_defaults():
    d = resolve_dist_env({})
    assert (d.rank, d.world_size, d.local_rank, d.launcher) == (0, 1, 0, "single")
    assert 0 < d.master_port < 65536


def test_torchrun_variables():
    d = resolve_dist_env(
        {
            "RANK": "3",
            "WORLD_SIZE": "8",
            "LOCAL_RANK": "1",
            "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "node1",
            "MASTER_PORT": "1234",
        }
    )
    assert (d.rank, d.world_size, d.local_rank, d.local_world_size) == (3, 8, 1, 2)
    assert (d.master_addr, d.master_port, d.launcher) == ("node1", 1234, "torchrun")


def test_slurm_variables():
    d = resolve_dist_env(
        {
            "SLURM_PROCID": "5",
            "SLURM_NTASKS": "8",
            "SLURM_LOCALID": "1",
            "SLURM_NTASKS_PER_NODE": "4(x2)",
            "SLURM_JOB_NODELIST": "gpu[003-004],gpu9",
            "SLURM_JOB_ID": "123456",
        }
    )
    assert (d.rank, d.world_size, d.local_rank, d.local_world_size) == (5, 8, 1, 4)
    assert d.master_addr == "gpu003"
    assert d.master_port == 29500 + 123456 % 10000
    assert d.launcher == "slurm"


@pytest.mark.parametrize(
    "nodelist,first",
    [("n1", "n1"), ("n[1-3]", "n1"), ("a[07,09]", "a07"), ("x-y[10-12],z", "x-y10"), ("h1,h2", "h1")],
)
def test_first_slurm_host(nodelist, first):
    assert first_slurm_host(nodelist) == first


def test_export_roundtrip():
    env = {}
    d = resolve_dist_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "n1"})
    d.export(env)
    assert env["RANK"] == "0" and env["WORLD_SIZE"] == "2" and env["MASTER_ADDR"] == "n1"
    assert resolve_dist_env(env).launcher == "torchrun"


@pytest.mark.parametrize(
    "env,message",
    [
        ({"RANK": "0"}, "RANK set but WORLD_SIZE, LOCAL_RANK missing"),
        (
            {"RANK": "4", "WORLD_SIZE": "4", "LOCAL_RANK": "0"},
            "RANK (torchrun environment): rank 4 is outside [0, 4)",
        ),
        ({"RANK": "x", "WORLD_SIZE": "4", "LOCAL_RANK": "0"}, "must be an integer, got 'x'"),
        ({"RANK": "0", "WORLD_SIZE": "0", "LOCAL_RANK": "0"}, "world size must be >= 1"),
        (
            {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"},
            "local rank 2 is outside",
        ),
        ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "3"}, "local world size 3"),
        (
            {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_PORT": "70000"},
            "port 70000 is outside",
        ),
        ({"SLURM_PROCID": "2", "SLURM_NTASKS": "2"}, "rank 2 is outside [0, 2)"),
    ],
)
def test_inconsistent_values_are_user_errors(env, message):
    with pytest.raises(PrimusUserError, match=".*" + __import__("re").escape(message)):
        resolve_dist_env(env)
