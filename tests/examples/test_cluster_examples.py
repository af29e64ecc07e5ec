"""The cluster examples (Slurm batch scripts, a Kubeflow PyTorchJob) pass shellcheck / parse, and
the Primus command in each is one the CLI accepts. Their process layouts train for real in
tests/backends/megatron_bridge/test_multinode.py. Fast: no Megatron."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest
import yaml

from primus.cli.common import parse
from primus.cli.train import build_parser
from tests.conftest import REPO

SLURM = REPO / "examples" / "slurm"
PYTORCHJOB = REPO / "examples" / "kubernetes" / "pytorchjob.yaml"
SBATCH = ("train.sbatch", "train_srun.sbatch")


def _primus_args(argv: list[str]) -> list[str]:
    """The arguments after ``-m primus.cli.train`` in a launch command."""
    i = argv.index("primus.cli.train")
    assert argv[i - 1] == "-m", argv
    return argv[i + 1 :]


def _check_primus_command(args: list[str], env: dict[str, str]) -> None:
    args = [re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)), a) for a in args]
    args = [a for a in args if a != '"$@"' and a != "$@"]
    parsed = parse(build_parser(), args)  # argparse exits 2 on anything it does not know
    assert (REPO / parsed.config).is_file(), parsed.config
    assert parsed.run_dir and parsed.resume == "auto"


def _sbatch_command(text: str) -> list[str]:
    """The srun command of a batch script, continuation lines joined, split as the shell does."""
    joined = re.sub(r"\\\n\s*", " ", text)
    (line,) = [ln for ln in joined.splitlines() if ln.startswith("srun ")]
    return shlex.split(line, posix=False)


def _sbatch_defaults(text: str) -> dict[str, str]:
    """``NAME=${NAME:-default}`` lines -> {NAME: default} (enough to resolve the command)."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^(\w+)=\$\{\w+:-([^}]*)\}", text, re.M)}


def test_slurm_scripts_pass_shellcheck():
    shellcheck = REPO / ".venv" / "bin" / "shellcheck"
    assert shellcheck.exists(), "shellcheck is missing: it is pinned in requirements/dev.txt (make setup)"
    out = subprocess.run(
        [str(shellcheck), *(str(SLURM / name) for name in SBATCH)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout


@pytest.mark.parametrize("name", SBATCH)
def test_slurm_script_runs_a_primus_command_the_cli_accepts(name):
    text = (SLURM / name).read_text()
    assert text.startswith("#!/bin/bash\n") and "#SBATCH --nodes=" in text
    argv = [a.strip('"') for a in _sbatch_command(text)]
    _check_primus_command(_primus_args(argv), _sbatch_defaults(text))
    if name == "train.sbatch":  # one torchrun agent per node, c10d on the first host, restarts
        assert "#SBATCH --ntasks-per-node=1" in text
        for flag in ("--rdzv-backend", "--rdzv-endpoint", "--max-restarts", "--nnodes"):
            assert flag in argv, flag
        assert argv[argv.index("--rdzv-backend") + 1] == "c10d"
        assert "scontrol show hostnames" in text
        assert "export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in text  # restarts need a fresh store
    else:  # one task per GPU: no torchrun, Primus reads SLURM_*
        assert "torchrun" not in " ".join(argv) and "#SBATCH --ntasks-per-node=8" in text


def test_pytorchjob_parses_and_runs_a_primus_command_the_cli_accepts():
    job = yaml.safe_load(PYTORCHJOB.read_text())
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    spec = job["spec"]
    worker = spec["pytorchReplicaSpecs"]["Worker"]
    elastic = spec["elasticPolicy"]
    assert elastic["rdzvBackend"] == "c10d" and elastic["maxRestarts"] >= 1
    assert elastic["minReplicas"] <= worker["replicas"] <= elastic["maxReplicas"]
    (container,) = worker["template"]["spec"]["containers"]
    assert container["name"] == "pytorch"  # the container the operator gives its PET_* variables
    assert int(spec["nprocPerNode"]) == container["resources"]["limits"]["nvidia.com/gpu"]
    assert {"name": "TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "value": "1"} in container["env"]
    command = container["command"]
    assert command[0].endswith("torchrun")
    _check_primus_command(_primus_args(command), {})
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    run_dir = command[command.index("--run_dir") + 1]
    assert any(run_dir.startswith(path + "/") for path in mounts), "the run dir must be on the shared volume"
