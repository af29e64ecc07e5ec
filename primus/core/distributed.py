"""Who am I in the job: rank, world size, local rank and rendezvous, from torchrun or Slurm.

Resolution order: torchrun variables (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``...), then Slurm
(``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID``/``SLURM_JOB_NODELIST``), then one
process with a free local port. Values that contradict each other are a user error.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Literal

from primus.core.errors import PrimusUserError, Problem

Launcher = Literal["torchrun", "slurm", "single"]
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
DEFAULT_SLURM_PORT_BASE = 29500


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str
    master_port: int
    launcher: Launcher

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def export(self, environ: MutableMapping[str, str] | None = None) -> None:
        """Write the torch.distributed ``env://`` variables (for Slurm and single runs)."""
        env = os.environ if environ is None else environ
        env.update(
            RANK=str(self.rank),
            WORLD_SIZE=str(self.world_size),
            LOCAL_RANK=str(self.local_rank),
            LOCAL_WORLD_SIZE=str(self.local_world_size),
            MASTER_ADDR=self.master_addr,
            MASTER_PORT=str(self.master_port),
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def first_slurm_host(nodelist: str) -> str:
    """First host of a Slurm node list: ``gpu[003-005,9],cpu1`` -> ``gpu003``."""
    match = re.match(r"^([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not match:
        raise ValueError(f"cannot parse node list {nodelist!r}")
    prefix, ranges = match.group(1), match.group(2)
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def resolve_dist_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    env = os.environ if environ is None else environ
    problems: list[Problem] = []

    def integer(name: str, source: str) -> int:
        text = env.get(name, "")
        try:
            return int(text)
        except ValueError:
            problems.append(Problem(f"must be an integer, got {text!r}", key=name, source=source))
            return 0

    present = [name for name in _TORCHRUN_VARS if name in env]
    if present:
        missing = [name for name in _TORCHRUN_VARS if name not in env]
        if missing:
            raise PrimusUserError(
                f"{', '.join(present)} set but {', '.join(missing)} missing",
                source="environment",
                hint="launch with torchrun, or set RANK, WORLD_SIZE and LOCAL_RANK together",
            )
        rank, world, local = (integer(n, "torchrun environment") for n in _TORCHRUN_VARS)
        local_world = (
            integer("LOCAL_WORLD_SIZE", "torchrun environment") if "LOCAL_WORLD_SIZE" in env else world
        )
        addr = env.get("MASTER_ADDR", "127.0.0.1")
        port = integer("MASTER_PORT", "torchrun environment") if "MASTER_PORT" in env else 29500
        launcher: Launcher = "torchrun"
    elif "SLURM_PROCID" in env:
        src = "Slurm environment"
        rank = integer("SLURM_PROCID", src)
        world = integer("SLURM_NTASKS", src) if "SLURM_NTASKS" in env else 1
        local = integer("SLURM_LOCALID", src) if "SLURM_LOCALID" in env else 0
        per_node = env.get("SLURM_NTASKS_PER_NODE", "").split("(")[0]
        local_world = int(per_node) if per_node.isdigit() else world
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or "127.0.0.1"
        try:
            addr = env.get("MASTER_ADDR") or first_slurm_host(nodelist)
        except ValueError as exc:
            problems.append(Problem(str(exc), key="SLURM_JOB_NODELIST", source=src))
            addr = "127.0.0.1"
        job = env.get("SLURM_JOB_ID", "0")
        default_port = DEFAULT_SLURM_PORT_BASE + (int(job) % 10000 if job.isdigit() else 0)
        port = integer("MASTER_PORT", src) if "MASTER_PORT" in env else default_port
        launcher = "slurm"
    else:
        return DistEnv(0, 1, 0, 1, "127.0.0.1", free_port(), "single")

    if not problems:
        problems += _consistency(rank, world, local, local_world, port, launcher)
    if problems:
        raise PrimusUserError(problems)
    return DistEnv(rank, world, local, local_world, addr, port, launcher)


def _consistency(
    rank: int, world: int, local: int, local_world: int, port: int, launcher: str
) -> list[Problem]:
    src = f"{launcher} environment"
    out = []
    if world < 1:
        out.append(Problem(f"world size must be >= 1, got {world}", key="WORLD_SIZE", source=src))
    if not 0 <= rank < max(world, 1):
        out.append(Problem(f"rank {rank} is outside [0, {world})", key="RANK", source=src))
    if local_world < 1 or local_world > max(world, 1):
        out.append(
            Problem(
                f"local world size {local_world} must be in [1, {world}]", key="LOCAL_WORLD_SIZE", source=src
            )
        )
    elif not 0 <= local < local_world:
        out.append(Problem(f"local rank {local} is outside [0, {local_world})", key="LOCAL_RANK", source=src))
    if not 0 < port < 65536:
        out.append(Problem(f"port {port} is outside 1..65535", key="MASTER_PORT", source=src))
    return out
