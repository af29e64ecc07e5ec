"""What one command asked for, and what a backend gets to build and run it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from primus.core.config import ResolvedConfig
from primus.core.distributed import DistEnv
from primus.core.environment import EnvFacts
from primus.core.patches import PatchContext


@dataclass
class TrainRequest:
    """What the user asked for on the command line."""

    config_path: str | None = None
    overrides: list[str] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    #: print the whole resolved config (dry run, start of training) and every library's output
    verbose: bool = False
    #: set when no config, recipe or HF model was named and the backend's tiny default is used
    embedded_config: bool = False


@dataclass
class RunContext:
    """Everything a backend needs to build and run one training job."""

    config: ResolvedConfig
    dist: DistEnv
    env: EnvFacts
    patches: PatchContext
    run_dir: Path
    dry_run: bool = False
    config_path: str | None = None
    verbose: bool = False
    embedded_config: bool = False
