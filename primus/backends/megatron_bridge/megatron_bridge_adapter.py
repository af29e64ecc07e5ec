"""MegatronBridgeAdapter: patches, argument building and preflight for one run."""

from __future__ import annotations

import logging

from primus.backends.megatron_bridge import NAME, capabilities, preflight, tracking
from primus.backends.megatron_bridge.argument_builder import BuiltConfig, MegatronBridgeArgBuilder
from primus.backends.megatron_bridge.log_noise import quiet_third_party_noise
from primus.backends.megatron_bridge.resume import latest_checkpoint, resolve_auto, schedule_note
from primus.backends.megatron_bridge.run_summary import run_plan
from primus.core.backend import BackendAdapter
from primus.core.errors import PrimusUserError
from primus.core.patches import run_patches
from primus.core.run_context import RunContext

logger = logging.getLogger(__name__)

_PRETRAIN = (
    "primus.backends.megatron_bridge.megatron_bridge_pretrain_trainer",
    "MegatronBridgePretrainTrainer",
)
_FINETUNE = (
    "primus.backends.megatron_bridge.megatron_bridge_finetune_trainer",
    "MegatronBridgeFinetuneTrainer",
)
#: workload -> the trainer that runs it (imported when a run needs it)
TRAINERS = {"pretrain": _PRETRAIN, "sft": _FINETUNE, "lora": _FINETUNE, "dora": _FINETUNE}


class MegatronBridgeAdapter(BackendAdapter):
    name = NAME

    def prepare_environment(self, ctx: RunContext) -> None:
        """Export the rendezvous variables and run the ``setup`` patches (before any Megatron import)."""
        resolve_auto(ctx.config)  # resume: auto -> true / false, before the earlier-run check
        earlier = preflight.check_earlier_run(ctx.config)
        if earlier and ctx.dry_run:
            logger.warning("the run itself would be refused: %s", earlier.problems[0])
        elif earlier:
            raise PrimusUserError(earlier.problems)
        tracking.check_user_config(ctx.config).raise_if_any()  # W&B / MLflow that cannot log
        ctx.dist.export()
        quiet_third_party_noise()
        run_patches("setup", ctx.patches)

    def build_config(self, ctx: RunContext, *, preflight_checks: bool = True) -> BuiltConfig:
        """The ConfigContainer for this run; ``preflight_checks=False`` only describes it (recipes show)."""
        built = MegatronBridgeArgBuilder(
            ctx.config, ctx.env, ctx.dist.world_size, describe_only=not preflight_checks
        ).build()
        ctx.patches.native_config = built
        problems = preflight.check_requested(built.container, built.view(), ctx.env)
        run_patches("build_args", ctx.patches)
        if not preflight_checks:
            return built
        problems.extend(preflight.check(built.container, built.view(), ctx.env, ctx.dist.world_size).problems)
        if problems:
            raise PrimusUserError(problems.problems)
        saved = latest_checkpoint(built.container.checkpoint.load)
        note = schedule_note(built.container, saved) if saved else None
        if note:
            logger.info("%s", note)
        return built

    def describe(self, ctx: RunContext, native_config: BuiltConfig) -> str:
        """``--dry-run``: the summary block; with ``--full`` / ``--verbose`` the whole tree too."""
        header = f"# primus train --dry-run: framework {NAME}, device {ctx.env.device}, world size {ctx.dist.world_size}\n"
        text = header + self.summary(ctx, native_config) + "\n"
        if ctx.verbose:
            return text + native_config.view().to_yaml()
        return text + "# the whole config, every value with its source: add --full\n"

    def summary(self, ctx: RunContext, built: BuiltConfig, *, with_run_dir: bool = True) -> str:
        return run_plan(built, ctx, with_run_dir=with_run_dir)

    def recipes(self) -> capabilities.Recipes:
        return capabilities.Recipes()

    def conversion(self) -> capabilities.Conversion:
        return capabilities.Conversion()

    def data_preparation(self) -> capabilities.DataPreparation:
        return capabilities.DataPreparation()

    def inference(self) -> capabilities.Inference:
        return capabilities.Inference()

    def create_trainer(self, ctx: RunContext, native_config: BuiltConfig):
        """The trainer of the build's workload (TRAINERS: workload -> module, class)."""
        import importlib

        module, cls = TRAINERS[native_config.workload]
        return getattr(importlib.import_module(module), cls)(ctx, native_config)
