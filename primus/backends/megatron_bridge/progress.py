"""One console line per log interval: iteration, loss, learning rate, speed and time left.

Megatron's own per-iteration report (and its configuration dump, timers and memory lines)
goes to ``RUN_DIR/megatron.log`` unless ``--verbose``; this callback is what the console shows
instead, plus validation losses and saved checkpoints as they happen.
"""

from __future__ import annotations

import logging
import math
import time

from megatron.bridge.training.callbacks import Callback

logger = logging.getLogger("primus.progress")


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _loss(loss_dict) -> float | None:
    if not loss_dict:
        return None
    value = loss_dict.get("lm loss", next(iter(loss_dict.values())))
    value = float(value.item() if hasattr(value, "item") else value)
    return value if math.isfinite(value) else None


class ProgressLine(Callback):
    """Logs ``iter N/T | loss | lr | s/it | tokens/s | ETA`` every ``log_interval`` iterations.

    Speed counts training steps only: the first step (warm-up), evaluations and checkpoint
    saves are left out, so the ETA does not jump after each of them.
    """

    def __init__(self, train_iters: int, log_interval: int, tokens_per_iteration: int) -> None:
        self.train_iters = train_iters
        self.log_interval = max(1, int(log_interval or 1))
        self.tokens_per_iteration = tokens_per_iteration
        self._losses: list[float] = []
        self._window_start: float | None = None
        self._window_iters = 0
        self._paused = 0.0
        self._pause_start: float | None = None
        self._last_step_end: float | None = None
        self._trained = False

    def on_train_start(self, context) -> None:
        self._window_start = None  # the clock starts after the first step (warm-up, first batch)
        start = int(context.state.train_state.step)
        if start:
            logger.info("resumed at iteration %d of %d", start, self.train_iters)

    def on_train_step_end(self, context) -> None:
        iteration = int(context.state.train_state.step) + 1  # the step just finished
        now = self._last_step_end = time.perf_counter()
        loss = _loss(context.loss_dict)
        if loss is not None:
            self._losses.append(loss)
        if self._window_start is None:
            self._window_start = now
        else:
            self._window_iters += 1
        if iteration % self.log_interval and iteration != self.train_iters:
            return
        elapsed = now - self._window_start - self._paused
        per_iter = elapsed / self._window_iters if self._window_iters else 0.0
        parts = [f"iter {iteration}/{self.train_iters}"]
        if self._losses:
            parts.append(f"loss {sum(self._losses) / len(self._losses):.4f}")
        if context.optimizer is not None and getattr(context.optimizer, "param_groups", None):
            parts.append(f"lr {float(context.optimizer.param_groups[0]['lr']):.3g}")
        if context.grad_norm is not None:
            parts.append(f"grad norm {float(context.grad_norm):.3f}")
        if per_iter > 0:
            parts.append(f"{per_iter:.2f} s/it")
            parts.append(f"{self.tokens_per_iteration / per_iter:,.0f} tokens/s")
            parts.append(f"ETA {_duration(per_iter * (self.train_iters - iteration))}")
        logger.info(" | ".join(parts))
        self._losses, self._window_iters, self._paused = [], 0, 0.0
        self._window_start = now

    # evaluation and checkpoint saving are not training time
    def on_eval_start(self, context) -> None:
        self._pause_start = time.perf_counter()

    def on_eval_end(self, context) -> None:
        self._resume_clock()
        loss = _loss(context.total_loss_dict)
        if loss is None:
            return
        ppl = math.exp(min(loss, 50))
        if self._trained:  # Bridge's evaluation after the loop (other batches than the last interval's)
            logger.info("validation after training: loss %.4f, perplexity %.4g", loss, ppl)
        else:
            iteration = int(context.state.train_state.step)
            logger.info("validation at iter %d: loss %.4f, perplexity %.4g", iteration, loss, ppl)

    def on_train_end(self, context) -> None:
        self._trained = True

    def on_checkpoint_save(self, context) -> None:
        if self._last_step_end is not None:  # the save ran right after that step
            self._paused += time.perf_counter() - self._last_step_end
        iteration = int(context.state.train_state.step)
        logger.info("checkpoint saved: iteration %d -> %s", iteration, context.state.cfg.checkpoint.save)

    def _resume_clock(self) -> None:
        if self._pause_start is not None:
            self._paused += time.perf_counter() - self._pause_start
            self._pause_start = None
