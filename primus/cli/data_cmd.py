"""`primus data prepare`: text/JSONL corpora -> a Megatron indexed dataset (+ a tokenizer)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

from primus.cli.common import backend
from primus.core.errors import PrimusUserError

logger = logging.getLogger(__name__)

PREPARE_EPILOG = """
inputs:
  FILE.jsonl   one JSON object per line; the text is the value of --json-key
  FILE.txt / FILE.md / FILE.py   the whole file is one document
  DIR          every .txt, .md, .py and .jsonl file under DIR, recursively, sorted
               (hidden files and directories skipped)

Every document ends with the tokenizer's EOS token (Megatron's end-of-document).
Writes PREFIX.bin and PREFIX.idx (Megatron-Core's IndexedDatasetBuilder) and
PREFIX.json (the summary). Train on them with:
  primus train --data_path PREFIX tokenizer.tokenizer_type=HuggingFaceTokenizer \\
      tokenizer.tokenizer_model=TOKENIZER_DIR ...

examples:
  primus data prepare --input corpus.jsonl --tokenizer ./llama_tokenizer --output-prefix data/corpus
  primus data prepare --input docs/ --train-tokenizer 4096 --output-prefix data/docs
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parent = parser._primus_parent  # type: ignore[attr-defined]
    sub = parser.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    prep = sub.add_parser(
        "prepare",
        help="tokenize text into a Megatron indexed dataset (PREFIX.bin/.idx) for `primus train --data_path`",
        description="Tokenize text into a Megatron indexed dataset for `primus train --data_path PREFIX`.",
        parents=[parent],
        epilog=PREPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prep.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="PATH",
        help="one or more .jsonl/.txt/.md/.py files or directories (see below)",
    )
    prep.add_argument(
        "--json-key", default="text", metavar="KEY", help="JSONL field that holds the text (default: text)"
    )
    tok = prep.add_mutually_exclusive_group(required=True)
    tok.add_argument("--tokenizer", metavar="HF_DIR", help="a local HuggingFace tokenizer directory")
    tok.add_argument(
        "--train-tokenizer",
        type=int,
        metavar="VOCAB_SIZE",
        help="train a byte-level BPE tokenizer of this vocabulary size on the input (e.g. 4096)",
    )
    prep.add_argument(
        "--tokenizer-out",
        metavar="DIR",
        help="where --train-tokenizer saves the HF tokenizer (default: PREFIX_tokenizer/)",
    )
    prep.add_argument(
        "--output-prefix", required=True, metavar="PREFIX", help="writes PREFIX.bin and PREFIX.idx"
    )
    prep.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="tokenizing processes (default 1: a fast tokenizer already uses several threads)",
    )
    prep.add_argument(
        "--max-bytes",
        metavar="SIZE",
        help="read at most this much input text, e.g. 4M: the document that reaches the limit is "
        "cut there (default: all of it)",
    )
    prep.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing PREFIX.bin/.idx (and a tokenizer this command trained before)",
    )
    prep.set_defaults(func=prepare)


def _check_output_dir(prefix: Path) -> None:
    directory = prefix.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PrimusUserError(
            f"cannot create output directory {directory}: {exc.strerror}", key="--output-prefix"
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PrimusUserError(f"output directory {directory} is not writable", key="--output-prefix")
    if prefix.name in ("", ".", ".."):
        raise PrimusUserError(
            f"{str(prefix)!r} is a directory, not a prefix", key="--output-prefix", hint="e.g. data/corpus"
        )


def _refuse_overwrite(prefix: Path, tokenizer_out: Path | None) -> None:
    """A dataset (or tokenizer) a run may be training on is never replaced without asking."""
    existing = [Path(f"{prefix}{ext}") for ext in (".bin", ".idx") if Path(f"{prefix}{ext}").exists()]
    if tokenizer_out is not None and tokenizer_out.exists():
        existing.append(tokenizer_out)
    if existing:
        raise PrimusUserError(
            f"{', '.join(str(p) for p in existing)} already exist (runs may be training on them)",
            key="--output-prefix",
            hint="choose another --output-prefix, or add --overwrite to replace them",
        )


def prepare(args: argparse.Namespace) -> int:
    from primus.data.sources import open_corpus, parse_size
    from primus.data.tokenizer import train_bpe_tokenizer

    started = time.perf_counter()
    if args.workers < 1:
        raise PrimusUserError(f"--workers must be at least 1, got {args.workers}")
    max_bytes = parse_size(args.max_bytes) if args.max_bytes else None
    prefix = Path(args.output_prefix).expanduser()
    corpus = open_corpus(args.input, args.json_key, max_bytes)
    _check_output_dir(prefix)
    if not args.overwrite:
        _refuse_overwrite(
            prefix, None if args.tokenizer else Path(args.tokenizer_out or f"{prefix}_tokenizer")
        )
    logger.info("input: %d file(s), %.2f MB", len(corpus.files), corpus.total_bytes / 1e6)

    if args.tokenizer:
        tokenizer_dir = Path(args.tokenizer).expanduser()
    else:
        tokenizer_dir = Path(args.tokenizer_out or f"{prefix}_tokenizer").expanduser()
        logger.info(
            "training a byte-level BPE tokenizer (vocabulary %d) -> %s", args.train_tokenizer, tokenizer_dir
        )
        train_bpe_tokenizer(corpus.texts(), args.train_tokenizer, tokenizer_dir)

    summary = (
        backend()
        .data_preparation()
        .prepare_dataset(corpus, tokenizer_dir, prefix, workers=args.workers, started=started)
    )
    Path(f"{prefix}.json").write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
    print(summary.render())
    return 0
