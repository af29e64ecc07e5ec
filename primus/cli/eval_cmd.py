"""`primus eval`: loss / perplexity on held-out data, and lm-evaluation-harness tasks, of a model."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any

from primus.cli.common import backend, open_model
from primus.core.errors import PrimusUserError

logger = logging.getLogger(__name__)

LM_EVAL_VERSION = "0.4.13"
INSTALL_HINT = f"install it with: pip install -e '.[eval]' (or pip install lm-eval=={LM_EVAL_VERSION})"

EPILOG = """
examples:
  primus eval --ckpt ./runs/sft --data ./runs/sft/sft_data/validation.jsonl
      loss and perplexity of the assistant tokens of held-out chat records
  primus eval --hf ./Llama-3.2-1B --data ./data/wiki_text_document --seq-len 2048 --limit 200
      of an indexed dataset (primus data prepare), in windows of 2048 tokens
  primus eval --ckpt ./runs/pretrain --tasks hellaswag,arc_easy --num-fewshot 0
      lm-evaluation-harness tasks (the harness downloads their data)
  primus eval --ckpt ./runs/sft --tasks my_task --include-path ./my_tasks
      a local task: my_tasks/*.yaml over local JSON / JSONL files (offline)

loss: mean next-token cross-entropy (nats) over the counted tokens: assistant tokens of chat
records (--sft-loss), completion tokens of prompt/completion records, every token of an indexed
dataset; perplexity = exp(loss). Both are printed with the number of tokens counted.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    model = parser.add_argument_group("model (one of)")
    model.add_argument(
        "--ckpt", metavar="RUN_OR_CKPT_DIR", help="a run directory, checkpoint root or iter_* directory"
    )
    model.add_argument("--hf", metavar="DIR_OR_ID", help="a HuggingFace model directory (or cached hub id)")
    model.add_argument(
        "--tokenizer", metavar="DIR", help="HF tokenizer (default: the one the model was trained with)"
    )
    data = parser.add_argument_group("held-out loss and perplexity")
    data.add_argument(
        "--data",
        metavar="PATH",
        help="fine-tuning records (FILE.jsonl, or a directory holding validation.jsonl) or an "
        "indexed-dataset PREFIX (PREFIX.bin/.idx)",
    )
    data.add_argument(
        "--seq-len", type=int, metavar="N", help="tokens per window / per record (default: the model's)"
    )
    data.add_argument(
        "--sft-loss",
        choices=("assistant", "last_turn", "full"),
        default="assistant",
        help="chat records: the tokens scored, as sft_loss trains them (default: assistant)",
    )
    data.add_argument(
        "--chat-template", metavar="FILE", help="Jinja chat template (default: the tokenizer's / the run's)"
    )
    tasks = parser.add_argument_group("lm-evaluation-harness")
    tasks.add_argument("--tasks", metavar="NAME[,NAME]", help="harness tasks, groups or tags")
    tasks.add_argument("--include-path", metavar="DIR", help="a directory of task YAML files (local tasks)")
    tasks.add_argument("--num-fewshot", type=int, metavar="N", help="few-shot examples (default: the task's)")
    common = parser.add_argument_group("both")
    common.add_argument(
        "--limit", type=int, metavar="N", help="score only the first N records / windows / task documents"
    )
    common.add_argument(
        "--batch-size", type=int, default=4, metavar="N", help="sequences per forward (default 4)"
    )
    common.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
    common.add_argument(
        "--fp32", action="store_true", help="fp32 weights on a GPU too (a CPU always runs in fp32)"
    )
    common.add_argument("--seed", type=int, default=1234, help="harness seeds and sampling (default 1234)")
    common.add_argument("--output", metavar="FILE.json", help="also write the results as JSON")
    common.add_argument(
        "--trust-remote-code",
        "--trust_remote_code",
        dest="trust_remote_code",
        action="store_true",
        help="allow code shipped with the HF model (off by default)",
    )
    parser.set_defaults(func=run)


def _positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise PrimusUserError(f"must be at least 1, got {value}", key=flag)


def _check(args: argparse.Namespace) -> tuple[Any, Any]:
    """Every user error before the model loads: ``(held-out data or None, (task manager, names) or None)``."""
    from primus.evaluation.data import resolve_held_out

    if (args.ckpt is None) == (args.hf is None):
        raise PrimusUserError(
            "name one model", key="--ckpt/--hf", hint="pass --ckpt RUN_OR_CKPT_DIR or --hf DIR"
        )
    if args.ckpt is not None and not Path(args.ckpt).expanduser().is_dir():  # --hf may be a cached hub id
        raise PrimusUserError(
            f"{args.ckpt} is not a directory", key="--ckpt", hint="give a run or checkpoint directory"
        )
    if args.data is None and args.tasks is None:
        raise PrimusUserError(
            "nothing to evaluate", key="--data/--tasks", hint="pass --data PATH and/or --tasks NAME[,NAME]"
        )
    _positive(args, "seq_len", "limit", "batch_size")
    if args.num_fewshot is not None and args.num_fewshot < 0:
        raise PrimusUserError(f"must be 0 or more, got {args.num_fewshot}", key="--num-fewshot")
    if args.chat_template and not Path(args.chat_template).expanduser().is_file():
        raise PrimusUserError(f"{args.chat_template} does not exist", key="--chat-template")
    if args.include_path and not args.tasks:
        raise PrimusUserError("local tasks are run by name", key="--include-path", hint="add --tasks NAME")
    if args.output and not Path(args.output).expanduser().parent.is_dir():
        raise PrimusUserError(f"the directory of {args.output} does not exist", key="--output")
    held_out = resolve_held_out(args.data) if args.data is not None else None
    tasks = None
    if args.tasks is not None:
        if importlib.util.find_spec("lm_eval") is None:
            raise PrimusUserError("lm-evaluation-harness is not installed", key="--tasks", hint=INSTALL_HINT)
        from primus.evaluation.harness import load_tasks, resolve_tasks

        manager, names = resolve_tasks(args.tasks, args.include_path)
        tasks = manager, load_tasks(manager, names)
    return held_out, tasks


def _held_out_loss(inference: Any, model: Any, held_out: Any, args: argparse.Namespace) -> dict[str, Any]:
    from primus.evaluation.loss import evaluate_loss, windows

    seq_len = args.seq_len or model.max_sequence_length
    if held_out.kind == "sft":
        sequences = inference.sft_sequences(
            model,
            held_out.records[: args.limit] if args.limit else held_out.records,
            chat=held_out.chat,
            loss_mode=args.sft_loss,
            chat_template=args.chat_template,
            seq_len=seq_len,
        )
    else:
        sequences = windows(inference.indexed_documents(held_out.path), seq_len)

    def progress(done: int, tokens: int) -> None:
        if done % max(args.batch_size * 25, 100) < args.batch_size:
            logger.info("scored %d sequences (%d tokens)", done, tokens)

    result = evaluate_loss(model, sequences, batch_size=args.batch_size, limit=args.limit, progress=progress)
    print(f"held-out: {held_out.describe(args.sft_loss)}")
    print(
        f"  loss {result.loss:.4f}  perplexity {result.perplexity:.4g}  "
        f"({result.tokens} tokens in {result.sequences} sequences of at most {seq_len}, {result.seconds:.1f} s)"
    )
    return {"data": held_out.path, "seq_len": seq_len, **result.as_dict()}


def _tasks(model: Any, tasks: Any, args: argparse.Namespace) -> dict[str, Any]:
    from primus.evaluation.harness import results_table, run_tasks

    manager, names = tasks
    results = run_tasks(
        model,
        manager,
        names,
        batch_size=args.batch_size,
        limit=args.limit,
        num_fewshot=args.num_fewshot,
        seed=args.seed,
        progress=bool(getattr(args, "debug", False) or getattr(args, "verbose", False)),
    )
    print(f"tasks (lm-evaluation-harness {LM_EVAL_VERSION}):")
    print(results_table(results))
    return {"results": results.get("results", {}), "n-samples": results.get("n-samples", {})}


def run(args: argparse.Namespace) -> int:
    if not (getattr(args, "debug", False) or getattr(args, "verbose", False)):
        # the harness's and the inference engine's tqdm bars stay off the console, as in training
        os.environ.setdefault("TQDM_DISABLE", "1")
    held_out, tasks = _check(args)
    inference = backend().inference()
    report: dict[str, Any] = {"model": args.ckpt or args.hf}
    with open_model(args) as model:
        if held_out is not None:
            report["held_out"] = _held_out_loss(inference, model, held_out, args)
        if tasks is not None:
            report["tasks"] = _tasks(model, tasks, args)
    if args.output:
        Path(args.output).expanduser().write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"results -> {args.output}")
    return 0
