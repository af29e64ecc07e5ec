"""`primus generate`: continue prompts with a trained checkpoint or a HF model directory."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from primus.cli.common import open_model
from primus.core.capabilities import GenerationParams
from primus.core.errors import PrimusUserError

logger = logging.getLogger("primus")

EPILOG = """
examples:
  primus generate --ckpt runs/my-sft --chat --prompt "What is the capital of Veloria?"
  primus generate --hf ./Llama-3.2-1B --prompt "Once upon a time" --max-new-tokens 128 \\
      --temperature 0.8 --top-p 0.95 --seed 7
  primus generate --ckpt runs/x/checkpoints --prompts prompts.jsonl --output answers.jsonl
prompts.jsonl: one JSON object a line: {"prompt": "..."} or {"messages": [{"role": ..., "content": ...}]}
(chat records always get the chat template). Greedy unless --temperature > 0.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--ckpt", metavar="RUN_OR_CKPT_DIR", help="a run dir, checkpoint root or iter_* dir")
    model.add_argument("--hf", metavar="DIR", help="a HF model directory")
    parser.add_argument("--tokenizer", metavar="DIR", help="HF tokenizer (default: the one the run used)")
    parser.add_argument("--prompt", action="append", default=[], metavar="TEXT", help="a prompt (repeatable)")
    parser.add_argument("--prompts", metavar="FILE.jsonl", help="prompts, one JSON object a line")
    parser.add_argument("--chat", action="store_true", help="apply the tokenizer's chat template to --prompt")
    parser.add_argument("--max-new-tokens", "--max_new_tokens", dest="max_new_tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy")
    parser.add_argument(
        "--top-k", "--top_k", dest="top_k", type=int, default=0, help="sample from the k best"
    )
    parser.add_argument("--top-p", "--top_p", dest="top_p", type=float, default=0.0, help="nucleus sampling")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=16)
    parser.add_argument("--ignore-eos", action="store_true", help="always generate --max-new-tokens")
    parser.add_argument("--output", metavar="FILE.jsonl", help="also write prompt + completion records here")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--fp32", action="store_true", help="fp32 weights on a GPU (always on a CPU)")
    parser.add_argument(
        "--trust-remote-code", "--trust_remote_code", dest="trust_remote_code", action="store_true"
    )
    parser.set_defaults(func=run)


def generation_params(args: argparse.Namespace) -> GenerationParams:
    checks = [
        (args.max_new_tokens >= 1, "--max-new-tokens", "must be at least 1"),
        (args.temperature >= 0, "--temperature", "must be >= 0 (0 is greedy)"),
        (args.top_k >= 0, "--top-k", "must be >= 0"),
        (0 <= args.top_p <= 1, "--top-p", "must be within [0, 1]"),
        (
            not (args.top_k > 0 and args.top_p > 0),
            "--top-k/--top-p",
            "Megatron-Core samples with one of them",
        ),
        (args.batch_size >= 1, "--batch-size", "must be at least 1"),
    ]
    for ok, key, fix in checks:
        if not ok:
            raise PrimusUserError(f"{key} {fix}", key=key)
    return GenerationParams(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        stop_at_eos=not args.ignore_eos,
    )


def read_prompts(args: argparse.Namespace) -> list[tuple[str, object]]:
    """(kind, value) per prompt: ("text", str), ("chat", str) or ("messages", list)."""
    kind = "chat" if args.chat else "text"
    prompts: list[tuple[str, object]] = [(kind, p) for p in args.prompt]
    if args.prompts:
        path = Path(args.prompts).expanduser()
        if not path.is_file():
            raise PrimusUserError(f"{path} does not exist", key="--prompts")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PrimusUserError(f"{where}: not JSON ({exc.msg})", key="--prompts") from None
            if isinstance(record, dict) and isinstance(record.get("messages"), list):
                prompts.append(("messages", record["messages"]))
            elif isinstance(record, dict) and isinstance(record.get("prompt"), str):
                prompts.append((kind, record["prompt"]))
            else:
                raise PrimusUserError(
                    f'{where}: a record needs "prompt" (text) or "messages" (chat turns)', key="--prompts"
                )
    if not prompts:
        raise PrimusUserError(
            "no prompt given", key="--prompt", hint='add --prompt "TEXT" or --prompts FILE.jsonl'
        )
    return prompts


def tokenize(tokenizer, kind: str, value: object) -> list[int]:
    if kind == "text":
        return list(tokenizer(value).input_ids)
    if not getattr(tokenizer, "chat_template", None):
        raise PrimusUserError(
            "the tokenizer has no chat template",
            key="--chat",
            hint="drop --chat, or use a tokenizer with one",
        )
    turns = value if kind == "messages" else [{"role": "user", "content": value}]
    rendered = tokenizer.apply_chat_template(
        turns, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    return list(rendered["input_ids"])


def run(args: argparse.Namespace) -> int:
    params = generation_params(args)
    prompts = read_prompts(args)
    output = Path(args.output).expanduser() if args.output else None
    if output is not None and output.exists():
        raise PrimusUserError(f"{output} exists", key="--output", hint="choose another file or remove it")
    opened = open_model(args)
    records, generated, seconds = [], 0, 0.0
    with opened as model:
        token_lists = [tokenize(model.tokenizer, kind, value) for kind, value in prompts]
        for start in range(0, len(token_lists), args.batch_size):
            batch = token_lists[start : start + args.batch_size]
            stream = len(token_lists) == 1
            if stream:
                sys.stdout.write(model.tokenizer.decode(batch[0], skip_special_tokens=False))
                sys.stdout.flush()

            def show(i: int, text: str, offset: int = start, streaming: bool = stream) -> None:
                if streaming:
                    sys.stdout.write(text)
                else:
                    prompt = model.tokenizer.decode(token_lists[offset + i], skip_special_tokens=False)
                    sys.stdout.write(f"--- prompt {offset + i + 1}\n{prompt}{text}\n")
                sys.stdout.flush()

            began = time.perf_counter()
            completions = model.generate(batch, params, on_text=show)
            seconds += time.perf_counter() - began
            if stream:
                sys.stdout.write("\n")
            for prompt_ids, done in zip(batch, completions, strict=True):
                generated += len(done.tokens)
                records.append({"prompt": model.tokenizer.decode(prompt_ids), "completion": done.text})
    logger.info(
        "%d prompt(s), %d new tokens in %.2f s (%.1f tokens/s, batches of up to %d)",
        len(prompts),
        generated,
        seconds,
        generated / seconds if seconds else 0.0,
        args.batch_size,
    )
    if output is not None:
        output.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        logger.info("wrote %s", output)
    return 0
