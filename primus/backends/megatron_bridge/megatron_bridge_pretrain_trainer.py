"""MegatronBridgePretrainTrainer: Megatron-Bridge ``pretrain()`` with its GPT ``forward_step``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from primus.backends.megatron_bridge.argument_builder import BuiltConfig
from primus.backends.megatron_bridge.bridge_errors import DropTranslatedTracebacks, user_error
from primus.backends.megatron_bridge.run_summary import run_plan
from primus.core.errors import RunPreempted
from primus.core.logging_setup import log_to_file
from primus.core.patches import run_patches
from primus.core.run_context import RunContext
from primus.core.run_dir import move_earlier_run_aside
from primus.core.trainer import BaseTrainer

logger = logging.getLogger(__name__)
TRANSLATED = DropTranslatedTracebacks()


@contextlib.contextmanager
def megatron_output(path: Path | None, *, show: bool) -> Iterator[None]:
    """Megatron's own prints (config dump, per-iteration report, timers) go to ``path``.

    The console keeps Primus's progress line and every library's warnings; ``--verbose``
    (``show``) leaves Megatron's output on the console as well. ``path`` None (a rank other
    than 0): dropped, so a job of many ranks logs from global rank 0 only (errors and
    tracebacks go to stderr, which stays).
    """
    if show:
        yield
        return
    with open(path or os.devnull, "a", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
        yield


class MegatronBridgePretrainTrainer(BaseTrainer):
    def __init__(self, ctx: RunContext, built: BuiltConfig) -> None:
        self.ctx = ctx
        self.built = built
        self.container = built.container
        self.run_dir = Path(ctx.run_dir)
        self.metrics = None
        self.summary: dict[str, Any] = {}

    def setup(self) -> None:
        """Create the run directory and record the resolved config (with sources) in it.

        With ``start_over``, an earlier run there (and its checkpoints, wherever they are) is
        moved aside first, on rank 0, before Megatron writes anything.
        """
        if self.ctx.dist.is_main and self.ctx.config.get("start_over", False):
            move_earlier_run_aside(self.run_dir, [Path(self.container.checkpoint.save)])
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.ctx.dist.is_main:
            log_to_file(self.run_dir / "primus.log")
            (self.run_dir / "config.yaml").write_text(self.built.view().to_yaml())
        if self.ctx.verbose:
            logger.info("the resolved config:\n%s", self.built.view().to_yaml())

    def init(self) -> None:
        from primus.backends.megatron_bridge import CONFIG_SECTIONS, tracking
        from primus.backends.megatron_bridge.metrics import MetricsRecorder
        from primus.backends.megatron_bridge.stop_signals import GracefulStop

        run_patches("before_train", self.ctx.patches)
        c = self.container
        self.metrics = MetricsRecorder(self.run_dir, c.train.global_batch_size * c.dataset.seq_length)
        self.signals = GracefulStop(c.train.exit_signal)
        self.tracking = []
        if tracking.enabled(c):  # W&B / MLflow: Bridge logs; Primus adds the config's sources
            tracking.prepare_environment(c)
            self.tracking = [tracking.make_callback(self.built.view(), CONFIG_SECTIONS)]
        self._log_plan()

    def _log_plan(self) -> None:
        """The summary block, once every patch that will apply has applied."""
        plan = run_plan(self.built, self.ctx)
        name = self.built.recipe or self.ctx.config.get("name", None) or self.run_dir.name
        what = "training" if self.built.workload == "pretrain" else f"fine-tuning ({self.built.workload})"
        logger.info("%s %s\n%s", what, name, plan)

    def extra_callbacks(self) -> list[Any]:
        """Bridge callbacks a workload adds to the metrics, signal and progress ones."""
        return []

    def sample_callbacks(self) -> list[Any]:
        """``logger.sample_prompts``: greedy generations every ``logger.sample_interval`` iterations."""
        if self.built.samples is None:
            return []
        from primus.backends.megatron_bridge.training_samples import make_callback

        tokenizer = self.container.tokenizer.tokenizer_model
        return [
            make_callback(self.built.samples, tokenizer, self.run_dir, chat=self.built.workload != "pretrain")
        ]

    def entry_point(self):
        """Bridge's training function for this workload."""
        from megatron.bridge.training.pretrain import pretrain

        return pretrain

    def run_train(self) -> dict[str, Any]:
        from megatron.bridge.training.gpt_step import forward_step

        from primus.backends.megatron_bridge.progress import ProgressLine
        from primus.backends.megatron_bridge.stop_signals import StopBeforeTraining, exit_code

        c = self.container
        progress = ProgressLine(
            c.train.train_iters, c.logger.log_interval, c.train.global_batch_size * c.dataset.seq_length
        )
        bridge_log = logging.getLogger("megatron.bridge.training.pretrain")
        bridge_log.addFilter(TRANSLATED)
        try:
            self.signals.install()
            log = self.run_dir / "megatron.log" if self.ctx.dist.is_main else None
            with megatron_output(log, show=self.ctx.verbose):
                self.entry_point()(
                    c,
                    forward_step,
                    callbacks=[
                        self.metrics,
                        self.signals,
                        progress,
                        *self.tracking,
                        *self.sample_callbacks(),
                        *self.extra_callbacks(),
                    ],
                )
        except (RuntimeError, ValueError, AssertionError) as exc:
            translated = user_error(exc)
            if translated is None:
                raise
            raise translated from None
        except StopBeforeTraining as exc:
            raise RunPreempted(
                f"{signal.Signals(exc.signum).name} before training started: nothing to save",
                exit_code(exc.signum),
            ) from None
        except SystemExit:
            if not self.signals.received:
                raise
            self.summary = self._finish_summary()
            raise RunPreempted(
                f"{signal.Signals(self.signals.received).name} at iteration "
                f"{self.summary.get('last_iteration')}: checkpoint saved in {c.checkpoint.save}; "
                "continue with the same command and --resume",
                exit_code(self.signals.received),
            ) from None
        finally:
            self.signals.uninstall()
            bridge_log.removeFilter(TRANSLATED)
        self.summary = self._finish_summary()
        run_patches("after_train", self.ctx.patches)
        if self.ctx.config.get("convert_to_hf", False):
            self.summary.update(self._export_hf())
        return self.summary

    def _export_hf(self) -> dict[str, str]:
        """--convert_to_hf: the last checkpoint as a HF directory (rank 0, after pretrain()); a
        LoRA run also writes its HF PEFT adapter. A ``chat_template`` the run trained with goes
        into both, so the exported tokenizer renders chats as in training."""
        from primus.backends.megatron_bridge.peft_export import export_finetuned

        cfg = self.ctx.config
        out = Path(cfg.get("hf_export_dir", None) or self.run_dir / "hf")
        exported = {"hf_export": str(out)}
        if self.ctx.dist.is_main:
            self._move_earlier_export_aside(out)
            with megatron_output(self.run_dir / "megatron.log", show=self.ctx.verbose):
                result = export_finetuned(
                    self.container.checkpoint.save,
                    out,
                    hf_source=cfg.get("hf_model_name_or_path"),
                    device=self.ctx.env.device,
                    trust_remote_code=bool(cfg.get("trust_remote_code", False)),
                    single_process=True,
                )
            if getattr(result, "adapter", None):
                exported["hf_adapter"] = str(result.adapter)
            template = cfg.get("chat_template", None)
            for directory in exported.values():
                if template:
                    shutil.copyfile(Path(template).expanduser(), Path(directory) / "chat_template.jinja")
            logger.info("HF export: %s", out)
        return exported

    def _move_earlier_export_aside(self, out: Path) -> None:
        """A resumed run exports again: the earlier export in the run dir goes to ``DIR.old-TIME``."""
        from primus.core.run_dir import aside_name

        if not out.absolute().is_relative_to(self.run_dir.absolute()):
            return  # the user's directory: preflight refused it if it held files
        for path in (out, out.with_name(out.name + "_adapter")):
            if path.is_dir() and any(path.iterdir()):
                moved = path.rename(aside_name(path))
                logger.info("the earlier export %s moved to %s", path, moved)

    def _finish_summary(self) -> dict[str, Any]:
        c = self.container
        self.summary = self.metrics.summary() if self.metrics else {}
        self.summary["checkpoint"] = c.checkpoint.save
        self.summary["run_dir"] = str(self.run_dir)
        return self.summary

    def cleanup(self) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        if self.summary:
            self._log_summary()

    def _log_summary(self) -> None:
        s = self.summary
        tps = s.get("tokens_per_second")
        lines = [
            "summary:",
            f"  iterations     {s.get('start_iteration')} -> {s.get('last_iteration')} ({s.get('iterations_run')} run)",
            f"  loss           {_fmt(s.get('first_loss'))} -> {_fmt(s.get('last_loss'))}",
            f"  throughput     {tps:,.0f} tokens/s" if tps else "  throughput     n/a",
            *(
                [
                    f"  validation     loss {_fmt(s['validation_loss'])} at iteration {s.get('validation_iteration')}"
                ]
                if s.get("validation_loss") is not None
                else []
            ),
            f"  checkpoint     {s.get('checkpoint')}",
            f"  run directory  {s.get('run_dir')} (plots: primus report {s.get('run_dir')})",
            *(
                [f"  HF model       {s['hf_export']} (transformers: AutoModelForCausalLM.from_pretrained)"]
                if s.get("hf_export")
                else []
            ),
            *(
                [
                    f"  HF adapter     {s['hf_adapter']} (peft: PeftModel.from_pretrained(base model, this directory))"
                ]
                if s.get("hf_adapter")
                else []
            ),
        ]
        logger.info("\n".join(lines))
        if self.ctx.dist.is_main:
            (self.run_dir / "summary.json").write_text(json.dumps(s, indent=2) + "\n")


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
