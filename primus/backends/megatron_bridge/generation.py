"""Text generation through Megatron-Core's inference engine (KV cache, batched prompts).

Megatron-Core's static engine (``StaticInferenceEngine(legacy=True)`` + ``TextGenerationController``
+ ``GPTInferenceWrapper`` over a ``StaticInferenceContext`` KV cache) runs every prompt of a call
as one batch. It runs on a CPU under the conversion session (CUDA calls redirected) and on a GPU
without Transformer Engine. Sampling is Megatron-Core's: greedy is top-k 1; ``--seed`` seeds torch
before the batch. A single prompt is streamed through the engine's own ``AsyncStream``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from primus.core.capabilities import Completion, GenerationParams
from primus.core.errors import PrimusUserError

logger = logging.getLogger(__name__)

OnText = Callable[[int, str], None]


def sampling_params(params: GenerationParams, eos_id: int | None) -> Any:
    """Megatron-Core's ``SamplingParams`` for ``params`` (greedy = top-k 1, no top-p)."""
    from megatron.core.inference.sampling_params import SamplingParams

    greedy = params.greedy
    sampling = SamplingParams(
        temperature=1.0 if greedy else params.temperature,
        top_k=1 if greedy else params.top_k,
        top_p=0.0 if greedy else params.top_p,
        num_tokens_to_generate=params.max_new_tokens,
        termination_id=eos_id if params.stop_at_eos and eos_id is not None else -1,
        return_log_probs=False,
    )
    # the static engine stops at the tokenizer's eod unless this attribute says otherwise
    sampling.no_early_termination = not params.stop_at_eos
    return sampling


def check_length(longest_prompt: int, params: GenerationParams, limit: int) -> int:
    """The KV-cache length a batch needs; refused in one line beyond the model's sequence length."""
    needed = longest_prompt + params.max_new_tokens
    if needed > limit:
        room = limit - longest_prompt
        raise PrimusUserError(
            f"the longest prompt ({longest_prompt} tokens) plus {params.max_new_tokens} new tokens "
            f"exceeds the model's sequence length {limit}",
            key="--max-new-tokens",
            hint=f"use --max-new-tokens {room}" if room > 0 else "shorten the prompt",
        )
    return needed


def build_engine(model: Any, batch: int, max_length: int, seed: int) -> Any:
    """A static-batch engine over a fresh KV cache of ``batch`` x ``max_length`` tokens."""
    from megatron.bridge.inference._tokenizer import HFTokenizerAdapter
    from megatron.core.inference.contexts import StaticInferenceContext
    from megatron.core.inference.engines import StaticInferenceEngine
    from megatron.core.inference.model_inference_wrappers.gpt.gpt_inference_wrapper import (
        GPTInferenceWrapper,
    )
    from megatron.core.inference.text_generation_controllers.text_generation_controller import (
        TextGenerationController,
    )

    context = StaticInferenceContext(batch, max_length)
    wrapped = GPTInferenceWrapper(model.model, context)
    controller = TextGenerationController(wrapped, HFTokenizerAdapter(model.tokenizer))
    return StaticInferenceEngine(controller, max_batch_size=batch, random_seed=seed, legacy=True)


def _strip_eos(tokens: list[int], eos_id: int | None, stop: bool) -> list[int]:
    if stop and eos_id is not None and eos_id in tokens:
        return tokens[: tokens.index(eos_id)]
    return tokens


def _run_engine(engine: Any, on_cpu: bool) -> None:
    """Run the engine in this (worker) thread: torch function modes are per thread, so the CPU
    redirection of CUDA calls is entered here again."""
    import contextlib

    import torch

    from primus.backends.megatron_bridge.patches.cpu_runtime import CudaToCpuMode

    with CudaToCpuMode() if on_cpu else contextlib.nullcontext(), torch.inference_mode():
        engine.run_engine()


class _TextStream:
    """Text pieces of a growing token list, as ``transformers``' TextStreamer cuts them: a piece
    is passed on once it no longer ends in half a character (byte-level BPE splits UTF-8)."""

    def __init__(self, tokenizer: Any, on_text: OnText) -> None:
        self.tokenizer, self.on_text, self.shown = tokenizer, on_text, ""

    def update(self, tokens: list[int], final: bool = False) -> None:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        if (final or not text.endswith("\ufffd")) and text.startswith(self.shown) and text != self.shown:
            self.on_text(0, text[len(self.shown) :])
            self.shown = text


async def _streamed(engine: Any, requests: list[dict], stream: _TextStream, on_cpu: bool) -> list[int]:
    """Add the requests with streaming on (their streams live on this loop), run the engine in a
    worker thread and pass request 0's new text to ``stream``."""
    ids = [engine.scheduler.add_request(**r, streaming=i == 0) for i, r in enumerate(requests)]
    loop = asyncio.get_running_loop()
    run = loop.run_in_executor(None, _run_engine, engine, on_cpu)

    def end_streams_on_error(done: asyncio.Future) -> None:  # a failed engine must not hang us
        if done.exception() is not None:
            for each in engine.scheduler.streams.values():
                each.finish(done.exception())

    run.add_done_callback(end_streams_on_error)
    async for partial in engine.get_stream_generator(ids[0]):
        if partial.generated_tokens is not None:
            stream.update(list(map(int, partial.generated_tokens)))
    await run
    return ids


def generate(
    model: Any, prompts: list[list[int]], params: GenerationParams, on_text: OnText | None = None
) -> list[Completion]:
    """Continue every prompt in one batch; ``on_text`` streams a single prompt as it is generated
    (and receives each completion's text when there are several)."""
    import torch

    if not prompts or any(not p for p in prompts):
        raise PrimusUserError("every prompt needs at least one token", key="--prompt")
    limit = model.max_sequence_length
    length = check_length(max(len(p) for p in prompts), params, limit)
    eos_id = model.tokenizer.eos_token_id
    engine = build_engine(model, len(prompts), length, params.seed)
    sampling = sampling_params(params, eos_id)
    requests = [
        {"prompt": model.tokenizer.decode(p), "prompt_tokens": list(p), "sampling_params": sampling}
        for p in prompts
    ]
    torch.manual_seed(params.seed)
    start = time.perf_counter()
    stream = _TextStream(model.tokenizer, on_text) if on_text is not None and len(prompts) == 1 else None
    from megatron.core.inference.utils import InferenceMode

    try:
        with torch.inference_mode():
            if stream is not None:
                ids = asyncio.run(_streamed(engine, requests, stream, model.env.on_cpu))
            else:
                ids = [engine.scheduler.add_request(**r) for r in requests]
                engine.run_engine()
    finally:  # the engine marks the model as in inference (its forward then asserts in training)
        InferenceMode.unset_active()
    seconds = time.perf_counter() - start
    done = engine.scheduler.completed_request_pool
    completions = []
    for i, (prompt, rid) in enumerate(zip(prompts, ids, strict=True)):
        tokens = _strip_eos(list(map(int, done[rid].generated_tokens)), eos_id, params.stop_at_eos)
        text = model.tokenizer.decode(tokens, skip_special_tokens=True)
        completions.append(Completion(list(prompt), tokens, text, seconds))
        if stream is not None:
            stream.update(tokens, final=True)  # what the last stream update left unsaid
        if on_text is not None and len(prompts) > 1:
            on_text(i, text)
    return completions
