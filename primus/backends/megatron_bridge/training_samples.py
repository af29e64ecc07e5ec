"""Sample generations during training, so a user sees the model learn.

``logger.sample_prompts`` (a list of strings) and ``logger.sample_interval`` (iterations, 0 = off)
are Primus keys in Bridge's ``logger`` section (the argument builder keeps them out of Bridge's
LoggerConfig); ``logger.sample_max_new_tokens`` (default 32) bounds each continuation. Every
``sample_interval`` iterations and after the last one, a Bridge callback continues the prompts
greedily with the model being trained, through the same Megatron-Core engine as ``primus
generate``, and writes ``RUN/samples.jsonl`` (iteration, prompt, completion) and TensorBoard
text (tag ``samples``). Fine-tuning runs put each prompt through the tokenizer's chat template
as a user turn when it has one.

Only the writer rank generates (tensor and pipeline parallel size 1: the preflight says so); the
RNG states are restored afterwards, so a run with samples trains exactly like one without.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from primus.core.capabilities import GenerationParams
from primus.core.errors import Problem

logger = logging.getLogger(__name__)

#: Primus keys of Bridge's logger section -> default
SAMPLE_KEYS: dict[str, Any] = {"sample_prompts": None, "sample_interval": 0, "sample_max_new_tokens": 32}


@dataclass(frozen=True)
class SampleSettings:
    prompts: list[str]
    interval: int
    max_new_tokens: int


def sample_settings(user: Any) -> tuple[SampleSettings | None, list[Problem]]:
    """The settings of the user's config (None when off) and the problems with them."""
    section = (user.get("logger", None) if user is not None else None) or {}
    source = user.source_of("logger") if user is not None else None
    prompts = section.get("sample_prompts", None)
    interval = section.get("sample_interval", 0)
    new_tokens = section.get("sample_max_new_tokens", SAMPLE_KEYS["sample_max_new_tokens"])
    problems = []
    if prompts is not None and (
        not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p for p in prompts)
    ):
        problems.append(
            Problem(
                "expected a list of non-empty strings",
                key="logger.sample_prompts",
                source=source,
                hint='e.g. logger.sample_prompts=["Once upon a time"]',
            )
        )
    for key, value in (("sample_interval", interval), ("sample_max_new_tokens", new_tokens)):
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < (0 if key == "sample_interval" else 1)
        ):
            problems.append(
                Problem(f"expected a whole number, got {value!r}", key=f"logger.{key}", source=source)
            )
    if problems or not prompts or not interval:
        if prompts and not interval and not problems:
            problems.append(
                Problem(
                    "sample prompts are given but no interval",
                    key="logger.sample_interval",
                    source=source,
                    hint="set logger.sample_interval=N (iterations)",
                )
            )
        return None, problems
    return SampleSettings(list(prompts), interval, new_tokens), []


@dataclass
class _TrainingModel:
    """The parts of an inference model ``generation.generate`` reads, over the model in training."""

    model: Any
    tokenizer: Any
    max_sequence_length: int


def _unwrap(chunk: Any) -> Any:
    while hasattr(chunk, "module"):  # DDP -> Float16Module -> GPTModel
        chunk = chunk.module
    return chunk


def make_callback(settings: SampleSettings, tokenizer_dir: str, run_dir: Path, *, chat: bool) -> Any:
    """The Bridge callback (Bridge is imported here: this module is read before the setup patches)."""
    from megatron.bridge.training.callbacks import Callback

    class BridgeCallback(TrainingSamples, Callback):
        pass

    return BridgeCallback(settings, tokenizer_dir, run_dir, chat=chat)


class TrainingSamples:
    """Greedy continuations of ``settings.prompts`` every ``settings.interval`` iterations."""

    def __init__(self, settings: SampleSettings, tokenizer_dir: str, run_dir: Path, *, chat: bool) -> None:
        self.settings, self.tokenizer_dir, self.run_dir, self.chat = settings, tokenizer_dir, run_dir, chat
        self.last_sampled: int | None = None
        self.tokenizer: Any = None

    def on_train_step_end(self, context: Any) -> None:
        step = int(context.state.train_state.step) + 1  # the iteration just finished
        if step % self.settings.interval == 0:
            self._sample(context, step)

    def on_train_end(self, context: Any) -> None:
        step = int(context.state.train_state.step)  # incremented by now: the last iteration
        if step != self.last_sampled:
            self._sample(context, step)

    def _prompt_tokens(self) -> list[list[int]]:
        tok = self.tokenizer
        if self.chat and getattr(tok, "chat_template", None):
            turns = [[{"role": "user", "content": p}] for p in self.settings.prompts]
            return [
                list(
                    tok.apply_chat_template(t, add_generation_prompt=True, tokenize=True, return_dict=True)[
                        "input_ids"
                    ]
                )
                for t in turns
            ]
        return [list(tok(p).input_ids) for p in self.settings.prompts]

    def _sample(self, context: Any, step: int) -> None:
        from primus.backends.megatron_bridge.metrics import _is_writer

        self.last_sampled = step
        if not _is_writer():
            return
        import torch

        from primus.backends.megatron_bridge.generation import generate

        if self.tokenizer is None:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_dir)
        model = _unwrap(context.model[0])
        cuda = torch.cuda.is_available() and next(model.parameters()).is_cuda
        rng = (torch.get_rng_state(), torch.cuda.get_rng_state() if cuda else None)
        config = context.state.cfg
        view = _TrainingModel(model, self.tokenizer, int(config.dataset.seq_length))
        params = GenerationParams(max_new_tokens=self.settings.max_new_tokens)
        try:
            completions = generate(view, self._prompt_tokens(), params)
        finally:
            model.train()
            torch.set_rng_state(rng[0])
            if rng[1] is not None:
                torch.cuda.set_rng_state(rng[1])
        rows = [
            {"iteration": step, "prompt": prompt, "completion": done.text}
            for prompt, done in zip(self.settings.prompts, completions, strict=True)
        ]
        with open(self.run_dir / "samples.jsonl", "a", encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
        writer = getattr(context.state, "tensorboard_logger", None)
        if writer is not None:
            text = "\n\n".join(f"**{r['prompt']}** {r['completion']}" for r in rows)
            writer.add_text("samples", text, step)
        logger.info("samples at iteration %d: %s", step, self.run_dir / "samples.jsonl")
