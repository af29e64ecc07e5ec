"""The one runtime function behind `primus train`: config -> backend -> lifecycle.

Layering: the CLI registers backends (``primus.backends``) and hands the registry in; this
module never imports a framework itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from primus.core.backend import BACKENDS, BackendRegistry
from primus.core.config import ResolvedConfig, load_config
from primus.core.config.resolved import DEFAULT, derived_source
from primus.core.config.schema import FINETUNE_WORKLOADS, validate_top_level
from primus.core.distributed import resolve_dist_env
from primus.core.environment import detect
from primus.core.errors import PrimusUserError, ProblemCollector
from primus.core.logging_setup import hold_console
from primus.core.run_context import RunContext, TrainRequest
from primus.core.run_lock import RunDirLock
from primus.core.session import open_session
from primus.core.trainer import run_lifecycle

logger = logging.getLogger(__name__)

__all__ = ["RunContext", "TrainRequest", "build_context", "resolve_config", "train"]


def experiment_name(cfg: ResolvedConfig, config_path: str | None) -> str:
    if cfg.get("name", None):
        return cfg.get("name")
    if cfg.get("recipe", None):
        return str(cfg.get("recipe"))
    if config_path:
        return Path(config_path).stem
    if fine_tunes_hf_model(cfg):  # e.g. runs/my-model-lora
        return f"{Path(str(cfg.get('hf_model_name_or_path'))).name}-{cfg.get('workload')}"
    return "primus"


def fine_tunes_hf_model(cfg: ResolvedConfig) -> bool:
    return cfg.get("workload", None) in FINETUNE_WORKLOADS and bool(cfg.get("hf_model_name_or_path", None))


def names_no_model(request: TrainRequest, cfg: ResolvedConfig) -> bool:
    """True when neither a config file, a recipe nor an HF model says what to train."""
    return (
        request.config_path is None
        and not cfg.get("recipe", None)
        and not cfg.get("convert_from_hf", False)
        and not fine_tunes_hf_model(cfg)
    )


def resolve_config(
    request: TrainRequest, registry: BackendRegistry = BACKENDS, environ: Mapping[str, str] | None = None
) -> ResolvedConfig:
    """Load the user's config and check the top level against the chosen backend's sections."""
    cfg = load_config(request.config_path, request.overrides, request.flags, environ)
    spec = registry.spec(cfg.get("framework"), cfg.source_of("framework"))
    if names_no_model(request, cfg) and spec.default_config:
        logger.debug(
            "no --config, --recipe or --convert_from_hf: starting from the embedded tiny model %s "
            "(its values are marked with that file in config.yaml)",
            spec.default_config,
        )
        request.config_path = spec.default_config
        request.embedded_config = True
        cfg = load_config(spec.default_config, request.overrides, request.flags, environ)
    resume_auto_in_restart(cfg, os.environ if environ is None else environ)
    problems = ProblemCollector()
    validate_top_level(cfg, spec.sections, problems)
    problems.raise_if_any()
    if cfg.get("run_dir") is None:
        cfg.set(
            "run_dir",
            str(Path("runs") / experiment_name(cfg, request.config_path)),
            derived_source("run_dir"),
        )
    return cfg


def _number(environ: Mapping[str, str], name: str) -> int:
    value = environ.get(name, "")
    return int(value) if value.isdigit() else 0


def resume_auto_in_restart(cfg: ResolvedConfig, environ: Mapping[str, str]) -> None:
    """Under ``torchrun --max-restarts K`` (K > 0), ``resume`` defaults to ``auto``: a restarted
    worker group continues from the run's last complete checkpoint by itself.

    Not only in a restart (``TORCHELASTIC_RESTART_COUNT > 0``): an agent whose workers were
    healthy restarts them without counting a restart, so its ranks see a count of 0 while the
    failed node's see 1, and every rank must decide alike.
    """
    restarts = _number(environ, "TORCHELASTIC_RESTART_COUNT")
    max_restarts = _number(environ, "TORCHELASTIC_MAX_RESTARTS")
    if not (restarts or max_restarts):
        return
    if environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and max_restarts:
        logger.warning(
            "torchrun --max-restarts with the agent's shared TCPStore: a restarted worker group can "
            "read the failed attempt's addresses and fail to connect (pytorch/pytorch#135712); "
            "start torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 (the Primus examples do)"
        )
    if cfg.source_of("resume") != DEFAULT:
        return
    why = f"torchrun restart {restarts}" if restarts else f"torchrun --max-restarts {max_restarts}"
    cfg.set("resume", "auto", derived_source(why))
    logger.info(
        "%s (TORCHELASTIC_RESTART_COUNT %d): resume auto, from the run's last checkpoint if any",
        why,
        restarts,
    )


def build_context(
    request: TrainRequest, registry: BackendRegistry = BACKENDS, environ: Mapping[str, str] | None = None
) -> RunContext:
    environ = os.environ if environ is None else environ
    cfg = resolve_config(request, registry, environ)
    framework = cfg.get("framework")
    session = open_session(
        framework, env=detect(cfg.get("device")), config=cfg, environ=environ, registry=registry
    )
    dist = resolve_dist_env(environ)
    return RunContext(
        config=cfg,
        dist=dist,
        env=session.env,
        patches=session.patches,
        run_dir=Path(cfg.get("run_dir")),
        dry_run=request.dry_run,
        config_path=request.config_path,
        verbose=request.verbose,
        embedded_config=request.embedded_config,
    )


def train(request: TrainRequest, registry: BackendRegistry = BACKENDS) -> Any:
    """Build the run, then either describe it (dry run) or drive the trainer's lifecycle."""
    with hold_console(drop_on=(PrimusUserError,)):  # a user error prints first and alone
        ctx = build_context(request, registry)
        if not ctx.dry_run and ctx.dist.is_main:
            RunDirLock(ctx.run_dir).check_free()  # a live run there: say so before anything else
        adapter = registry.get(ctx.config.get("framework"))
        adapter.prepare_environment(ctx)
        native = adapter.build_config(ctx)
    if ctx.dry_run:
        print(adapter.describe(ctx, native), end="")
        logger.info("dry run: configuration is valid; nothing was trained or written")
        return None
    trainer = adapter.create_trainer(ctx, native)
    if not ctx.dist.is_main:
        return run_lifecycle(trainer)
    with RunDirLock(ctx.run_dir):  # rank 0 holds it for the job: one run per directory
        return run_lifecycle(trainer)
